"""`/ws/jobs/<id>`: a job's live events for members of its organization.

Events are read from the database (JobEvent), so a client that reconnects with `?after=<id>`
misses nothing. The channel layer only wakes the consumer early; it also polls, so the embedded
mode's web and worker processes need no shared channel layer.
"""
from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.consumers import SessionBoundConsumer
from accounts.middleware import active_membership
from config.tenancy import tenant_scope
from config.metrics import WEBSOCKET_CONNECTIONS
from generation.events import job_group
from generation.models import Job, JobEvent


class JobEventsConsumer(SessionBoundConsumer):
    required_scope = "job:read"

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        membership = await database_sync_to_async(active_membership)(user, self.scope["session"])
        if membership is None or membership.organization.is_suspended or "job:read" not in membership.scopes:
            await self.close(code=4403)
            return
        self.organization_id = membership.organization_id  # _snapshot reads in its scope
        snapshot = await database_sync_to_async(self._snapshot)()
        if snapshot is None:
            await self.close(code=4404)  # another organization's job answers like a missing one
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            self.last_id = int(query.get("after", ["0"])[0])
        except ValueError:
            self.last_id = 0
        self.wake = asyncio.Event()
        await self.session_bind(membership)
        await self.channel_layer.group_add(job_group(self.job_id), self.channel_name)
        await self.accept()
        self.counted = True
        WEBSOCKET_CONNECTIONS.inc()
        await self.send_json({"type": "snapshot", **snapshot})
        self.pump = asyncio.ensure_future(self._pump())

    def _snapshot(self):
        with tenant_scope(self.organization_id):
            job = Job.objects.filter(pk=self.job_id).values("status", "progress", "progress_message").first()
        return None if job is None else {"status": job["status"], "progress": job["progress"],
                                         "message": job["progress_message"]}

    def _events(self):
        with tenant_scope(self.organization_id):
            rows = list(JobEvent.objects.filter(job_id=self.job_id, id__gt=self.last_id).order_by("id")
                        .values("id", "type", "data", "created_at")[:200])
        return rows

    async def _pump(self):
        try:
            while await self.session_still_valid():  # a removed member's socket closes here
                # Cleared before reading, so a wake-up that arrives during the read is not lost (with
                # Redis the next poll may be JOB_EVENTS_POLL_S away).
                self.wake.clear()
                rows = await database_sync_to_async(self._events)()
                for row in rows:
                    self.last_id = row["id"]
                    await self.send_json({"id": row["id"], "type": row["type"], **row["data"],
                                          "at": row["created_at"].isoformat()})
                if len(rows) == 200:
                    continue  # a backlog: read on without waiting
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=settings.JOB_EVENTS_POLL_S)
                except asyncio.TimeoutError:
                    pass
        except asyncio.CancelledError:
            return

    async def job_wake(self, message):
        self.wake.set()

    async def disconnect(self, code):
        if getattr(self, "counted", False):
            self.counted = False
            WEBSOCKET_CONNECTIONS.dec()
        if hasattr(self, "pump"):
            self.pump.cancel()
        await self.session_unbind()
        if hasattr(self, "job_id"):
            await self.channel_layer.group_discard(job_group(self.job_id), self.channel_name)
