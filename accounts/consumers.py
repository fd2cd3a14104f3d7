"""Websocket entry: a signed-in member subscribes to their organization's live events."""
from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from accounts.live_sessions import (
    SESSION_ENDED_CLOSE_CODE,
    browser_session_group,
    member_group,
    organization_sessions_group,
    session_end_reason,
)
from accounts.middleware import active_membership


class SafeJsonConsumer(AsyncJsonWebsocketConsumer):
    """Refuses messages nesting too deeply before decoding them (see config.api.json_depth_exceeds)."""

    @classmethod
    async def decode_json(cls, text_data):
        from config.parsers import json_depth_exceeds

        if len(text_data) > 65536 or json_depth_exceeds(text_data.encode()):
            return {}
        return await super().decode_json(text_data)


class SessionBoundConsumer(SafeJsonConsumer):
    """A socket that lives only as long as the member's right to it (accounts/live_sessions.py): it
    joins the groups a removal, a suspension or a sign-out message, and re-checks on its own every
    JOB_EVENTS_POLL_S. `required_scope`, when set, must stay among the member's scopes."""

    required_scope: str | None = None

    async def session_bind(self, membership) -> None:
        self.session_user_id = membership.user_id
        self.organization_id = membership.organization_id
        self.session_key = self.scope["session"].session_key
        self.session_groups = [member_group(membership.organization_id, membership.user_id),
                               organization_sessions_group(membership.organization_id)]
        if self.session_key:
            self.session_groups.append(browser_session_group(self.session_key))
        for group in self.session_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.session_recheck_at = time.monotonic() + settings.JOB_EVENTS_POLL_S

    async def session_unbind(self) -> None:
        for group in getattr(self, "session_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.session_groups = []

    async def session_still_valid(self) -> bool:
        """Re-check at most once per JOB_EVENTS_POLL_S; closes the socket and returns False once ended."""
        if getattr(self, "session_closed", False):
            return False
        if time.monotonic() < self.session_recheck_at:
            return True
        self.session_recheck_at = time.monotonic() + settings.JOB_EVENTS_POLL_S
        reason = await database_sync_to_async(session_end_reason)(
            user_id=self.session_user_id, organization_id=self.organization_id, session_key=self.session_key,
            scope=self.required_scope)
        if reason is None:
            return True
        await self.session_end(reason)
        return False

    async def session_end(self, reason: str) -> None:
        if getattr(self, "session_closed", False):
            return
        self.session_closed = True
        await self.send_json({"type": "session.ended", "reason": reason})
        await self.close(code=SESSION_ENDED_CLOSE_CODE)

    async def session_ended(self, message):
        await self.session_end(message["reason"])


def organization_group(organization_id: int) -> str:
    return f"org.{organization_id}"


class OrganizationEventsConsumer(SessionBoundConsumer):
    """`/ws/events`: events of the session's active organization, and nothing of any other."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        membership = await database_sync_to_async(active_membership)(user, self.scope["session"])
        if membership is None or membership.organization.is_suspended:
            await self.close(code=4403)
            return
        await self.session_bind(membership)
        await self.channel_layer.group_add(organization_group(self.organization_id), self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "organization": membership.organization.slug, "role": membership.role})
        self.watch = asyncio.ensure_future(self._watch())

    async def _watch(self):
        # Nothing else polls here, so this loop is the re-check of sockets no message reaches.
        try:
            while await self.session_still_valid():
                await asyncio.sleep(max(0.0, self.session_recheck_at - time.monotonic()))
        except asyncio.CancelledError:
            return

    async def disconnect(self, code):
        if hasattr(self, "watch"):
            self.watch.cancel()
        await self.session_unbind()
        if hasattr(self, "organization_id"):
            await self.channel_layer.group_discard(organization_group(self.organization_id), self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def organization_event(self, message):
        await self.send_json(message["event"])
