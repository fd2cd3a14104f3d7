"""The queue-independent part of a worker: claim a step, keep its lease alive while it runs,
run it in its organization's scope; and the sweeper that requeues steps of dead workers."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from django.conf import settings
from django.db import close_old_connections

from accounts.tenancy import tenant_scope
from generation import pipeline, stages

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Heartbeat(threading.Thread):
    """Renews the lease every third of its length; notices cancellation or a lost lease."""

    def __init__(self, step_id, worker: str):
        super().__init__(daemon=True, name=f"lease-{step_id}")
        self.step_id, self.worker = step_id, worker
        self.done = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        interval = max(0.5, settings.STEP_LEASE_S / 3)
        try:
            while not self.done.wait(interval):
                if not pipeline.step_renew_lease(step_id=self.step_id, worker=self.worker):
                    self.lost.set()
                    return
        finally:
            close_old_connections()


def execute_next(queue: str, worker: str = WORKER_ID) -> str | None:
    """Claim and run the next fair step of `queue`; returns its id, or None when none was ready."""
    step = pipeline.step_claim_next(queue=queue, worker=worker)
    if step is None:
        return None
    heartbeat = Heartbeat(step.pk, worker)
    heartbeat.start()
    try:
        with tenant_scope(step.organization_id):
            stages.step_execute(step, worker=worker, is_cancelled=heartbeat.lost.is_set)
    finally:
        heartbeat.done.set()
        heartbeat.join(timeout=5)
    return str(step.pk)


def sweep() -> dict:
    """Requeue steps of dead workers and send webhook deliveries that are due."""
    from django.utils import timezone

    from generation.dispatch import deliveries_dispatch
    from generation.webhooks import webhook_due_deliveries

    requeued = pipeline.steps_requeue_expired()
    due = [str(i) for i in webhook_due_deliveries(timezone.now())]
    if due:
        deliveries_dispatch(due)
    return {"requeued": requeued, "deliveries": due, "anchored": registrations_anchor()}


def registrations_anchor() -> int:
    """The registration batcher: anchor pending registrations, then confirm sent batches. A chain
    outage only delays this; the outbox keeps everything for the next sweep."""
    from rights.chain import ChainError
    from rights.registry import registration_anchor_batch, registrations_confirm

    batches = 0
    try:
        while registration_anchor_batch(max_size=settings.REGISTRY_BATCH_SIZE) is not None:
            batches += 1
        registrations_confirm(confirmations=settings.REGISTRY_CONFIRMATIONS)
    except ChainError as exc:
        logger.warning("registry batcher: chain unavailable (%s); will retry", exc)
    return batches


class Sweeper(threading.Thread):
    """Runs `sweep` every SWEEP_INTERVAL_S in each worker process (idempotent, so several may)."""

    def __init__(self):
        super().__init__(daemon=True, name="sweeper")
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(settings.SWEEP_INTERVAL_S):
            try:
                sweep()
            except Exception:
                logger.exception("sweep failed")
            finally:
                close_old_connections()


def run_until_idle(queues=("cpu", "gpu", "llm", "rights", "chain"), limit: int = 10_000) -> int:
    """Run ready steps in this process until none is left (tests and `manage.py run_steps`)."""
    ran = 0
    while ran < limit:
        progressed = False
        for queue in queues:
            if execute_next(queue):
                ran += 1
                progressed = True
        if not progressed:
            return ran
    return ran
