"""Counters on the shared cache that stay exact under concurrency: API rate limits, password-reset
mails and failed sign-ins all count here.

Redis counts with INCR, atomic on the server, and sets a counter's expiry once (EXPIRE NX), a
request's counters in one pipelined round trip. The embedded mode's file cache has no atomic
increment (Django's `incr` there is a read then a write, so two processes each read 4 and both
write 5), so there every update runs under an exclusive `flock` on a file beside the cache, which
serialises the web and worker processes of the machine and the threads inside each.
"""
from __future__ import annotations

import fcntl
import math
import os
import threading
import time
from contextlib import contextmanager

from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache

LOCK_FILE = "counters.lock"
_process_lock = threading.Lock()  # local memory lives in one process: a thread lock is enough there


def _redis(use_cache) -> bool:
    return isinstance(use_cache, RedisCache)


@contextmanager
def _exclusive(use_cache):
    """Hold the machine-wide counter lock of a file cache (or the process lock of any other)."""
    if not isinstance(use_cache, FileBasedCache):
        with _process_lock:
            yield
        return
    os.makedirs(use_cache._dir, 0o700, exist_ok=True)
    # One open file per call: flock excludes other open files, in this process as in others.
    descriptor = os.open(os.path.join(use_cache._dir, LOCK_FILE), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def counters_incr(counters: list[tuple[str, int]], *, use_cache=None) -> list[tuple[int, float]]:
    """Add one to each (key, window seconds) counter; a counter's window starts at its first hit.
    Returns each counter's new count and the seconds left in its window."""
    use_cache = use_cache or caches["default"]  # the backend itself, not the proxy
    if _redis(use_cache):
        pipe = use_cache._cache.get_client(write=True).pipeline(transaction=False)
        for key, window_s in counters:
            full_key = use_cache.make_and_validate_key(key)
            pipe.incr(full_key)
            pipe.expire(full_key, window_s, nx=True)
            pipe.pttl(full_key)
        replies = pipe.execute()
        return [(int(replies[i]), max(0.0, replies[i + 2] / 1000)) for i in range(0, len(replies), 3)]
    results = []
    with _exclusive(use_cache):
        now = time.time()
        for key, window_s in counters:
            count, ends = use_cache.get(key) or (0, now + window_s)
            if ends <= now:  # the file cache hands back an entry up to its expiry second
                count, ends = 0, now + window_s
            count += 1
            use_cache.set(key, (count, ends), timeout=max(1, math.ceil(ends - now)))
            results.append((count, ends - now))
    return results


def counter_read(key: str, *, use_cache=None) -> tuple[int, float]:
    """A counter's count and the seconds left in its window; (0, 0) when it has none."""
    use_cache = use_cache or caches["default"]  # the backend itself, not the proxy
    if _redis(use_cache):
        full_key = use_cache.make_and_validate_key(key)
        count, pttl = use_cache._cache.get_client().pipeline(transaction=False).get(full_key).pttl(full_key).execute()
        return (int(count), max(0.0, pttl / 1000)) if count is not None else (0, 0.0)
    count, ends = use_cache.get(key) or (0, 0.0)
    left = ends - time.time()
    return (count, left) if left > 0 else (0, 0.0)


def counter_delete(key: str, *, use_cache=None) -> None:
    (use_cache or caches["default"]).delete(key)
