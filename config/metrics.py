"""Prometheus metrics (names listed in the README's Observability section): what each process records,
the gauges read from the database at scrape time, and the two exposition points, the web's
`/metrics` and the workers' WORKER_METRICS_PORT.

With PROMETHEUS_MULTIPROC_DIR set (uvicorn --workers N, celery prefork), prometheus_client keeps every
process's values in files there and a scrape adds them up; the directory must start empty.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

logger = logging.getLogger(__name__)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# A shorter METRICS_TOKEN (a placeholder such as the k8s Secret template's "change-me") refuses every
# scrape: /metrics is reachable through the public entry, so the token must not be guessable.
METRICS_TOKEN_MIN_LENGTH = 32

HTTP_REQUESTS = Counter("platform_http_requests", "HTTP requests served, by URL pattern (never the raw path).",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("platform_http_request_duration_seconds", "Time to answer an HTTP request.",
                          ["method", "route"])
STEP_DURATION = Histogram("platform_step_duration_seconds", "Wall time of one step run by a worker.",
                          ["stage", "provider", "outcome"],
                          buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
CHAIN_ERRORS = Counter("platform_chain_errors", "Chain RPC calls that failed, by error kind.", ["kind"])
WEBSOCKET_CONNECTIONS = Gauge("platform_websocket_connections", "Open websocket connections.",
                              multiprocess_mode="livesum")


class DatabaseCollector:
    """Gauges read from the database at each scrape, across all tenants: each app registers its readers
    (`database_gauges_register`, from its AppConfig.ready), and they run together in one transaction.
    When the database fails they are all left out of that scrape (and logged), so the process's own
    metrics, the 5xx counts of the outage among them, are still scraped."""

    def __init__(self):
        self.readers: list[tuple[Callable[[], Iterable], tuple]] = []

    def describe(self):
        # Registration must not query the database (it would, through collect()).
        return [family for _read, families in self.readers for family in families]

    def collect(self):
        from django.db import DatabaseError, transaction

        from config.tenancy import dangerously_unscoped

        try:
            # One transaction: the readings are of the same moment, and a failure is rolled back
            # (to a savepoint inside an outer transaction) instead of breaking the connection's next use.
            with dangerously_unscoped(), transaction.atomic():  # operators' totals over every organization
                families = [family for read, _described in self.readers for family in read()]
        except DatabaseError as exc:
            logger.warning("metrics: database gauges left out of this scrape (%s: %s)", type(exc).__name__, exc)
            return
        yield from families


_database_collector = DatabaseCollector()


def database_gauges_register(read: Callable[[], Iterable], *, describe: Iterable) -> None:
    """Add an app's database gauges: `read()` returns their metric families, read with aggregate queries
    over every organization; `describe` names them (empty families of the same names and types) without
    touching the database. Registering the same reader again does nothing."""
    if all(existing is not read for existing, _families in _database_collector.readers):
        _database_collector.readers.append((read, tuple(describe)))
        _database_registry.unregister(_database_collector)
        _database_registry.register(_database_collector)


_database_registry = CollectorRegistry(auto_describe=True)
_database_registry.register(_database_collector)
_multiprocess_registry = None


def process_registry():
    """What this process (or, in multiprocess mode, every process sharing the directory) recorded."""
    global _multiprocess_registry
    if not MULTIPROCESS:
        return REGISTRY
    if _multiprocess_registry is None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        _multiprocess_registry = registry
    return _multiprocess_registry


def exposition(*, database: bool) -> bytes:
    """The text format; the database gauges only once per scrape, on the web tier's endpoint."""
    body = generate_latest(process_registry())
    if database:
        body += generate_latest(_database_registry)
    return body


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may read the metrics; else the 401 or 403 to answer."""
    token = settings.METRICS_TOKEN
    if token and len(token) < METRICS_TOKEN_MIN_LENGTH:
        logger.warning("metrics refused: METRICS_TOKEN is shorter than %s characters", METRICS_TOKEN_MIN_LENGTH)
        return HttpResponse(f"METRICS_TOKEN is shorter than {METRICS_TOKEN_MIN_LENGTH} characters: set a random "
                            "one (e.g. openssl rand -hex 32)\n", status=503, content_type="text/plain")
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            response = HttpResponse("metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401,
                                    content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return HttpResponse("wrong metrics token\n", status=403, content_type="text/plain")
        return None
    # No token: only direct requests from loopback or private addresses (Prometheus scraping the pod).
    # Anything that came through a proxy carries X-Forwarded-For and may come from anywhere.
    if request.META.get("HTTP_X_FORWARDED_FOR") or request.META.get("HTTP_FORWARDED"):
        return HttpResponse("metrics through a proxy need METRICS_TOKEN\n", status=403, content_type="text/plain")
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        address = None
    if address is None or not (address.is_loopback or address.is_private):
        return HttpResponse("metrics are served to private addresses only, unless METRICS_TOKEN is set\n",
                            status=403, content_type="text/plain")
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(exposition(database=True), content_type=CONTENT_TYPE_LATEST)


_server_lock = threading.Lock()
_server_started = False


def worker_metrics_serve() -> bool:
    """Serve this worker's metrics on WORKER_METRICS_PORT (when set), once per process. A port another
    process of the same worker already serves is left to it (multiprocess mode shows every process)."""
    global _server_started
    port = settings.WORKER_METRICS_PORT
    if not port:
        return False
    with _server_lock:
        if _server_started:
            return True
        try:
            start_http_server(port, addr=settings.WORKER_METRICS_ADDR, registry=process_registry())
        except OSError as exc:
            logger.warning("worker metrics: port %s:%s not served by this process (%s)",
                           settings.WORKER_METRICS_ADDR, port, exc)
            return False
        _server_started = True
        logger.info("worker metrics on http://%s:%s/metrics", settings.WORKER_METRICS_ADDR, port)
        return True


def process_exit(pid: int | None = None) -> None:
    """Multiprocess mode: drop a finished process's live gauges (the websocket count)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid or os.getpid())


if MULTIPROCESS:
    import atexit

    atexit.register(process_exit)
