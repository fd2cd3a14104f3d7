"""The Celery app. Broker: BROKER_URL (Redis or RabbitMQ), or in the embedded mode a folder under
VAR_DIR (kombu's filesystem transport, writing each message whole: config/broker.py), so a real worker
process runs without any service.

    celery -A config worker -Q cpu,llm,rights,chain -P threads -c 2     # CPU worker
    celery -A config worker -Q gpu -P solo                                # GPU worker
"""
import os

from celery import Celery
from celery.signals import worker_process_shutdown

from config import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
broker.register()  # embedded:// (the embedded mode's broker), before the app makes a connection

app = Celery("platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks are the modules of settings.CELERY_IMPORTS (generation/queue/tasks.py: the tasks, and the
# worker process's sweeper and shutdown on Celery's signals), imported when a worker starts.


@worker_process_shutdown.connect
def forget_process_metrics(pid=None, **kwargs):
    from config.metrics import process_exit

    process_exit(pid)
