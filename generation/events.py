"""Job events: stored in order (JobEvent), pushed to websocket listeners after commit, and turned
into webhook deliveries for the events partners subscribe to."""
from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from generation.models import Job, JobEvent
from generation.queue.dispatch import deliveries_dispatch
from generation.webhooks import webhook_event_emit

logger = logging.getLogger(__name__)


def job_group(job_id) -> str:
    return f"job.{job_id}"


def job_event(job: Job, type_: str, data: dict) -> JobEvent:
    event = JobEvent.objects.create(organization_id=job.organization_id, job=job, type=type_, data=data)
    transaction.on_commit(lambda: _push(job.pk, event.pk))
    return event


def _push(job_id, event_id) -> None:
    """Wake the job's websocket listeners; they read the events from the database."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job_group(job_id), {"type": "job.wake", "event_id": event_id})
    except Exception:  # a channel layer outage must not fail the step; listeners also poll
        logger.warning("could not push job event %s", event_id, exc_info=True)


def job_webhook(job: Job, event: str) -> None:

    payload = {"event": event, "job": {"id": str(job.pk), "status": job.status, "project": str(job.project_id),
                                      "output": job.output, "error": job.error, "cost": str(job.cost)}}
    ids = webhook_event_emit(organization_id=job.organization_id, event=event, payload=payload)
    if ids:
        deliveries_dispatch([str(i) for i in ids])
