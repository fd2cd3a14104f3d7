"""The one audit helper: who did what to which object, from which address, through which key."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from accounts.models import ApiKey, AuditEntry, User
from config.client_address import forwarded_client

# Never copied into the audit log.
SECRET_FIELDS = {"password", "key_hash", "token_hash"}


@dataclass(frozen=True)
class Actor:
    """Whoever acts: a signed-in user, an API key, an operator, or the system (all None)."""

    user: User | None = None
    api_key: ApiKey | None = None
    ip_address: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def system(cls) -> "Actor":
        return cls()


def snapshot(instance: models.Model, fields: list[str] | None = None) -> dict:
    """The instance's concrete field values as JSON-safe data, without secrets."""
    data = {}
    for model_field in instance._meta.concrete_fields:
        if model_field.name in SECRET_FIELDS or (fields and model_field.name not in fields):
            continue
        data[model_field.name] = model_field.value_from_object(instance)
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    organization_id: int | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEntry:
    if organization_id is None and target is not None:
        organization_id = getattr(target, "organization_id", None)
        if organization_id is None and target._meta.label == "accounts.Organization":
            organization_id = target.pk
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    entry = AuditEntry(
        organization_id=organization_id,
        actor=user,
        actor_email=user.email if user else "",
        api_key=actor.api_key,
        ip_address=actor.ip_address,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        before=before,
        after=after,
    )
    entry.save()
    return entry


def changed(before: dict, after: dict) -> tuple[dict, dict]:
    """Only the fields that changed, for compact before/after records."""
    keys = [key for key in after if before.get(key) != after.get(key)]
    return {key: before.get(key) for key in keys}, {key: after[key] for key in keys}


def client_ip(request) -> str | None:
    """The caller's address; X-Forwarded-For counts only behind TRUSTED_PROXY_COUNT proxies (the same
    rule the ASGI application applies to its scope, config/client_address.py, so WSGI agrees)."""
    from django.conf import settings

    return forwarded_client(remote=request.META.get("REMOTE_ADDR"),
                            forwarded=request.META.get("HTTP_X_FORWARDED_FOR", ""),
                            proxies=settings.TRUSTED_PROXY_COUNT)
