"""The queue port: the queues' names, defined once, and `task_send`, which sends a task by its name
through the configured engine (QUEUE_ENGINE), so a sender never imports the engines' modules.

Messages carry only ids. `celery` (default; in the embedded mode its broker is a folder under VAR_DIR)
and `dramatiq` deliver to the same worker code; `manual` sends nothing (tests drive the steps). A task
`name` is Celery's task name; in Dramatiq it is served by one actor per queue, `name.queue`
(`dramatiq_actor_name`), on the queue `dq-queue` (Dramatiq declares queues with other arguments than
Celery, so the two engines must not share queue names on one broker).
"""
from __future__ import annotations

from django.conf import settings

QUEUES = ("cpu", "gpu", "llm", "rights", "chain")
DRAMATIQ_QUEUE_PREFIX = "dq-"


def dramatiq_queue(queue: str) -> str:
    return f"{DRAMATIQ_QUEUE_PREFIX}{queue}"


def dramatiq_actor_name(name: str, queue: str) -> str:
    return f"{name}.{queue}"


def task_send(name: str, args: list, *, queue: str, countdown: float = 0, priority: int | None = None) -> None:
    """Send task `name` with `args` to `queue`, to run after `countdown` seconds."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    engine = settings.QUEUE_ENGINE
    if engine == "manual":
        return
    if engine == "celery":
        from config.celery import app

        if app.conf.task_always_eager:
            # Celery's eager mode (tests) runs a task where it is sent, which send_task never does.
            app.tasks[name].apply_async(args=list(args), queue=queue, priority=priority, countdown=countdown or None)
        else:
            app.send_task(name, args=list(args), queue=queue, priority=priority, countdown=countdown or None)
        return
    import dramatiq

    from config.dramatiq import broker_get

    message = dramatiq.Message(queue_name=dramatiq_queue(queue), actor_name=dramatiq_actor_name(name, queue),
                               args=tuple(args), kwargs={}, options={})
    broker_get().enqueue(message, delay=int(countdown * 1000) or None)
