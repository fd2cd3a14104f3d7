"""GET /api/v1/health: the state of every part the platform needs.

Answers 200 when every required part is up and 503 otherwise. A part that is not configured in
this run mode is reported as such and is not required. Details stay generic: this is public.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from accounts.api.base import PublicAPIView
from accounts.api.permissions import PUBLIC
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


def check_chain() -> dict:
    if not settings.CHAIN_RPC_URL:
        from rights.chain import chain_status

        status = chain_status()
        if not status.get("ok"):
            raise RuntimeError("embedded chain unavailable")
        return {"status": "ok", "backend": "embedded", "chain_id": status.get("chain_id")}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(settings.CHAIN_RPC_URL, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_S) as response:
        chain_id = int(json.load(response)["result"], 16)
    return {"status": "ok", "chain_id": chain_id}


def checks() -> dict[str, tuple]:
    """Each part: (check, required). A configured production service is always required."""
    return {
        "database": (check_database, True),
        "cache": (check_cache, True),
        "broker": (check_broker, bool(settings.BROKER_URL)),
        "storage": (check_storage, True),
        "chain": (check_chain, bool(settings.CHAIN_RPC_URL)),
    }


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


class HealthView(PublicAPIView):
    required_scopes = {"GET": PUBLIC}
    throttle_classes: list = []

    @extend_schema(
        parameters=[OpenApiParameter(
            "require", str, description="Comma-separated parts whose state sets the status code (e.g. "
            "`database,cache` for a readiness probe, so an outage of the chain node or S3, which only delays "
            "work, does not take every web replica out of service); all parts are still reported.")],
        responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        healthy, parts = health_report()
        wanted = {name.strip() for name in request.query_params.get("require", "").split(",") if name.strip()}
        unknown = wanted - set(parts)
        if unknown:
            raise ValidationError({"require": [f"unknown part: {', '.join(sorted(unknown))}; "
                                               f"parts are {', '.join(parts)}"]})
        if wanted:
            healthy = all(parts[name]["status"] == "ok" for name in wanted)
        return Response(
            {"status": "ok" if healthy else "down", "deployment": settings.DEPLOYMENT, "checks": parts},
            status=200 if healthy else 503,
        )
