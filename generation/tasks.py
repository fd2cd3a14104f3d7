"""Celery entry points: they carry ids, and call the worker code that loads and runs."""
from celery import shared_task
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

from generation import worker


@task_prerun.connect
@task_postrun.connect
def _fresh_connections(**kwargs):
    # Like a web request: drop connections that broke or outlived CONN_MAX_AGE around each task.
    close_old_connections()


@shared_task(name="generation.run_step", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_step(step_id: str, queue: str) -> str | None:
    # The id only wakes the worker: it claims the fairest ready step of its queue, which may be another.
    return worker.execute_next(queue)


@shared_task(name="generation.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    from django.utils import timezone

    from generation.dispatch import deliveries_dispatch
    from generation.webhooks import webhook_deliver

    next_at = webhook_deliver(delivery_id)
    if next_at:
        deliveries_dispatch([delivery_id], countdown=max(0.0, (next_at - timezone.now()).total_seconds()))


@shared_task(name="generation.sweep", ignore_result=True)
def sweep() -> dict:
    return worker.sweep()
