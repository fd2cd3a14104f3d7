"""The first middlewares of every request: its id (for the logs and the response), its metrics, and
the Content-Security-Policy of every response."""
from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlsplit

from django.conf import settings

from config.errors import NotFound
from config.logging import log_context
from config.metrics import HTTP_DURATION, HTTP_REQUESTS
from config.views import not_found

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


# --- Content-Security-Policy -----------------------------------------------------------------------
# The portal runs only its own static scripts and styles: no inline <script>, no on...= handlers, no
# style attributes (config/tests/test_content_security_policy.py walks the templates for them), no eval.
# Pictures and video may come from the S3 store (downloads redirect to signed links there), and
# websockets go to this same host.
CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "media-src": "'self' blob:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "object-src": "'none'",
}
# The API docs (drf-spectacular's Swagger UI, its script served as a file) keep the page's own <style>.
CSP_PATH_OVERRIDES = {"/api/v1/docs": {"style-src": "'self' 'unsafe-inline'"}}


def storage_media_origins() -> list[str]:
    """Where browsers fetch stored files from besides this host: the S3 store that signed links name."""
    if settings.STORAGE_BACKEND != "s3":
        return []
    endpoint = settings.S3_PUBLIC_ENDPOINT_URL or settings.STORAGES["default"].get("OPTIONS", {}).get("endpoint_url")
    if not endpoint:
        return ["https://*.amazonaws.com"]  # AWS itself: the bucket's virtual-hosted name
    parts = urlsplit(endpoint)
    return [f"{parts.scheme}://{parts.netloc}"]


def content_security_policy(*, path: str, host: str, media_origins: list[str]) -> str:
    directives = dict(CSP_DIRECTIVES)
    if media_origins:
        extra = " ".join(media_origins)
        directives["img-src"] += " " + extra
        directives["media-src"] += " " + extra
    if host:
        # 'self' covers ws: and wss: of this host in CSP 3; named too for browsers that predate it.
        directives["connect-src"] += f" ws://{host} wss://{host}"
    for prefix, overrides in CSP_PATH_OVERRIDES.items():
        if path.startswith(prefix):
            directives.update(overrides)
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.media_origins = storage_media_origins()

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            try:
                host = request.get_host()
            except Exception:  # DisallowedHost: the error page needs no websocket
                host = ""
            response["Content-Security-Policy"] = content_security_policy(
                path=request.path, host=host, media_origins=self.media_origins)
        return response


class NotFoundPageMiddleware:
    """A portal view whose `access_<thing>(actor, id)` found nothing (config.errors.NotFound, for a
    missing and a foreign object alike) answers the 404 page, as the API answers its JSON 404."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, NotFound):
            return not_found(request, exception)
        return None
