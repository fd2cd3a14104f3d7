"""The state of every part the platform needs, for GET /api/v1/health (accounts/api/health.py).

The kernel checks the database, the cache, the broker and the storage; an app adds its own parts with
`health_check_register` from its AppConfig.ready (rights: the chain). A part that is not configured in
this run mode is reported as such and is not required. Details stay generic: the endpoint is public.
"""
from __future__ import annotations

import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from collections.abc import Callable

from config.storage import storage_backend_name

CHECK_TIMEOUT_S = 2.0


def check_database() -> dict:
    pool = getattr(connection, "pool", None)
    if pool is not None:
        # A connection of the pool, waited for no longer than the other checks: through Django the wait
        # is DATABASE_POOL_TIMEOUT_S, so during a short outage health answered late and "ok".
        pool.open()  # Django opens it lazily, on a first query; a no-op once open
        with pool.connection(timeout=CHECK_TIMEOUT_S) as raw:
            raw.execute("SELECT 1")
        return {"status": "ok", "backend": connection.vendor}
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": "ok", "backend": connection.vendor}


def check_cache() -> dict:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was stored")
    cache.delete(key)
    return {"status": "ok", "backend": "redis" if settings.REDIS_URL else "file"}


def check_broker() -> dict:
    if not settings.BROKER_URL:
        return {"status": "ok", "backend": "embedded"}
    from kombu import Connection

    with Connection(settings.BROKER_URL, connect_timeout=CHECK_TIMEOUT_S) as broker:
        broker.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)
        transport = broker.transport_cls
    return {"status": "ok", "backend": transport}


def check_storage() -> dict:
    name = default_storage.save(f"health/{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    default_storage.delete(name)
    return {"status": "ok", "backend": storage_backend_name()}


_registered: dict[str, tuple[Callable[[], dict], Callable[[], bool]]] = {}


def health_check_register(name: str, check: Callable[[], dict], *, required: Callable[[], bool]) -> None:
    """Add a part to the report: `check()` returns its reading ({"status": "ok", ...}) or raises; `required()`
    says, at each check, whether the part being down makes the platform unhealthy."""
    _registered[name] = (check, required)


def checks() -> dict[str, tuple]:
    """Each part: (check, required). A configured production service is always required."""
    parts = {
        "database": (check_database, True),
        "cache": (check_cache, True),
        "broker": (check_broker, bool(settings.BROKER_URL)),
        "storage": (check_storage, True),
    }
    parts.update({name: (check, required()) for name, (check, required) in _registered.items()})
    return parts


_last_report: tuple[float, bool, dict] | None = None
_report_lock = threading.Lock()


def health_report() -> tuple[bool, dict]:
    """The parts' state, checked at most once per HEALTH_CACHE_S in this process: the endpoint is public and
    each check writes to storage and calls the broker and the chain, so a flood of requests must not become a
    flood of checks."""
    global _last_report
    ttl = settings.HEALTH_CACHE_S
    if ttl <= 0:
        return _check_parts()
    with _report_lock:
        now = time.monotonic()
        if _last_report is None or now - _last_report[0] >= ttl:
            _last_report = (now, *_check_parts())
        return _last_report[1], _last_report[2]


def _check_parts() -> tuple[bool, dict]:
    healthy, parts = True, {}
    for name, (check, required) in checks().items():
        started = time.perf_counter()
        try:
            result = check()
        except Exception as exc:  # any failure of a part is a reading, not a crash
            result = {"status": "down", "error": type(exc).__name__}
            healthy = healthy and not required
        result["required"] = required
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        parts[name] = result
    return healthy, parts
