"""Reads of the accounts app."""
from __future__ import annotations

import hmac

from django.db.models import QuerySet

from accounts.audit import Actor
from accounts.models import ApiKey, AuditEntry, Invitation, Membership, Organization, User
from accounts.tokens import api_key_prefix, token_digest
from config.errors import NotFound
from config.tenancy import dangerously_unscoped, scoped_object


def memberships_of_user(*, user: User) -> list[Membership]:
    """A person's memberships in every organization: theirs to see, whatever the active scope."""
    if not user.is_authenticated:
        return []
    with dangerously_unscoped():
        return list(Membership.objects.filter(user=user).select_related("organization").order_by("organization__name"))


def membership_of(*, user: User, organization_id: int) -> Membership | None:
    if not user.is_authenticated:
        return None
    with dangerously_unscoped():
        return Membership.objects.filter(user=user, organization_id=organization_id).select_related("organization").first()


def organization_by_slug(*, slug: str) -> Organization:
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise NotFound("No such organization.")
    return organization


def api_key_by_plaintext(plain: str) -> ApiKey | None:
    """The key behind a bearer token, compared in constant time; None when unknown."""
    prefix = api_key_prefix(plain)
    if prefix is None:
        return None
    with dangerously_unscoped():
        key = ApiKey.objects.select_related("organization", "created_by").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.key_hash, token_digest(plain)):
        return None
    return key


def member_list() -> QuerySet[Membership]:
    return Membership.objects.select_related("user").order_by("created_at")


def invitation_list() -> QuerySet[Invitation]:
    return Invitation.objects.select_related("invited_by").order_by("-created_at")


def api_key_list() -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("created_by").order_by("-created_at")


AUDIT_FILTERS = {"action": "action", "actor": "actor_email__iexact", "target_type": "target_type",
                 "target_id": "target_id", "since": "created_at__gte", "until": "created_at__lt", "api_key": "api_key_id"}


def audit_list(*, filters: dict) -> QuerySet[AuditEntry]:
    queryset = AuditEntry.objects.select_related("api_key").order_by("-created_at", "-id")
    lookups = {AUDIT_FILTERS[name]: value for name, value in filters.items() if value not in (None, "")}
    if "action" in filters and filters["action"] and filters["action"].endswith("."):
        lookups.pop("action")
        lookups["action__startswith"] = filters["action"]
    return queryset.filter(**lookups)


# --- access: one object of the active organization, or the same 404 for missing and foreign -------
# `actor` is who asks (the API's request.actor, the portal's portal_actor): the tenant scope already limits
# every read to the actor's organization; a rule that narrows it further (per-project access) goes here.


def access_member(actor: Actor | None, member_id) -> Membership:
    return scoped_object(member_list(), member_id, what="member")


def access_invitation(actor: Actor | None, invitation_id) -> Invitation:
    return scoped_object(invitation_list(), invitation_id, what="invitation")


def access_api_key(actor: Actor | None, api_key_id) -> ApiKey:
    return scoped_object(api_key_list(), api_key_id, what="API key")
