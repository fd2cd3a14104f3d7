"""Celery entry points: they carry ids, and call the worker code that loads and runs."""
from celery import shared_task

from generation import worker


@shared_task(name="generation.run_step", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_step(step_id: str, queue: str) -> str | None:
    # The id only wakes the worker: it claims the fairest ready step of its queue, which may be another.
    return worker.execute_next(queue)


@shared_task(name="generation.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    from generation.webhooks import webhook_deliver

    webhook_deliver(delivery_id)


@shared_task(name="generation.sweep", ignore_result=True)
def sweep() -> dict:
    return worker.sweep()
