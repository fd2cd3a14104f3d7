"""Queue dispatch, after commit, through the configured engine (QUEUE_ENGINE).

Messages carry only ids. `celery` (default; in the embedded mode its broker is a folder under
VAR_DIR) and `dramatiq` run the same step code; `manual` sends nothing (tests drive the steps).
"""
from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.tenancy import dangerously_unscoped

QUEUES = ("cpu", "gpu", "llm", "rights", "chain")


def steps_dispatch(step_ids: list[str], countdown: float = 0) -> None:
    transaction.on_commit(lambda: _send_steps(step_ids, countdown))


def deliveries_dispatch(delivery_ids: list[str], countdown: float = 0) -> None:
    transaction.on_commit(lambda: _send_deliveries(delivery_ids, countdown))


def _send_steps(step_ids: list[str], countdown: float) -> None:
    from generation.models import Step

    engine = settings.QUEUE_ENGINE
    if engine == "manual" or not step_ids:
        return
    with dangerously_unscoped():
        rows = list(Step.objects.filter(pk__in=step_ids).values_list("id", "queue", "priority"))
    for step_id, queue, priority in rows:
        if engine == "celery":
            from generation.tasks import run_step

            run_step.apply_async(args=[str(step_id), queue], queue=queue, priority=priority,
                                 countdown=countdown or None)
        else:
            from generation.dramatiq_actors import actor_for

            actor_for(queue).send_with_options(args=(str(step_id), queue), delay=int(countdown * 1000) or None)


def _send_deliveries(delivery_ids: list[str], countdown: float) -> None:
    engine = settings.QUEUE_ENGINE
    if engine == "manual":
        return
    for delivery_id in delivery_ids:
        if engine == "celery":
            from generation.tasks import deliver_webhook

            deliver_webhook.apply_async(args=[delivery_id], queue="cpu", countdown=countdown or None)
        else:
            from generation.dramatiq_actors import deliver_webhook_actor

            deliver_webhook_actor.send_with_options(args=(delivery_id,), delay=int(countdown * 1000) or None)
