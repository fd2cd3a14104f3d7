"""The client's address, for login locks, rate limits and the audit log: `X-Forwarded-For` counts
only through the number of reverse proxies the deployment declares (TRUSTED_PROXY_COUNT, 0 by
default), so a client cannot pick its own address, and with it a fresh lock or rate-limit bucket.

uvicorn has a rule of its own (`--proxy-headers`, on by default): it trusts the header from
FORWARDED_ALLOW_IPS, 127.0.0.1 unless set, and rewrites the ASGI client from it, before the platform
sees the request. Every way the platform starts uvicorn passes UVICORN_ARGS to switch that off; the
ASGI application then applies TRUSTED_PROXY_COUNT itself (TrustedProxyMiddleware), for HTTP and
websockets alike.
"""
from __future__ import annotations

import logging

UVICORN_ARGS = ("--no-proxy-headers",)

logger = logging.getLogger(__name__)


def forwarded_client(*, remote: str | None, forwarded: str, proxies: int) -> str | None:
    """The address `proxies` hops back: each trusted proxy appends the address it received from, so
    the client is the proxies-th entry from the right; anything left of it the client wrote itself."""
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return remote or None


class TrustedProxyMiddleware:
    """Sets the ASGI scope's client (Django's REMOTE_ADDR, a websocket consumer's scope["client"])
    from X-Forwarded-For by TRUSTED_PROXY_COUNT."""

    def __init__(self, app):
        self.app = app
        self._warned = False

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            from django.conf import settings

            forwarded = ",".join(value.decode("latin1") for name, value in scope.get("headers", ())
                                 if name == b"x-forwarded-for")
            client = scope.get("client")
            proxies = settings.TRUSTED_PROXY_COUNT
            if proxies:
                address = forwarded_client(remote=client[0] if client else None, forwarded=forwarded,
                                           proxies=proxies)
                if address and (not client or address != client[0]):
                    scope = {**scope, "client": (address, 0)}
            elif forwarded and client and client[1] == 0 and not self._warned:
                # Port 0 is no TCP peer: the server already replaced the client from the header.
                self._warned = True
                logger.error("the ASGI server rewrites client addresses from X-Forwarded-For; start uvicorn "
                             "with %s so that TRUSTED_PROXY_COUNT decides", " ".join(UVICORN_ARGS))
        return await self.app(scope, receive, send)
