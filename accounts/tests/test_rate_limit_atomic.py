"""The counters behind rate limits and sign-in locks count exactly under concurrency: N hits from
threads and from separate processes count N, on the file cache of the embedded mode and on Redis."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import caches

from accounts.api.throttling import rate_hits
from accounts.counters import counter_read, counters_incr

THREADS, HITS = 8, 40
ROOT = Path(settings.BASE_DIR)


def in_threads(action, threads=THREADS):
    start, errors = threading.Barrier(threads), []

    def run():
        try:
            start.wait()
            action()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors


def counts_exactly_from_threads():
    seen, lock = [], threading.Lock()

    def hit():
        for _ in range(HITS):
            (count, _left), = counters_incr([("test:threads", 60)])
            with lock:
                seen.append(count)

    in_threads(hit)
    # Every hit got a count of its own: none was lost, none read the same value twice.
    assert sorted(seen) == list(range(1, THREADS * HITS + 1))
    assert counter_read("test:threads")[0] == THREADS * HITS


def test_the_file_cache_counts_every_hit_from_threads():
    assert caches["default"].__class__.__name__ == "FileBasedCache" or settings.REDIS_URL
    counts_exactly_from_threads()


@pytest.mark.redis
def test_redis_counts_every_hit_from_threads():
    counts_exactly_from_threads()


def test_the_file_cache_counts_every_hit_from_separate_processes(tmp_path):
    """Four processes share one cache folder, as the embedded mode's web and worker processes do."""
    folder = tmp_path / "shared-cache"
    script = textwrap.dedent(f"""
        import django
        django.setup()
        from django.core.cache.backends.filebased import FileBasedCache
        from accounts.counters import counters_incr
        cache = FileBasedCache({str(folder)!r}, {{}})
        print(" ".join(str(counters_incr([("test:procs", 60)], use_cache=cache)[0][0]) for _ in range({HITS})))
    """)
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "REDIS_URL": "", "DATABASE_URL": "",
           "VAR_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}
    processes = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err for _out, err in outputs]
    counts = sorted(int(count) for out, _err in outputs for count in out.split())
    assert counts == list(range(1, 4 * HITS + 1))

    from django.core.cache.backends.filebased import FileBasedCache

    assert counter_read("test:procs", use_cache=FileBasedCache(str(folder), {}))[0] == 4 * HITS


def test_a_limit_of_n_lets_exactly_n_concurrent_requests_through(settings):
    allowed, lock = [], threading.Lock()

    def call():
        for _ in range(25):
            wait = rate_hits([("api_key", "k1", "100/day"), ("organization", "o1", "1000/day")])
            with lock:
                allowed.append(wait == 0)

    in_threads(call)
    assert len(allowed) == THREADS * 25 and sum(allowed) == 100
