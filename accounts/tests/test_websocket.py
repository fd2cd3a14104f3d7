"""The ASGI entry serves websockets: a member gets their organization's events and no other's, and
loses the socket when their session ends (removal, suspension, sign-out)."""
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from accounts import services
from accounts.audit import Actor
from accounts.consumers import organization_group
from accounts.models import Membership
from config.tenancy import dangerously_unscoped, tenant_scope
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


# --- sessions that end, end everywhere (accounts/live_sessions.py) ----------------------------------


async def closed_with(communicator, timeout: float) -> tuple[dict | None, int | None]:
    """Read until the server closes: the last message before the close, and the close code."""
    last = None
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return last, output.get("code")
        last = json.loads(output["text"])


def signed_in_cookie(user) -> tuple[bytes, str]:
    cookie = session_cookie(user)
    return cookie, cookie.decode().split("=", 1)[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["remove", "suspend", "sign_out"])
def test_an_ended_session_closes_its_open_websocket_at_once(tenant_a, tenant_b, settings, ending):
    # A re-check minutes away: only the session.ended message can close the socket within the timeout.
    settings.JOB_EVENTS_POLL_S = 600
    member = tenant_a.member("producer")
    cookie, session_key = signed_in_cookie(member)
    other_cookie = session_cookie(tenant_b.owner)

    def end():
        if ending == "remove":
            with tenant_scope(tenant_a.organization):
                membership = Membership.objects.get(user=member)
                services.membership_remove(membership=membership, actor=Actor(user=tenant_a.owner))
        elif ending == "suspend":
            services.organization_set_suspended(organization=tenant_a.organization, suspended=True,
                                                actor=Actor.system(), reason="unpaid")
        else:
            client = Client()
            client.cookies[settings.SESSION_COOKIE_NAME] = session_key
            assert client.post("/logout/").status_code == 302

    async def scenario():
        ws, connected, _ = await connect(cookie)
        bystander, bystander_connected, _ = await connect(other_cookie)
        assert connected and bystander_connected
        await ws.receive_json_from()
        await bystander.receive_json_from()
        await database_sync_to_async(end)()
        last, code = await closed_with(ws, timeout=3)
        assert code == 4403
        assert last == {"type": "session.ended", "reason": {"remove": "membership_removed",
                                                            "suspend": "organization_suspended",
                                                            "sign_out": "signed_out"}[ending]}
        # Another organization's socket stays open.
        await bystander.send_json_to({"type": "ping"})
        assert (await bystander.receive_json_from())["type"] == "pong"
        await bystander.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_a_socket_notices_a_removal_no_message_announced_within_its_recheck(tenant_a, settings):
    """Another process without a shared channel layer (the embedded mode) sends no message here: the
    socket's own re-check every JOB_EVENTS_POLL_S closes it."""
    settings.JOB_EVENTS_POLL_S = 0.3
    member = tenant_a.member("viewer")
    cookie = session_cookie(member)

    def remove_behind_the_layers_back():
        with dangerously_unscoped():
            Membership.objects.filter(user=member).delete()

    async def scenario():
        ws, connected, _ = await connect(cookie)
        assert connected
        await ws.receive_json_from()
        assert await ws.receive_nothing(timeout=0.8)  # still a member: the re-checks keep it open
        await database_sync_to_async(remove_behind_the_layers_back)()
        last, code = await closed_with(ws, timeout=3)
        assert code == 4403 and last == {"type": "session.ended", "reason": "membership_removed"}

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_an_api_key_opens_no_websocket(tenant_a):
    """Websockets take the portal session only, so a revoked key has no socket left to close."""
    _key, plain = tenant_a.key()

    async def scenario():
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"),
                   (b"authorization", f"Bearer {plain}".encode())]
        communicator = WebsocketCommunicator(application, "/ws/events", headers=headers)
        connected, code = await communicator.connect()
        assert not connected and code == 4401

    async_to_sync(scenario)()


@pytest.mark.django_db
def test_a_removed_members_portal_session_no_longer_reaches_the_organization(tenant_a):
    member = tenant_a.member("producer")
    client = Client()
    client.force_login(member)
    project = tenant_a.project("Lighthouse")
    assert client.get(f"/projects/{project.pk}/").status_code == 200
    with tenant_scope(tenant_a.organization):
        services.membership_remove(membership=Membership.objects.get(user=member), actor=Actor(user=tenant_a.owner))
    assert client.get(f"/projects/{project.pk}/").status_code in (302, 403, 404)
    dashboard = client.get("/", follow=True)
    assert tenant_a.organization.name.encode() not in dashboard.content
