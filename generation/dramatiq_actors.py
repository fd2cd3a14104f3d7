"""Dramatiq entry points (QUEUE_ENGINE=dramatiq), running the same worker code as Celery:

    dramatiq generation.dramatiq_actors --queues dq-cpu dq-llm dq-rights dq-chain --processes 1 --threads 2

Dramatiq's queues are named `dq-<queue>`: it declares queues with other arguments than Celery, so
the two engines must not share queue names on one broker.
"""
from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import dramatiq  # noqa: E402
from django.conf import settings  # noqa: E402
from dramatiq.middleware import Middleware  # noqa: E402

from generation import worker  # noqa: E402
from generation.dispatch import QUEUES  # noqa: E402


def _broker():
    url = settings.BROKER_URL
    if url.startswith("amqp"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # Kombu's `amqp://host//` means the vhost "/"; pika spells it `%2F`.
        if url.endswith("//"):
            url = url[:-1] + "%2F"
        return RabbitmqBroker(url=url)
    if url.startswith("redis"):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url)
    raise RuntimeError("QUEUE_ENGINE=dramatiq needs BROKER_URL pointing at RabbitMQ (amqp://) or Redis (redis://)")


class ConnectionsMiddleware(Middleware):
    """Like a web request: drop broken or aged database connections around each message."""

    def before_process_message(self, broker, message):
        from django.db import close_old_connections

        close_old_connections()

    after_process_message = before_process_message


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


broker = _broker()
broker.add_middleware(SweeperMiddleware())
broker.add_middleware(ConnectionsMiddleware())
dramatiq.set_broker(broker)


QUEUE_PREFIX = "dq-"


def queue_name(queue: str) -> str:
    return f"{QUEUE_PREFIX}{queue}"


def _make_step_actor(queue: str):
    def run_step(step_id: str, queue_name: str):
        worker.execute_next(queue_name)

    return dramatiq.actor(run_step, actor_name=f"run_step_{queue}", queue_name=queue_name(queue), max_retries=0,
                          time_limit=3_600_000)


STEP_ACTORS = {queue: _make_step_actor(queue) for queue in QUEUES}


def actor_for(queue: str):
    return STEP_ACTORS[queue]


@dramatiq.actor(queue_name=queue_name("cpu"), max_retries=0)
def deliver_webhook_actor(delivery_id: str):
    from django.utils import timezone

    from generation.dispatch import deliveries_dispatch
    from generation.webhooks import webhook_deliver

    next_at = webhook_deliver(delivery_id)
    if next_at:
        deliveries_dispatch([delivery_id], countdown=max(0.0, (next_at - timezone.now()).total_seconds()))
