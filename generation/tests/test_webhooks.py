"""Webhooks: the URL guard, signed deliveries to a real receiver, retries with backoff, the API.

"""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.crypto import secret_decrypt
from accounts.models import AuditEntry
from config.tenancy import dangerously_unscoped, tenant_scope
from config.errors import DomainError
from generation import webhooks
from generation.models import DeliveryStatus, Webhook, WebhookDelivery
from config.tests.fake_dns import fake_dns as fake_dns_table
from generation.webhooks import (
    _address_refused,
    webhook_create,
    webhook_deliver,
    webhook_due_deliveries,
    webhook_event_emit,
    webhook_sign,
    webhook_update,
    webhook_url_check,
    webhook_verify,
)

PUBLIC_IP = "93.184.216.34"


# --- helpers -----------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that checks each request's signature and records it.
    It answers with the statuses queued in `statuses`, then 200."""

    def __init__(self):
        self.secret = ""
        self.statuses: list[int] = []
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                    "verified": webhook_verify(receiver.secret, self.headers.get("X-Platform-Signature", ""), body),
                })
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/platform?source=test"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def allow_private(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True


@pytest.fixture
def fake_dns(monkeypatch):
    """Names under .example.test resolve to whatever the test says; everything else as usual."""
    return fake_dns_table(monkeypatch)


def make_webhook(tenant, url, events=("job.completed",)) -> tuple[Webhook, str]:
    return webhook_create(organization=tenant.organization, url=url, events=list(events),
                          actor=Actor(user=tenant.owner))


def emit(tenant, event="job.completed", payload=None) -> list:
    return webhook_event_emit(organization_id=tenant.organization.pk, event=event,
                              payload=payload or {"job": {"id": "j-1", "status": "completed"}})


def delivery(delivery_id) -> WebhookDelivery:
    with dangerously_unscoped():
        return WebhookDelivery.objects.get(pk=delivery_id)


# --- the URL guard -----------------------------------------------------------------------------


REFUSED_URLS = [
    "http://127.0.0.1/hook",
    "http://localhost:8000/hook",
    "http://10.0.0.1/hook",
    "http://192.168.1.20/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://0.0.0.0/hook",
    "http://internal.example.test/hook",  # a name that resolves to loopback
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_api_refuses_private_addresses(url, tenant_a, fake_dns):
    fake_dns["internal.example.test"] = "127.0.0.1"
    response = tenant_a.client().post(reverse("api:webhook-list"), {"url": url, "events": ["job.completed"]})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "webhook_url_not_allowed"
    assert "url" in error["fields"]
    with tenant_scope(tenant_a.organization):
        assert not Webhook.objects.exists()


@pytest.mark.parametrize("url", [
    "http://2130706433/hook",  # 127.0.0.1 spelled as one number (the API's URL field refuses it already)
    "http://0x7f.1/hook",
    "ftp://hooks.example.test/x",
    "file:///etc/passwd",
    "gopher://hooks.example.test/",
    "http://user:pass@hooks.example.test/x",
    "https://token@hooks.example.test/x",
    "http:///no-host",
    "http://hooks.example.test:99999/x",
    "http://unresolvable.invalid/x",
])
def test_url_check_refuses_odd_forms_schemes_credentials_and_unresolvable(url, fake_dns):
    fake_dns["hooks.example.test"] = PUBLIC_IP
    with pytest.raises(DomainError) as refused:
        webhook_url_check(url)
    assert refused.value.code == "webhook_url_not_allowed"


def test_url_check_accepts_public_hosts(fake_dns):
    fake_dns["hooks.example.test"] = PUBLIC_IP
    fake_dns["v6.example.test"] = "2606:2800:220:1:248:1893:25c8:1946"
    webhook_url_check("https://hooks.example.test/platform")
    webhook_url_check("http://v6.example.test:8443/platform")


def test_url_refused_when_any_address_is_private(monkeypatch):
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(DomainError, match="10.1.2.3"):
        webhook_url_check("https://split.example.test/")


@pytest.mark.parametrize("address, refused", [
    ("8.8.8.8", False),
    ("2001:4860:4860::8888", False),
    ("::ffff:8.8.8.8", False),  # IPv4-mapped: judged by its IPv4 address
    ("::ffff:10.0.0.1", True),
    ("64:ff9b::a00:1", True),  # NAT64 to 10.0.0.1
    ("64:ff9b::808:808", False),  # NAT64 to 8.8.8.8
    ("2002:7f00:1::", True),  # 6to4 wrapping 127.0.0.1
    ("100.64.0.1", True),  # carrier-grade NAT shared space
    ("224.0.0.1", True),
    ("ff02::1", True),
    ("fc00::1", True),
    ("240.0.0.1", True),
    ("::", True),
])
def test_address_classification(address, refused):
    import ipaddress

    assert _address_refused(ipaddress.ip_address(address)) is refused


def test_private_urls_allowed_by_setting(tenant_a, allow_private):
    webhook, _secret = make_webhook(tenant_a, "http://127.0.0.1:9/hook")
    assert webhook.url == "http://127.0.0.1:9/hook"


# --- signatures --------------------------------------------------------------------------------


def test_signature_verification():
    body, secret, now = b'{"a":1}', "whsec_test", int(time.time())
    header = f"t={now},v1={webhook_sign(secret, now, body)}"
    assert webhook_verify(secret, header, body)
    assert not webhook_verify(secret, header, body + b" ")
    assert not webhook_verify("whsec_other", header, body)
    assert not webhook_verify(secret, header, body, now=now + 301)
    assert webhook_verify(secret, f"t={now},v1=deadbeef,v1={webhook_sign(secret, now, body)}", body)
    assert not webhook_verify(secret, "v1=" + webhook_sign(secret, now, body), body)
    assert not webhook_verify(secret, "", body)


def test_secret_is_stored_encrypted_and_shown_once(tenant_a, fake_dns):
    fake_dns["hooks.example.test"] = PUBLIC_IP
    client = tenant_a.client()
    created = client.post(reverse("api:webhook-list"),
                          {"url": "https://hooks.example.test/x", "events": ["job.completed", "job.failed"]})
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    with tenant_scope(tenant_a.organization):
        webhook = Webhook.objects.get()
        assert secret not in webhook.secret_encrypted
        assert secret_decrypt(webhook.secret_encrypted) == secret
        entry = AuditEntry.objects.get(action="webhook.create")
        assert secret not in json.dumps(entry.after) and webhook.secret_encrypted not in json.dumps(entry.after)
    shown = client.get(reverse("api:webhook-detail", args=[webhook.pk])).json()
    assert "secret" not in shown and shown["events"] == ["job.completed", "job.failed"]
    listed = client.get(reverse("api:webhook-list")).json()
    assert "secret" not in listed["results"][0]


# --- deliveries --------------------------------------------------------------------------------


def test_delivery_reaches_a_real_receiver_signed(tenant_a, tenant_b, receiver, allow_private):
    webhook, secret = make_webhook(tenant_a, receiver.url, events=["job.completed"])
    receiver.secret = secret
    make_webhook(tenant_a, receiver.url, events=["job.failed"])  # not subscribed to this event
    inactive, _ = make_webhook(tenant_a, receiver.url, events=["job.completed"])
    with tenant_scope(tenant_a.organization):
        webhook_update(webhook=inactive, is_active=False, actor=Actor(user=tenant_a.owner))
    make_webhook(tenant_b, receiver.url, events=["job.completed"])  # another organization's

    ids = emit(tenant_a, payload={"job": {"id": "j-1", "status": "completed", "cost": "1.25"}})
    assert len(ids) == 1
    assert webhook_deliver(ids[0]) is None

    [request] = receiver.requests
    assert request["verified"], "the signature did not verify with the webhook's secret"
    assert request["path"] == "/hooks/platform?source=test"
    assert request["headers"]["X-Platform-Event"] == "job.completed"
    assert request["headers"]["X-Platform-Delivery"] == str(ids[0])
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert body["id"] == str(ids[0]) and body["event"] == "job.completed"
    assert body["data"] == {"job": {"id": "j-1", "status": "completed", "cost": "1.25"}}

    sent = delivery(ids[0])
    assert (sent.status, sent.attempts, sent.last_status_code, sent.last_error) == ("delivered", 1, 200, "")
    assert sent.delivered_at is not None and sent.next_attempt_at is None
    assert sent.webhook_id == webhook.pk
    # A second message for the same delivery (a duplicate queue message) sends nothing.
    assert webhook_deliver(ids[0]) is None
    assert len(receiver.requests) == 1


def test_retry_with_backoff_then_delivered(tenant_a, receiver, allow_private, settings):
    settings.WEBHOOK_RETRY_BASE_S = 10
    _webhook, receiver.secret = make_webhook(tenant_a, receiver.url)
    receiver.statuses = [500]
    [delivery_id] = emit(tenant_a)

    before = timezone.now()
    next_at = webhook_deliver(delivery_id)
    assert next_at is not None
    assert timedelta(seconds=9) < next_at - before < timedelta(seconds=12)
    failed_once = delivery(delivery_id)
    assert (failed_once.status, failed_once.attempts, failed_once.last_status_code) == ("pending", 1, 500)
    assert failed_once.last_error == "HTTP 500"
    assert failed_once.next_attempt_at == next_at

    assert webhook_deliver(delivery_id) is None, "not due yet: nothing to do"
    assert len(receiver.requests) == 1
    assert webhook_due_deliveries(now=next_at - timedelta(seconds=1)) == []
    assert webhook_due_deliveries(now=next_at) == [delivery_id]

    assert webhook_deliver(delivery_id, now=next_at) is None
    done = delivery(delivery_id)
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == ("delivered", 2, 200, "")
    assert [r["verified"] for r in receiver.requests] == [True, True]
    assert {r["headers"]["X-Platform-Delivery"] for r in receiver.requests} == {str(delivery_id)}


def test_gives_up_after_max_attempts_with_growing_backoff(tenant_a, receiver, allow_private, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    webhook, receiver.secret = make_webhook(tenant_a, receiver.url)
    receiver.statuses = [500, 503, 502, 500, 500]
    [delivery_id] = emit(tenant_a)

    delays, now = [], timezone.now()
    for _ in range(3):
        next_at = webhook_deliver(delivery_id, now=now)
        assert next_at is not None
        delays.append((next_at - timezone.now()).total_seconds())
        now = next_at
    assert webhook_deliver(delivery_id, now=now) is None
    assert delays[0] < delays[1] < delays[2]
    assert delays[1] / delays[0] > 5

    gave_up = delivery(delivery_id)
    assert (gave_up.status, gave_up.attempts, gave_up.last_status_code) == ("failed", 4, 500)
    assert gave_up.next_attempt_at is None and gave_up.delivered_at is None
    assert webhook_deliver(delivery_id, now=now + timedelta(days=1)) is None
    assert len(receiver.requests) == 4
    assert webhook_due_deliveries(now=now + timedelta(days=1)) == []

    # The delivery log shows it.
    log = tenant_a.client().get(reverse("api:webhook-deliveries", args=[webhook.pk]))
    assert log.status_code == 200
    [entry] = log.json()["results"]
    assert entry["id"] == str(delivery_id)
    assert (entry["event"], entry["status"], entry["attempts"], entry["last_status_code"]) == (
        "job.completed", "failed", 4, 500)
    assert entry["last_error"] == "HTTP 500" and entry["delivered_at"] is None and entry["created_at"]
    failed_only = tenant_a.client().get(reverse("api:webhook-deliveries", args=[webhook.pk]), {"status": "delivered"})
    assert failed_only.json()["results"] == []


def test_backoff_schedule(settings):
    settings.WEBHOOK_RETRY_BASE_S = 10
    delays = [webhooks.webhook_backoff(n).total_seconds() for n in range(1, 9)]
    assert delays[:4] == [10, 60, 360, 2160]
    assert delays == sorted(delays) and delays[-1] == 12 * 3600


def test_redirects_are_not_followed(tenant_a, receiver, allow_private):
    _webhook, receiver.secret = make_webhook(tenant_a, receiver.url)
    receiver.statuses = [302]
    [delivery_id] = emit(tenant_a)
    assert webhook_deliver(delivery_id) is not None
    assert len(receiver.requests) == 1
    moved = delivery(delivery_id)
    assert (moved.status, moved.last_status_code) == ("pending", 302)
    assert "redirect" in moved.last_error


def test_unreachable_receiver_is_retried(tenant_a, allow_private):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    make_webhook(tenant_a, f"http://127.0.0.1:{port}/hook")
    [delivery_id] = emit(tenant_a)
    assert webhook_deliver(delivery_id) is not None
    refused = delivery(delivery_id)
    assert refused.status == "pending" and refused.last_status_code is None
    assert "ConnectionRefused" in refused.last_error


def test_dns_rebinding_is_caught_at_delivery(tenant_a, receiver, fake_dns):
    fake_dns["rebind.example.test"] = PUBLIC_IP
    make_webhook(tenant_a, f"http://rebind.example.test:{receiver.port}/hook")
    fake_dns["rebind.example.test"] = "127.0.0.1"  # the name now points inside
    [delivery_id] = emit(tenant_a)
    assert webhook_deliver(delivery_id) is not None
    assert receiver.requests == []
    refused = delivery(delivery_id)
    assert refused.status == "pending" and "private or reserved" in refused.last_error


def test_connects_to_the_vetted_address_with_the_host_name(tenant_a, receiver, fake_dns, allow_private):
    fake_dns["receiver.example.test"] = "127.0.0.1"
    _webhook, receiver.secret = make_webhook(tenant_a, f"http://receiver.example.test:{receiver.port}/hook")
    [delivery_id] = emit(tenant_a)
    assert webhook_deliver(delivery_id) is None
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"receiver.example.test:{receiver.port}"
    assert request["verified"]


def test_non_ascii_paths_are_escaped(tenant_a, receiver, allow_private):
    _webhook, receiver.secret = make_webhook(tenant_a, receiver.url.replace("/platform?", "/plätform?"))
    [delivery_id] = emit(tenant_a)
    assert webhook_deliver(delivery_id) is None
    assert receiver.requests[0]["path"] == "/hooks/pl%C3%A4tform?source=test"


def test_attempts_lost_with_their_worker_still_count(tenant_a, receiver, allow_private, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    make_webhook(tenant_a, receiver.url)
    [delivery_id] = emit(tenant_a)
    with dangerously_unscoped():  # two workers claimed it and died mid-attempt
        WebhookDelivery.objects.filter(pk=delivery_id).update(attempts=2)
    assert webhook_deliver(delivery_id) is None
    assert receiver.requests == []
    assert delivery(delivery_id).status == DeliveryStatus.FAILED


def test_disabled_webhook_fails_its_pending_deliveries(tenant_a, receiver, allow_private):
    webhook, _secret = make_webhook(tenant_a, receiver.url)
    [delivery_id] = emit(tenant_a)
    with tenant_scope(tenant_a.organization):
        webhook_update(webhook=webhook, is_active=False, actor=Actor(user=tenant_a.owner))
    assert webhook_deliver(delivery_id) is None
    assert receiver.requests == []
    assert delivery(delivery_id).status == DeliveryStatus.FAILED


def test_emit_validates_the_event_and_serializes_the_payload(tenant_a, allow_private):
    import uuid
    from decimal import Decimal

    make_webhook(tenant_a, "http://127.0.0.1:9/hook", events=["content.registered"])
    with pytest.raises(ValueError):
        emit(tenant_a, event="job.exploded")
    job_id = uuid.uuid4()
    [delivery_id] = emit(tenant_a, event="content.registered", payload={"id": job_id, "cost": Decimal("0.5")})
    assert delivery(delivery_id).payload == {"id": str(job_id), "cost": "0.5"}


def test_due_deliveries_span_organizations(tenant_a, tenant_b, allow_private):
    make_webhook(tenant_a, "http://127.0.0.1:9/a")
    make_webhook(tenant_b, "http://127.0.0.1:9/b")
    ids = emit(tenant_a) + emit(tenant_b)
    assert sorted(map(str, webhook_due_deliveries())) == sorted(map(str, ids))


def test_event_validation_in_services(tenant_a, allow_private):
    with tenant_scope(tenant_a.organization), pytest.raises(DomainError) as refused:
        make_webhook(tenant_a, "http://127.0.0.1:9/hook", events=["job.exploded"])
    assert refused.value.code == "invalid_events"


# --- the API -----------------------------------------------------------------------------------


def test_api_create_update_delete(tenant_a, fake_dns):
    fake_dns["hooks.example.test"] = PUBLIC_IP
    client = tenant_a.client()
    created = client.post(reverse("api:webhook-list"),
                          {"url": "https://hooks.example.test/x", "events": ["job.failed"]})
    assert created.status_code == 201
    webhook_id = created.json()["id"]
    assert created.json()["created_by"] == tenant_a.owner.email

    url = reverse("api:webhook-detail", args=[webhook_id])
    patched = client.patch(url, {"events": ["job.completed"], "is_active": False})
    assert patched.status_code == 200, patched.content
    assert patched.json()["events"] == ["job.completed"] and patched.json()["is_active"] is False

    bad = client.patch(url, {"url": "http://10.0.0.1/x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "webhook_url_not_allowed"
    unknown_event = client.patch(url, {"events": ["job.exploded"]})
    assert unknown_event.status_code == 400

    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    with tenant_scope(tenant_a.organization):
        actions = set(AuditEntry.objects.filter(target_type="generation.webhook").values_list("action", flat=True))
    assert actions == {"webhook.create", "webhook.update", "webhook.delete"}


def test_api_needs_the_webhooks_scope(tenant_a):
    assert tenant_a.client("producer").get(reverse("api:webhook-list")).status_code == 403
    assert tenant_a.key_client(["project:read"]).get(reverse("api:webhook-list")).status_code == 403
    assert tenant_a.key_client(["webhooks:manage"]).get(reverse("api:webhook-list")).status_code == 200


def test_other_tenant_sees_nothing(tenant_a, tenant_b, allow_private):
    webhook, _secret = make_webhook(tenant_a, "http://127.0.0.1:9/secret-a-hook")
    emit(tenant_a)
    for client in (tenant_b.client(), tenant_b.key_client()):
        detail = reverse("api:webhook-detail", args=[webhook.pk])
        deliveries = reverse("api:webhook-deliveries", args=[webhook.pk])
        for response in (
            client.get(detail),
            client.patch(detail, {"is_active": False}),
            client.delete(detail),
            client.get(deliveries),
        ):
            assert response.status_code == 404, response.content
            assert "secret-a-hook" not in response.content.decode()
        listed = client.get(reverse("api:webhook-list"))
        assert listed.status_code == 200 and listed.json()["results"] == []
    with tenant_scope(tenant_a.organization):
        assert Webhook.objects.get(pk=webhook.pk).is_active
        assert WebhookDelivery.objects.count() == 1
