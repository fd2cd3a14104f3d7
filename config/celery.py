"""The Celery app. Broker: BROKER_URL (Redis or RabbitMQ), or in the embedded mode a folder under
VAR_DIR (kombu's filesystem transport), so a real worker process runs without any service.

    celery -A config worker -Q cpu,llm,rights,chain -P threads -c 2     # CPU worker
    celery -A config worker -Q gpu -P solo                                # GPU worker
"""
import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["generation"])

_sweeper = None


@worker_ready.connect
def start_sweeper(**kwargs):
    global _sweeper
    from generation.worker import Sweeper

    _sweeper = Sweeper()
    _sweeper.start()


@worker_shutdown.connect
def stop_sweeper(**kwargs):
    if _sweeper is not None:
        _sweeper.stopped.set()
