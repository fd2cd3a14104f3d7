"""Websocket entry: a signed-in member subscribes to their organization's live events."""
from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.middleware import active_membership


class SafeJsonConsumer(AsyncJsonWebsocketConsumer):
    """Refuses messages nesting too deeply before decoding them (see config.api.json_depth_exceeds)."""

    @classmethod
    async def decode_json(cls, text_data):
        from config.parsers import json_depth_exceeds

        if len(text_data) > 65536 or json_depth_exceeds(text_data.encode()):
            return {}
        return await super().decode_json(text_data)


def organization_group(organization_id: int) -> str:
    return f"org.{organization_id}"


class OrganizationEventsConsumer(SafeJsonConsumer):
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
        self.organization_id = membership.organization_id
        await self.channel_layer.group_add(organization_group(self.organization_id), self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "organization": membership.organization.slug, "role": membership.role})

    async def disconnect(self, code):
        if hasattr(self, "organization_id"):
            await self.channel_layer.group_discard(organization_group(self.organization_id), self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def organization_event(self, message):
        await self.send_json(message["event"])
