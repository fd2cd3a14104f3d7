# The Celery app is loaded with Django, so `shared_task`s publish through its configured broker.
from config.celery import app as celery_app

__all__ = ("celery_app",)
