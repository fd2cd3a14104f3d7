"""The first middleware of every request: its id (for the logs and the response) and its metrics."""
from __future__ import annotations

import re
import time
import uuid

from config.logging import log_context
from config.metrics import HTTP_DURATION, HTTP_REQUESTS

# An incoming X-Request-ID (from the proxy or the client) is kept when it is short and plain.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def request_id_of(request) -> str:
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    return incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_of(request)
        with log_context(request_id=request.request_id):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        return response


def route_of(request) -> str:
    """The URL pattern that served the request (`api/v1/jobs/<uuid:job_id>`), never the raw path,
    so that the label's values stay few."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_ROUTE
    return match.route or match.view_name or UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Counts and times every request but the scrapes of /metrics itself."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is None or match.url_name != "metrics":
            route = route_of(request)
            method = request.method if request.method in KNOWN_METHODS else "other"
            HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        return response
