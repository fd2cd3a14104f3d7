"""Rate limits per API key, per organization, per user and per address, on the shared cache.

Fixed windows counted exactly by accounts/counters.py (Redis INCR, or the file cache under a lock),
so concurrent web processes share one count. An exceeded limit answers 429 with Retry-After.
"""
from __future__ import annotations

import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from accounts.audit import client_ip
from accounts.counters import counters_incr

_PERIODS = {"s": 1, "sec": 1, "min": 60, "m": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period]


def rate_hits(hits: list[tuple[str, str, str]]) -> float:
    """Count one request in each (bucket, ident, rate) window, in one round trip on Redis and under
    one lock on the file cache (accounts/counters.py); 0 when all allow it, else the seconds until
    the latest exceeded window ends."""
    now = time.time()
    windows, counters = [], []
    for bucket, ident, rate in hits:
        limit, period = parse_rate(rate)
        window = int(now // period)
        counters.append((f"rate:{bucket}:{ident}:{window}", period + 1))
        windows.append((limit, period, window))
    counts = [count for count, _left in counters_incr(counters)]
    return max(0 if count <= limit else (window + 1) * period - now
               for count, (limit, period, window) in zip(counts, windows))


def rate_hit(bucket: str, ident: str, rate: str) -> float:
    return rate_hits([(bucket, ident, rate)])


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
        self._wait = rate_hits([(bucket, ident, rates[bucket]) for bucket, ident in buckets])
        return self._wait == 0

    def wait(self) -> float:
        return self._wait
