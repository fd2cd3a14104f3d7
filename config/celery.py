"""The Celery app. Broker: BROKER_URL (Redis or RabbitMQ), or in the embedded mode a folder under
VAR_DIR (kombu's filesystem transport), so a real worker process runs without any service.

    celery -A config worker -Q cpu,llm,rights,chain -P threads -c 2     # CPU worker
    celery -A config worker -Q gpu -P solo                                # GPU worker
"""
import os

from celery import Celery
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown, worker_shutting_down

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["generation"])

_sweeper = None


@worker_ready.connect
def start_sweeper(sender=None, **kwargs):
    global _sweeper
    from config.metrics import worker_metrics_serve
    from generation.worker import Sweeper

    _sweeper = Sweeper()
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
    from generation.worker import shutdown

    shutdown.begin()


@worker_shutdown.connect
def stop_sweeper(**kwargs):
    if _sweeper is not None:
        _sweeper.stopped.set()


@worker_process_shutdown.connect
def forget_process_metrics(pid=None, **kwargs):
    from config.metrics import process_exit

    process_exit(pid)
