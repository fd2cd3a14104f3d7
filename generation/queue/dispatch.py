"""Queue dispatch, after commit, through the queue port (config.queues): steps by id to their queue,
webhook deliveries to `cpu`. The engines' entry points (generation/queue/tasks.py for Celery,
generation/queue/dramatiq_actors.py) serve these task names and call the worker."""
from __future__ import annotations

from django.db import transaction

from config.queues import task_send
from config.tenancy import dangerously_unscoped

TASK_RUN_STEP = "generation.run_step"
TASK_DELIVER_WEBHOOK = "generation.deliver_webhook"
TASK_SWEEP = "generation.sweep"


def steps_dispatch(step_ids: list[str], countdown: float = 0) -> None:
    transaction.on_commit(lambda: _send_steps(step_ids, countdown))


def deliveries_dispatch(delivery_ids: list[str], countdown: float = 0) -> None:
    transaction.on_commit(lambda: _send_deliveries(delivery_ids, countdown))


def _send_steps(step_ids: list[str], countdown: float) -> None:
    from django.conf import settings

    from generation.models import Step

    if settings.QUEUE_ENGINE == "manual" or not step_ids:
        return
    with dangerously_unscoped():
        rows = list(Step.objects.filter(pk__in=step_ids).values_list("id", "queue", "priority"))
    for step_id, queue, priority in rows:
        task_send(TASK_RUN_STEP, [str(step_id), queue], queue=queue, countdown=countdown, priority=priority)


def _send_deliveries(delivery_ids: list[str], countdown: float) -> None:
    for delivery_id in delivery_ids:
        task_send(TASK_DELIVER_WEBHOOK, [delivery_id], queue="cpu", countdown=countdown)
