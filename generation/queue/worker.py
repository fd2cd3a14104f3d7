"""The queue-independent part of a worker: claim a step, keep its lease alive while it runs,
run it in its organization's scope; the sweeper that requeues steps of dead workers; and the graceful
shutdown that both queue engines start on SIGTERM."""
from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
import uuid

from django.conf import settings
from django.db import close_old_connections

from config.logging import log_context
from config.metrics import STEP_DURATION
from config.queues import QUEUES
from config.tenancy import tenant_scope
from generation.pipeline import stages
from generation.pipeline import steps as pipeline
from generation.queue.dispatch import deliveries_dispatch
from generation.retention import artifacts_cleanup_due
from generation.webhooks import webhook_deliver, webhook_due_deliveries
from rights.registry import registrations_anchor

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
# After a step is handed back on shutdown, it has this long to notice and stop before the process exits
# anyway (a provider call that does not check for cancellation); the step is already queued again.
RELEASE_EXIT_AFTER_S = 3.0
POLL_S = 0.25


class Shutdown:
    """The process's shutdown deadline: set once by the queue engine's SIGTERM hook, read by every
    running step's heartbeat. Setting it only stores a time, so it is safe inside a signal handler."""

    def __init__(self):
        self.deadline: float | None = None

    def begin(self, grace_s: float | None = None) -> None:
        if self.deadline is None:
            grace = settings.WORKER_SHUTDOWN_GRACE_S if grace_s is None else grace_s
            self.deadline = time.monotonic() + grace

    def due(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


shutdown = Shutdown()


class Heartbeat(threading.Thread):
    """Renews the lease every third of its length; notices cancellation or a lost lease; and when the
    shutdown deadline passes with the step still running, hands the step back to the queue."""

    def __init__(self, step_id, worker: str):
        super().__init__(daemon=True, name=f"lease-{step_id}")
        self.step_id, self.worker = step_id, worker
        self.done = threading.Event()
        self.lost = threading.Event()
        self.released = False
        self.context = contextvars.copy_context()  # so that its log lines carry the step's ids

    def run(self) -> None:
        self.context.run(self._beat)

    def _beat(self) -> None:
        interval = max(0.5, settings.STEP_LEASE_S / 3)
        renew_at = time.monotonic() + interval
        try:
            while not self.done.wait(POLL_S):
                if shutdown.due():
                    self._release()
                    return
                if time.monotonic() >= renew_at:
                    renew_at = time.monotonic() + interval
                    if not pipeline.step_renew_lease(step_id=self.step_id, worker=self.worker):
                        self.lost.set()
                        return
        finally:
            close_old_connections()

    def _release(self) -> None:
        self.released = pipeline.step_release(step_id=self.step_id, worker=self.worker)
        self.lost.set()  # the step's cancellation checks now stop it
        if self.released and not self.done.wait(RELEASE_EXIT_AFTER_S):
            logger.warning("step %s did not stop within %.0f s of its release; exiting", self.step_id,
                           RELEASE_EXIT_AFTER_S)
            logging.shutdown()
            os._exit(0)


def execute_next(queue: str, worker: str = WORKER_ID) -> str | None:
    """Claim and run the next fair step of `queue`; returns its id, or None when none was ready."""
    step = pipeline.step_claim_next(queue=queue, worker=worker)
    if step is None:
        return None
    started = time.perf_counter()
    with log_context(job_id=step.job_id, step_id=step.pk, organization_id=step.organization_id):
        heartbeat = Heartbeat(step.pk, worker)
        heartbeat.start()
        provider, committed = "unknown", False
        try:
            with tenant_scope(step.organization_id):
                provider, committed = stages.step_execute(step, worker=worker, is_cancelled=heartbeat.lost.is_set)
        finally:
            heartbeat.done.set()
            heartbeat.join(timeout=5)
            # succeeded, released (handed back on shutdown), or failed (also: retried, fell back, cancelled)
            outcome = "released" if heartbeat.released else "succeeded" if committed else "failed"
            STEP_DURATION.labels(step.stage, provider, outcome).observe(time.perf_counter() - started)
    return str(step.pk)


def webhook_deliver_next(delivery_id: str) -> None:
    """Try one webhook delivery; a retry is dispatched for when it is due."""
    from django.utils import timezone

    next_at = webhook_deliver(delivery_id)
    if next_at:
        deliveries_dispatch([delivery_id], countdown=max(0.0, (next_at - timezone.now()).total_seconds()))


def sweep() -> dict:
    """Requeue steps of dead workers, advance stalled jobs and send webhook deliveries that are due."""
    from django.utils import timezone

    requeued = pipeline.steps_requeue_expired()
    stalled = pipeline.jobs_advance_stalled()
    due = [str(i) for i in webhook_due_deliveries(timezone.now())]
    if due:
        deliveries_dispatch(due)

    return {"requeued": requeued, "stalled": stalled, "deliveries": due, "anchored": registrations_anchor(),
            "artifacts_deleted": artifacts_cleanup_due()}


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


def run_until_idle(queues=QUEUES, limit: int = 10_000) -> int:
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
