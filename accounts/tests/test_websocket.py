"""The ASGI entry serves websockets: a member gets their organization's events and no other's."""
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from accounts.consumers import organization_group
from config.asgi import application


def session_cookie(user) -> bytes:
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()


async def connect(cookie: bytes | None):
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, "/ws/events", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
def test_member_receives_own_organization_events_only(tenant_a, tenant_b):
    cookie_a, cookie_b = session_cookie(tenant_a.owner), session_cookie(tenant_b.owner)

    async def scenario():
        ws_a, connected_a, _ = await connect(cookie_a)
        ws_b, connected_b, _ = await connect(cookie_b)
        assert connected_a and connected_b
        assert (await ws_a.receive_json_from())["organization"] == "studio-a"
        assert (await ws_b.receive_json_from())["organization"] == "studio-b"
        layer = get_channel_layer()
        await layer.group_send(organization_group(tenant_a.organization.pk),
                               {"type": "organization.event", "event": {"type": "job.progress", "progress": 0.5}})
        assert await ws_a.receive_json_from(timeout=2) == {"type": "job.progress", "progress": 0.5}
        assert await ws_b.receive_nothing(timeout=0.3)
        await ws_a.send_to(text_data="[" * 200_000)  # refused before decoding; the consumer lives on
        await ws_a.send_json_to({"type": "ping"})
        assert (await ws_a.receive_json_from())["type"] == "pong"
        await ws_a.disconnect()
        await ws_b.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_anonymous_websocket_is_refused():
    async def scenario():
        _, connected, code = await connect(None)
        assert not connected and code == 4401

    async_to_sync(scenario)()
