"""Dramatiq entry points (QUEUE_ENGINE=dramatiq), running the same worker code as Celery:

    dramatiq generation.queue.dramatiq_actors --queues dq-cpu dq-llm dq-rights dq-chain --processes 1 --threads 2

Each task name of generation.queue.dispatch has one actor per queue, named and queued as config.queues says.
"""
from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import dramatiq  # noqa: E402
from dramatiq.middleware import Middleware  # noqa: E402

from config.dramatiq import broker_get  # noqa: E402
from config.queues import QUEUES, dramatiq_actor_name, dramatiq_queue  # noqa: E402
from generation.queue import worker  # noqa: E402
from generation.queue.dispatch import TASK_DELIVER_WEBHOOK, TASK_RUN_STEP  # noqa: E402


class SweeperMiddleware(Middleware):
    """Per worker process: the sweeper, the metrics port, and the graceful shutdown. On SIGTERM Dramatiq
    stops its worker threads and waits for their messages; each running step finishes within
    WORKER_SHUTDOWN_GRACE_S or is handed back to the queue."""

    def after_worker_boot(self, broker, worker_):
        from config.metrics import worker_metrics_serve

        self.sweeper = worker.Sweeper()
        self.sweeper.start()
        worker_metrics_serve()

    def before_worker_shutdown(self, broker, worker_):
        from config.metrics import process_exit

        worker.shutdown.begin()
        if getattr(self, "sweeper", None):
            self.sweeper.stopped.set()
        process_exit()


broker = broker_get()
broker.add_middleware(SweeperMiddleware())


def _run_step(step_id: str, queue_name: str):
    worker.execute_next(queue_name)


def _deliver_webhook(delivery_id: str):
    worker.webhook_deliver_next(delivery_id)


STEP_ACTORS = {
    queue: dramatiq.actor(_run_step, actor_name=dramatiq_actor_name(TASK_RUN_STEP, queue),
                          queue_name=dramatiq_queue(queue), max_retries=0, time_limit=3_600_000)
    for queue in QUEUES
}
deliver_webhook_actor = dramatiq.actor(_deliver_webhook, actor_name=dramatiq_actor_name(TASK_DELIVER_WEBHOOK, "cpu"),
                                       queue_name=dramatiq_queue("cpu"), max_retries=0)
