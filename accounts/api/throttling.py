"""Rate limits per API key, per organization, per user and per address, on the shared cache.

Fixed windows counted with the cache's atomic increment (atomic on Redis), so concurrent web
processes share one count; on Redis a request's counts go in one pipelined round trip. An exceeded limit answers 429 with Retry-After.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from accounts.audit import client_ip

_PERIODS = {"s": 1, "sec": 1, "min": 60, "m": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period]


def _hit(bucket: str, ident: str, rate: str) -> float:
    """Count one request; returns 0 when allowed, else seconds until the window ends."""
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    key = f"rate:{bucket}:{ident}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=period + 1)
        count = 1
    return 0 if count <= limit else (window + 1) * period - now


def _hits_redis(hits: list[tuple[str, str, str]]) -> float:
    """All of a request's counts in one round trip to Redis: INCR and a first-time EXPIRE per window."""
    now = time.time()
    windows = []
    client = cache._cache.get_client(write=True)
    pipe = client.pipeline(transaction=False)
    for bucket, ident, rate in hits:
        limit, period = parse_rate(rate)
        window = int(now // period)
        key = cache.make_and_validate_key(f"rate:{bucket}:{ident}:{window}")
        pipe.incr(key)
        pipe.expire(key, period + 1, nx=True)
        windows.append((limit, period, window))
    counts = pipe.execute()[::2]
    return max(0 if count <= limit else (window + 1) * period - now
               for count, (limit, period, window) in zip(counts, windows))


class PlatformRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        rates = settings.API_RATE_LIMITS
        buckets = []
        key = request.auth if getattr(request.auth, "prefix", None) else None
        organization = getattr(request, "organization", None)
        if key is not None:
            buckets.append(("api_key", str(key.pk)))
        elif request.user.is_authenticated:
            buckets.append(("user", str(request.user.pk)))
        else:
            buckets.append(("anonymous", client_ip(request) or "unknown"))
        if organization is not None:
            buckets.append(("organization", str(organization.pk)))
        if settings.REDIS_URL:
            self._wait = _hits_redis([(bucket, ident, rates[bucket]) for bucket, ident in buckets])
        else:
            self._wait = max(_hit(bucket, ident, rates[bucket]) for bucket, ident in buckets)
        return self._wait == 0

    def wait(self) -> float:
        return self._wait
