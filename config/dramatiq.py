"""Dramatiq's broker (QUEUE_ENGINE=dramatiq): RabbitMQ or Redis from BROKER_URL, with the middleware
every process needs. The actors are the generation app's (generation/queue/dramatiq_actors.py); a sender only
needs the broker (config.queues.task_send)."""
from __future__ import annotations

from functools import cache

from django.conf import settings
from dramatiq.middleware import Middleware


class ConnectionsMiddleware(Middleware):
    """Like a web request: drop broken or aged database connections around each message."""

    def before_process_message(self, broker, message):
        from django.db import close_old_connections

        close_old_connections()

    after_process_message = before_process_message


def broker_new():
    url = settings.BROKER_URL
    if url.startswith("amqp"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # Kombu's `amqp://host//` means the vhost "/"; pika spells it `%2F`.
        if url.endswith("//"):
            url = url[:-1] + "%2F"
        broker = RabbitmqBroker(url=url)
    elif url.startswith("redis"):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url)
    else:
        raise RuntimeError("QUEUE_ENGINE=dramatiq needs BROKER_URL pointing at RabbitMQ (amqp://) or Redis (redis://)")
    broker.add_middleware(ConnectionsMiddleware())
    return broker


@cache
def broker_get():
    """This process's broker, made once and set as Dramatiq's global broker."""
    import dramatiq

    broker = broker_new()
    dramatiq.set_broker(broker)
    return broker
