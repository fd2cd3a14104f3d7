"""Outgoing webhooks: subscriptions, signed deliveries with retries, their URLs kept safe by the outbound guard.

A webhook URL is vetted (config/outbound.py) when it is saved and again right before every attempt (DNS
may have changed since: rebinding), and the connection goes to the address that was just vetted, never to
a second lookup. Deliveries are rows; the queue carries only their ids and any worker may run an attempt.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import time
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.audit import Actor, audit_record, changed, snapshot
from accounts.crypto import secret_decrypt, secret_encrypt
from accounts.models import Organization
from config.errors import Conflict, DomainError
from config.outbound import (
    OutboundUrlNotAllowed,
    PinnedHTTPConnection,
    PinnedHTTPSConnection,
    address_refused,
    outbound_target,
)
from config.tenancy import dangerously_unscoped, scoped_object, tenant_scope
from generation.error_codes import GenerationErrors
from generation.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from generation.queue.dispatch import deliveries_dispatch

SIGNATURE_HEADER = "X-Platform-Signature"
EVENT_HEADER = "X-Platform-Event"
DELIVERY_HEADER = "X-Platform-Delivery"
USER_AGENT = "platform-webhooks/1"

EDITABLE = ["url", "events", "is_active"]
MAX_WEBHOOKS_PER_ORGANIZATION = 20
MAX_RESPONSE_BYTES = 64 * 1024
# Retry delays grow sixfold from WEBHOOK_RETRY_BASE_S (10 s, 1 min, 6 min, 36 min, 3.6 h, then 12 h).
BACKOFF_FACTOR = 6
BACKOFF_CAP = timedelta(hours=12)
# While an attempt runs, its delivery is not due; a worker that dies mid-attempt is replaced after this.
ATTEMPT_LEASE = timedelta(seconds=60)


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- the URL guard -----------------------------------------------------------------------------


class WebhookUrlNotAllowed(OutboundUrlNotAllowed):
    """The outbound guard's refusal, under the code webhook clients already know."""

    code = GenerationErrors.WEBHOOK_URL_NOT_ALLOWED


# The guard's address rule, under its old name (tests and callers of this module use it).
_address_refused = address_refused


def _vetted_target(url: str) -> tuple[str, str, int, tuple[str, ...]]:
    """(scheme, host, port, addresses): the URL's parts and every address its host resolves to,
    all of them allowed. Raises WebhookUrlNotAllowed."""
    target = outbound_target(url, what="webhook URL", error=WebhookUrlNotAllowed)
    return target.scheme, target.host, target.port, target.addresses


def webhook_url_check(url: str) -> None:
    """Refuse URLs that are not plain http(s), carry credentials, or reach a non-public address."""
    _vetted_target(url)


# --- signatures --------------------------------------------------------------------------------


def webhook_sign(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={webhook_sign(secret, timestamp, body)}"


def webhook_verify(secret: str, header: str, body: bytes, tolerance_s: int = 300, now: float | None = None) -> bool:
    """For receivers: does `header` (X-Platform-Signature) sign `body` with `secret`, recently enough?"""
    timestamp, candidates = None, []
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = webhook_sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# --- subscriptions -----------------------------------------------------------------------------


def _clean_events(events) -> list[str]:
    allowed = set(WebhookEvent.values)
    if not isinstance(events, (list, tuple)) or not events:
        raise DomainError("Subscribe to at least one event.", code=GenerationErrors.INVALID_EVENTS,
                          fields={"events": ["Subscribe to at least one event."]})
    unknown = [event for event in events if event not in allowed]
    if unknown:
        message = f"Unknown events: {', '.join(map(str, unknown))}. Known: {', '.join(WebhookEvent.values)}."
        raise DomainError(message, code=GenerationErrors.INVALID_EVENTS, fields={"events": [message]})
    return list(dict.fromkeys(events))


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    if len(url) > Webhook._meta.get_field("url").max_length:
        raise DomainError("The webhook URL is too long.", fields={"url": ["too long"]})
    try:
        webhook_url_check(url)
    except WebhookUrlNotAllowed as exc:
        exc.fields = {"url": [exc.message]}
        raise
    return url


@transaction.atomic
def webhook_create(
    *, organization: Organization, url: str, events: list[str], actor: Actor, is_active: bool = True
) -> tuple[Webhook, str]:
    """Subscribe `url` to `events`. Returns the webhook and its signing secret, shown only this once."""
    with tenant_scope(organization):
        if Webhook.objects.count() >= MAX_WEBHOOKS_PER_ORGANIZATION:
            raise Conflict(f"An organization has at most {MAX_WEBHOOKS_PER_ORGANIZATION} webhooks.",
                           code=GenerationErrors.WEBHOOK_LIMIT)
        events = _clean_events(events)
        url = _clean_url(url)
        secret = "whsec_" + secrets.token_urlsafe(32)
        webhook = Webhook.objects.create(
            organization=organization, url=url, events=events, is_active=is_active,
            secret_encrypted=secret_encrypt(secret),
            created_by=actor.user if actor.user is not None and actor.user.is_authenticated else None,
        )
        audit_record(actor=actor, action="webhook.create", target=webhook, after=snapshot(webhook, EDITABLE))
    return webhook, secret


@transaction.atomic
def webhook_update(*, webhook: Webhook, actor: Actor, **fields) -> Webhook:
    before = snapshot(webhook, EDITABLE)
    for name, value in fields.items():
        if name not in EDITABLE:
            raise DomainError(f"{name} cannot be changed.", fields={name: ["read only"]})
        if name == "url" and value != webhook.url:
            value = _clean_url(value)
        elif name == "events":
            value = _clean_events(value)
        setattr(webhook, name, value)
    webhook.save()
    old, new = changed(before, snapshot(webhook, EDITABLE))
    if new:
        audit_record(actor=actor, action="webhook.update", target=webhook, before=old, after=new)
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook, actor: Actor) -> None:
    """Remove the webhook and its delivery log; pending deliveries are dropped with it."""
    audit_record(actor=actor, action="webhook.delete", target=webhook, before=snapshot(webhook, EDITABLE))
    webhook.delete()


def webhook_list() -> QuerySet[Webhook]:
    return Webhook.objects.select_related("created_by").order_by("-created_at")


def webhook_delivery_list(*, webhook: Webhook, status: str = "") -> QuerySet[WebhookDelivery]:
    queryset = WebhookDelivery.objects.filter(webhook=webhook).order_by("-created_at")
    return queryset.filter(status=status) if status else queryset


# --- deliveries --------------------------------------------------------------------------------


def webhook_event_emit(*, organization_id: int, event: str, payload: dict) -> list:
    """One pending delivery per active webhook of the organization subscribed to `event`.
    Returns their ids; the caller dispatches them after commit (generation.queue.dispatch)."""
    if event not in WebhookEvent.values:
        raise ValueError(f"unknown webhook event {event!r}")
    payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))  # UUIDs, Decimals, datetimes
    now = timezone.now()
    with tenant_scope(organization_id):
        # Few webhooks per organization, and JSON containment isn't portable to SQLite: filter here.
        webhooks = [w for w in Webhook.objects.filter(is_active=True).only("id", "events") if event in w.events]
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(organization_id=organization_id, webhook=webhook, event=event, payload=payload,
                            next_attempt_at=now)
            for webhook in webhooks
        )
    return [delivery.id for delivery in deliveries]


def webhook_due_deliveries(now: datetime | None = None, limit: int = 500) -> list:
    """Ids of pending deliveries whose next attempt is due, across organizations (for the sweeper)."""
    now = now or timezone.now()
    with dangerously_unscoped():
        return list(
            WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)
            .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True))
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:limit]
        )


def webhook_backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    base = float(_setting("WEBHOOK_RETRY_BASE_S", 10))
    return min(timedelta(seconds=base * BACKOFF_FACTOR ** max(attempts - 1, 0)), BACKOFF_CAP)


def webhook_deliver(delivery_id, *, now: datetime | None = None) -> datetime | None:
    """Make one attempt at a due delivery. Returns when the next attempt is due, or None when the
    delivery is finished (delivered, failed) or was not this call's to make (not due, taken, gone)."""
    now = now or timezone.now()
    with dangerously_unscoped():  # the queue gives only the id; act inside its tenant from here on
        organization_id = (
            WebhookDelivery.objects.filter(pk=delivery_id).values_list("organization_id", flat=True).first()
        )
    if organization_id is None:
        return None
    with tenant_scope(organization_id):
        # Claim it: one conditional UPDATE, so two workers never make the same attempt.
        claimed = (
            WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True))
            .update(attempts=F("attempts") + 1, next_attempt_at=now + ATTEMPT_LEASE)
        )
        if not claimed:
            return None
        delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
        webhook = delivery.webhook
        max_attempts = int(_setting("WEBHOOK_MAX_ATTEMPTS", 8))
        if not webhook.is_active:
            _finish(delivery, status=DeliveryStatus.FAILED, error="The webhook is disabled.")
            return None
        if delivery.attempts > max_attempts:  # earlier attempts died with their worker
            _finish(delivery, status=DeliveryStatus.FAILED, error=delivery.last_error or "Too many attempts.")
            return None
        status_code, error = _attempt(webhook, delivery)
        finished_at = timezone.now()
        if status_code is not None and 200 <= status_code < 300:
            _finish(delivery, status=DeliveryStatus.DELIVERED, status_code=status_code, delivered_at=finished_at)
            return None
        if delivery.attempts >= max_attempts:
            _finish(delivery, status=DeliveryStatus.FAILED, status_code=status_code, error=error)
            return None
        next_attempt_at = finished_at + webhook_backoff(delivery.attempts)
        _finish(delivery, status=DeliveryStatus.PENDING, status_code=status_code, error=error,
                next_attempt_at=next_attempt_at)
        return next_attempt_at


def _finish(delivery: WebhookDelivery, *, status: str, status_code: int | None = None, error: str = "",
            next_attempt_at: datetime | None = None, delivered_at: datetime | None = None) -> None:
    fields = {"status": status, "last_status_code": status_code, "last_error": error[:300],
              "next_attempt_at": next_attempt_at, "delivered_at": delivered_at}
    for name, value in fields.items():
        setattr(delivery, name, value)
    # An UPDATE, not save(): the webhook may have been deleted, with its deliveries, during the attempt.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)


def _body(delivery: WebhookDelivery) -> bytes:
    envelope = {"id": str(delivery.id), "event": delivery.event, "created_at": delivery.created_at,
                "data": delivery.payload}
    return json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode()


def _attempt(webhook: Webhook, delivery: WebhookDelivery) -> tuple[int | None, str]:
    """POST the delivery once. (status code or None, error text); never raises for network trouble."""
    body = _body(delivery)
    timestamp = int(time.time())
    try:
        secret = secret_decrypt(webhook.secret_encrypted)
    except ValueError as exc:
        return None, str(exc)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
        SIGNATURE_HEADER: webhook_signature_header(secret, timestamp, body),
    }
    try:
        status_code = _post(webhook.url, body, headers, timeout=float(_setting("WEBHOOK_TIMEOUT_S", 5)))
    except WebhookUrlNotAllowed as exc:
        return None, exc.message
    except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: e.g. a malformed URL
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if 300 <= status_code < 400:
        return status_code, f"HTTP {status_code}: redirects are not followed"
    if not 200 <= status_code < 300:
        return status_code, f"HTTP {status_code}"
    return status_code, ""


def _post(url: str, body: bytes, headers: dict, *, timeout: float) -> int:
    scheme, host, port, addresses = _vetted_target(url)  # again now: DNS may have been rebound
    parts = urlsplit(url)
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe="!#$%&'()*+,/:;=?@[]~")
    connection_class = PinnedHTTPSConnection if scheme == "https" else PinnedHTTPConnection
    for index, address in enumerate(addresses):
        connection = connection_class(host, port, address=address, timeout=timeout)
        try:
            try:
                connection.connect()
            except OSError:
                if index == len(addresses) - 1:
                    raise
                continue  # nothing was sent yet: the next address is safe to try
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(MAX_RESPONSE_BYTES)  # the answer's body doesn't matter; never read much of it
            return response.status
        finally:
            connection.close()
    raise OSError("no address to connect to")


def content_registered_webhooks(sender, *, registrations: list, batch, block_number: int, **kwargs) -> None:
    """`content.registered` to each owner's webhooks (rights.signals.content_registered), sent after the commit."""

    ids = []
    for registration in registrations:
        ids += webhook_event_emit(organization_id=registration.organization_id, event="content.registered", payload={
            "content_id": registration.content.content_id, "sha256": registration.content.sha256,
            "job": str(registration.content.job_id) if registration.content.job_id else None,
            "registration": {"chain_id": batch.chain_id, "contract": batch.contract, "tx_hash": batch.tx_hash,
                             "block_number": block_number, "merkle_root": batch.merkle_root,
                             "proof": registration.proof}})
    if ids:
        deliveries_dispatch([str(delivery_id) for delivery_id in ids])


def access_webhook(actor: Actor | None, webhook_id) -> Webhook:
    """A webhook of the active organization, or NotFound."""
    return scoped_object(webhook_list(), webhook_id, what="webhook")
