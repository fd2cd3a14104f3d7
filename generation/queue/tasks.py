"""Celery entry points: they carry ids, and call the worker code that loads and runs. The worker
process's lifecycle (the sweeper, the metrics port, the graceful shutdown) hangs on Celery's signals here;
config/celery.py loads this module through autodiscovery."""
from celery import shared_task
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown, worker_shutting_down
from django.db import close_old_connections

from config.metrics import worker_metrics_serve
from generation.queue import worker
from generation.queue.dispatch import TASK_DELIVER_WEBHOOK, TASK_RUN_STEP, TASK_SWEEP

_sweeper = None


@task_prerun.connect
@task_postrun.connect
def _fresh_connections(**kwargs):
    # Like a web request: drop connections that broke or outlived CONN_MAX_AGE around each task.
    close_old_connections()


@shared_task(name=TASK_RUN_STEP, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_step(step_id: str, queue: str) -> str | None:
    # The id only wakes the worker: it claims the fairest ready step of its queue, which may be another.
    return worker.execute_next(queue)


@shared_task(name=TASK_DELIVER_WEBHOOK, ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    worker.webhook_deliver_next(delivery_id)


@shared_task(name=TASK_SWEEP, ignore_result=True)
def sweep() -> dict:
    return worker.sweep()


@worker_ready.connect
def start_sweeper(sender=None, **kwargs):
    global _sweeper
    _sweeper = worker.Sweeper()
    _sweeper.start()
    worker_metrics_serve()
    hub = getattr(sender, "hub", None)
    if hub is not None:
        # The event loop (AMQP, Redis) sleeps up to 10 s when idle and only then notices a SIGTERM;
        # a tick every second makes an idle worker stop at once.
        hub.call_repeatedly(1.0, _tick)


def _tick():
    pass


@worker_shutting_down.connect
def begin_shutdown(**kwargs):
    # Sent from the SIGTERM handler (warm shutdown): Celery stops taking messages and waits for the
    # running steps; each finishes within WORKER_SHUTDOWN_GRACE_S or is handed back to the queue.
    # Pools whose tasks run in this process only (solo, threads): prefork children never hear of it.
    worker.shutdown.begin()


@worker_shutdown.connect
def stop_sweeper(**kwargs):
    if _sweeper is not None:
        _sweeper.stopped.set()
