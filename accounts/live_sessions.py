"""Open websockets end with the right that opened them: a member removed, an organization suspended,
a user deactivated or signed out. Two paths close them, because either alone falls short:

- a `session.ended` message to the groups a socket joined, sent after the commit (at once, and across
  processes where the channel layer is shared: Redis);
- each socket re-checks on its own every JOB_EVENTS_POLL_S (`session_end_reason`), which also covers
  processes that share no channel layer (the embedded mode's in-memory one) and a lost message.

API keys open no websocket (websockets authenticate by the portal session only), so revoking a key has
no socket to close; its HTTP requests are refused from the next one on.
"""
from __future__ import annotations

import hashlib
import logging
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.dispatch import receiver

from accounts.models import Membership
from config.tenancy import dangerously_unscoped

logger = logging.getLogger(__name__)

# The close code of an ended session: the portal's script stops reconnecting on any 44xx.
SESSION_ENDED_CLOSE_CODE = 4403


def member_group(organization_id: int, user_id: int) -> str:
    return f"member.{organization_id}.{user_id}"


def organization_sessions_group(organization_id: int) -> str:
    return f"sessions.org.{organization_id}"


def browser_session_group(session_key: str) -> str:
    # Hashed: the session key is a credential, and group names sit in Redis in the clear.
    return "sessions.key." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def sessions_end(*, group: str, reason: str) -> None:
    """Close the websockets of `group` once the current transaction commits."""
    transaction.on_commit(lambda: _send(group, reason))


def _send(group: str, reason: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "session.ended", "reason": reason})
    except Exception:  # a channel layer outage must not undo the removal; the sockets' re-check closes them
        logger.warning("could not send session.ended to %s", group, exc_info=True)


def session_end_reason(*, user_id: int, organization_id: int, session_key: str | None,
                       scope: str | None = None) -> str | None:
    """Why a socket opened by this member's session may no longer stay open, or None while it may."""
    with dangerously_unscoped():  # a consumer's own membership, looked up by its user and organization
        membership = (Membership.objects.filter(user_id=user_id, organization_id=organization_id)
                      .select_related("organization", "user").first())
    if membership is None:
        return "membership_removed"
    if not membership.user.is_active:
        return "user_inactive"
    if membership.organization.is_suspended:
        return "organization_suspended"
    if scope is not None and scope not in membership.scopes:
        return "scope_removed"
    if session_key:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        if not store().exists(session_key):
            return "signed_out"
    return None


@receiver(user_logged_out)
def _close_sockets_of_signed_out_session(sender, request, user, **kwargs) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        sessions_end(group=browser_session_group(session_key), reason="signed_out")
