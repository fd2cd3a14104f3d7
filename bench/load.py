"""HTTP and websocket load on the real ASGI server (uvicorn, 2 workers) on PostgreSQL and Redis.

    apt-get install -y wrk          # the HTTP load generator (C; Debian package `wrk`)
    .venv/bin/python bench/load.py [--duration 10] [--clients 50,200,500] [--ws-clients 1000]

What it sets up (and removes at the end):
  * a fresh PostgreSQL database `platform_bench` owned by the ordinary role `platform` (created with the
    admin connection `--admin-database-url`, superuser `postgres` by default), migrated;
  * Redis database 9 for the cache, rate limits and channel layer, database 10 as the Celery broker
    (refused if either holds keys: point --redis-url/--broker-url at unused databases);
  * two organizations (the measured one and a second whose rows the tenant filter must skip), an org
    budget raised so job creation is never refused, `--keys` API keys, `--jobs` jobs made by `job_create`
    (steps, audit, events, dispatch), and registered contents (Content + queued Registration) for verify.
The server: `uvicorn config.asgi:application --workers 2 --no-server-header --no-access-log --no-proxy-headers` with
DEPLOYMENT=production (DEBUG off, collected static files, PostgreSQL, Redis cache and channel layer),
QUEUE_ENGINE=celery with a Redis broker and no worker, so created jobs' steps wait in the broker. Requests
carry `X-Forwarded-Proto: https`, as behind the TLS proxy of production (SECURE_SSL_REDIRECT is on).
The rate limits are raised for the server (API_RATE_PER_KEY/ORG/VERIFY=10000000/min): the limiter still
runs and counts in Redis on every request, but what is measured is the endpoint, not a 429.

HTTP: wrk (2 threads, closed loop: each connection sends its next request when the answer arrives) for
each endpoint and concurrency, `--duration` seconds after a short warm-up: p50/p95/p99, requests/s and
errors (socket errors, timeouts after 30 s, and non-2xx/3xx answers). Endpoints: GET /api/v1/jobs (first
page of 50), GET /api/v1/jobs/<id> (random of the seeded jobs), POST /api/v1/jobs (unique Idempotency-Key
each), POST /api/v1/verify {"sha256"} (random registered hash, anonymous). Baseline in the same run: a
static file served by WhiteNoise through the same server (its floor), with the ratios. `--think-ms` adds
a pause between a connection's requests (wrk's delay()): clients that read and think, not a flood.
Queries per request are counted in-process (Django test client, CaptureQueriesContext) with `--start-jobs`
jobs and again at the end with every job made, and must not grow with the jobs for reads.

Websockets: `--ws-clients` connections to /ws/jobs/<id> (session cookies; `--ws-clients-per-job` per
job) from a separate process (bench/ws_load.py), then `--ws-events` rounds of one event per subscribed
job through `generation.events.job_event` (the pipeline's path: JobEvent row, on commit a group_send on
the Redis channel layer, the consumer reads the rows): expected vs received, connect and delivery times.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RAISED_RATE = "10000000/min"
ENDPOINTS = ("list", "detail", "create", "verify")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://platform@127.0.0.1:5432/platform_bench",
                        help="the database to create, use and drop (its name and owner role)")
    parser.add_argument("--admin-database-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="a superuser connection that creates the role and database")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="cache and channel layer (unused db)")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/10", help="Celery broker (unused db)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per endpoint and concurrency")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each measurement")
    parser.add_argument("--clients", default="50,200,500", help="concurrent HTTP connections, comma-separated")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS), help=f"of {', '.join(ENDPOINTS)}")
    parser.add_argument("--think-ms", type=int, default=0, help="pause between a connection's requests (0: none)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs seeded before the load")
    parser.add_argument("--start-jobs", type=int, default=10, help="jobs when the first query counts are taken")
    parser.add_argument("--keys", type=int, default=8, help="API keys the requests rotate through")
    parser.add_argument("--contents", type=int, default=200, help="registered contents for verify-by-hash")
    parser.add_argument("--ws-clients", type=int, default=1000, help="websocket clients (0: skip)")
    parser.add_argument("--ws-clients-per-job", type=int, default=5)
    parser.add_argument("--ws-events", type=int, default=5, help="events published per subscribed job")
    parser.add_argument("--ws-interval", type=float, default=1.0, help="seconds between event rounds")
    parser.add_argument("--settings", default="config.settings",
                        help="settings module of the server and this script (to measure a proposed change; "
                             "put its folder on PYTHONPATH)")
    parser.add_argument("--asgi", default="config.asgi:application", help="the ASGI application uvicorn serves")
    parser.add_argument("--keep-database", action="store_true", help="leave the database and Redis data")
    return parser.parse_args()


def _environment(args) -> dict:
    """The production settings the server and this process share."""
    var = Path(tempfile.mkdtemp(prefix="bench-load-"))
    return {
        "DEPLOYMENT": "production", "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver", "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url, "BROKER_URL": args.broker_url, "QUEUE_ENGINE": "celery",
        "VAR_DIR": str(var), "STATIC_ROOT": str(var / "static"), "MEDIA_ROOT": str(var / "media"),
        "API_RATE_PER_KEY": RAISED_RATE, "API_RATE_PER_ORG": RAISED_RATE, "API_RATE_PER_USER": RAISED_RATE,
        "API_RATE_ANON": RAISED_RATE, "API_RATE_VERIFY": RAISED_RATE, "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": args.settings,
    }


def raise_fd_limit() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def database_create(args) -> None:
    """A fresh database owned by the ordinary role of DATABASE_URL (created if missing: not a superuser,
    so row level security applies to it as in production)."""
    import psycopg
    from psycopg import sql

    target = urlsplit(args.database_url)
    name, role = target.path.lstrip("/"), target.username
    with psycopg.connect(args.admin_database_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is None:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            print(f"created the login role {role!r} (no superuser, no BYPASSRLS)")
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))


def database_drop(args) -> None:
    import psycopg
    from psycopg import sql

    name = urlsplit(args.database_url).path.lstrip("/")
    with psycopg.connect(args.admin_database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def redis_check_unused(*urls: str) -> None:
    import redis

    for url in urls:
        keys = redis.Redis.from_url(url).dbsize()
        if keys:
            sys.exit(f"{url} holds {keys} keys: point the bench at an unused Redis database")


def redis_flush(*urls: str) -> None:
    import redis

    for url in urls:
        redis.Redis.from_url(url).flushdb()


ARGS = _arguments()
ENV = _environment(ARGS)
os.environ.update(ENV)
if not shutil.which("wrk"):
    sys.exit("wrk is not installed: apt-get install -y wrk")
redis_check_unused(ARGS.redis_url, ARGS.broker_url)
database_create(ARGS)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402


# --- data -------------------------------------------------------------------------------------


class Seed:
    """What the load needs: ids, keys, hashes."""

    def __init__(self):
        self.organization = None
        self.owner = None
        self.actor = None
        self.projects: list = []
        self.jobs: list = []
        self.keys: list[str] = []
        self.hashes: list[str] = []


def seed_organizations(seed: Seed) -> None:
    from decimal import Decimal

    from accounts import services
    from accounts.audit import Actor
    from accounts.roles import SCOPES
    from config.tenancy import tenant_scope
    from generation.models import GenerationPolicy
    from projects.services import project_create

    for slug in ("other", "bench"):  # the other studio's rows come first: the tenant filter must skip them
        owner = services.user_create(email=f"owner@{slug}.bench.test", password=None)
        organization = services.organization_create(name=f"{slug.title()} studio", slug=f"{slug}-studio", owner=owner)
        actor = Actor(user=owner, scopes=frozenset(SCOPES))
        with tenant_scope(organization):
            GenerationPolicy.objects.update_or_create(organization=organization,
                                                      defaults={"monthly_budget": Decimal("99999999")})
            projects = [project_create(organization=organization, name=f"Project {n}", actor=actor) for n in range(5)]
            keys = [services.api_key_create(organization=organization, name=f"bench {n}", scopes=list(SCOPES),
                                            actor=actor)[1] for n in range(ARGS.keys if slug == "bench" else 1)]
        seed.organization, seed.owner, seed.actor, seed.projects, seed.keys = organization, owner, actor, projects, keys
        if slug == "other":
            seed_jobs(seed, 50)
            seed_contents(seed, 50, prefix="o")
            seed.jobs, seed.hashes = [], []


def seed_jobs(seed: Seed, total: int) -> None:
    from config.tenancy import tenant_scope
    from generation.services import job_create

    with tenant_scope(seed.organization):
        while len(seed.jobs) < total:
            n = len(seed.jobs)
            job, _created = job_create(organization=seed.organization, actor=seed.actor,
                                       project_id=seed.projects[n % len(seed.projects)].pk,
                                       topic=f"A short film about lighthouse keeper number {n}")
            seed.jobs.append(job)


def seed_contents(seed: Seed, total: int, prefix: str = "b") -> None:
    import hashlib

    from config.tenancy import tenant_scope
    from rights.models import Content
    from rights.registry import registration_enqueue

    with tenant_scope(seed.organization):
        for n in range(total):
            digest = hashlib.sha256(f"{prefix}-{n}".encode()).hexdigest()
            content = Content.objects.create(organization=seed.organization, content_id=f"{prefix}{n:010d}",
                                             kind="video", source="upload", sha256=digest, original_sha256=digest,
                                             mime_type="video/mp4", width=1280, height=720, duration_s=12)
            registration_enqueue(content=content)
            seed.hashes.append(digest)


# --- queries per request ------------------------------------------------------------------------


def requests_of(seed: Seed) -> dict:
    """Per endpoint: (method, path, body or None, authenticated)."""
    job = seed.jobs[len(seed.jobs) // 2]
    return {
        "list": ("GET", "/api/v1/jobs", None, True),
        "detail": ("GET", f"/api/v1/jobs/{job.pk}", None, True),
        "create": ("POST", "/api/v1/jobs", {"project": str(seed.projects[0].pk),
                                            "topic": "A short film about a lighthouse keeper"}, True),
        "verify": ("POST", "/api/v1/verify", {"sha256": seed.hashes[len(seed.hashes) // 2]}, False),
    }


def query_counts(seed: Seed, timed: int = 20) -> tuple[dict, dict]:
    """Per endpoint: the queries of one request, after a first request (which may record the key's last
    use), and the median time of `timed` requests one after another (in-process: no HTTP, no contention
    with itself; the service time that bounds what one core can answer)."""
    counts, service_ms = {}, {}
    for name, (method, path, body, authenticated) in requests_of(seed).items():
        headers = {"HTTP_X_FORWARDED_PROTO": "https"}
        if authenticated:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {seed.keys[0]}"
        client = Client(**headers)

        def call():
            extra = {"HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex} if name == "create" else {}
            if method == "GET":
                return client.get(path, **extra)
            return client.post(path, data=json.dumps(body), content_type="application/json", **extra)

        response = call()
        if response.status_code >= 300:
            sys.exit(f"{method} {path} answered {response.status_code}: {response.content[:300]!r}")
        with CaptureQueriesContext(connection) as queries:
            call()
        counts[name] = len(queries)
        times = []
        for _ in range(timed):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        service_ms[name] = statistics.median(times)
    return counts, service_ms


# --- the server -----------------------------------------------------------------------------------


def collect_static() -> str:
    call_command("collectstatic", interactive=False, verbosity=0)
    return "/static/css/portal.css"


def server_start() -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", ARGS.asgi, "--host", "127.0.0.1",
               "--port", str(ARGS.port), "--workers", str(ARGS.workers), "--no-server-header", "--no-access-log", "--no-proxy-headers",
               "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ARGS.port}/api/v1/health", timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.terminate()
    sys.exit("the server did not answer /api/v1/health within 90 s")


def server_workers(server: subprocess.Popen) -> list[int]:
    try:
        output = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.pid)], capture_output=True, text=True)
        return [int(pid) for pid in output.stdout.split()]
    except (OSError, ValueError):
        return []


def server_drain(workers: list[int], limit_s: float = 120.0) -> float:
    """Wait until the server has finished the requests a run left behind (a closed connection does not
    stop a sync view already running): its workers below a tenth of a core over half a second."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        before = cpu_seconds(workers)
        time.sleep(0.5)
        if cpu_seconds(workers) - before < 0.05:
            break
    return time.perf_counter() - started


def fd_limit_of(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
    except OSError:
        pass
    return "?"


# --- wrk ---------------------------------------------------------------------------------------

LUA = r"""
local method = "$METHOD"
local paths = {$PATHS}
local bodies = {$BODIES}
local keys = {$KEYS}
local think_ms = $THINK
local run = "$RUN"
local threads = {}
local next_tid = 1

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  statuses = {}
  math.randomseed(tid * 7919 + os.time())
end

function request()
  counter = counter + 1
  local headers = {["X-Forwarded-Proto"] = "https"}
  if #keys > 0 then headers["Authorization"] = "Bearer " .. keys[(counter % #keys) + 1] end
  local body = nil
  if #bodies > 0 then
    headers["Content-Type"] = "application/json"
    body = bodies[math.random(#bodies)]
  end
  if method == "POST" and #keys > 0 then headers["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter end
  return wrk.format(method, paths[math.random(#paths)], headers, body)
end

function response(status, headers, body)
  if status >= 400 then
    local code = tostring(status)
    statuses[code] = (statuses[code] or 0) + 1
  end
end

if think_ms > 0 then
  function delay()
    return math.random(math.floor(think_ms / 2), think_ms + math.floor(think_ms / 2))
  end
end

function done(summary, latency, requests)
  local codes = {}
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do codes[#codes + 1] = code .. ":" .. count end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p95_us": %.0f, "p99_us": %.0f, ' ..
    '"max_us": %.0f, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "codes": "%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout, table.concat(codes, ",")))
end
"""


def lua_strings(values: list[str]) -> str:
    return ", ".join(json.dumps(value) for value in values)  # JSON string escapes are valid Lua here


def wrk_script(endpoint: str, seed: Seed, static_path: str, work: Path) -> Path:
    if endpoint == "floor":
        method, paths, bodies, keys = "GET", [static_path], [], []
    elif endpoint == "list":
        method, paths, bodies, keys = "GET", ["/api/v1/jobs"], [], seed.keys
    elif endpoint == "detail":
        method, paths, bodies, keys = "GET", [f"/api/v1/jobs/{job.pk}" for job in seed.jobs], [], seed.keys
    elif endpoint == "create":
        method, paths, keys = "POST", ["/api/v1/jobs"], seed.keys
        bodies = [json.dumps({"project": str(project.pk), "topic": f"A short film about a lighthouse, take {n}"})
                  for n, project in enumerate(seed.projects * 4)]
    else:
        method, paths, keys = "POST", ["/api/v1/verify"], []
        bodies = [json.dumps({"sha256": digest}) for digest in seed.hashes]
    text = (LUA.replace("$METHOD", method).replace("$PATHS", lua_strings(paths))
            .replace("$BODIES", lua_strings(bodies)).replace("$KEYS", lua_strings(keys))
            .replace("$THINK", str(ARGS.think_ms)).replace("$RUN", uuid.uuid4().hex[:12]))
    path = work / f"{endpoint}-{uuid.uuid4().hex[:8]}.lua"
    path.write_text(text)
    return path


def wrk(endpoint: str, clients: int, seconds: int, seed: Seed, static_path: str, work: Path) -> dict:
    script = wrk_script(endpoint, seed, static_path, work)
    command = ["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{seconds}s", "--timeout", "30s",
               "-s", str(script), f"http://127.0.0.1:{ARGS.port}"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    line = next((line for line in output.stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if line is None:
        sys.exit(f"wrk printed no result for {endpoint} at {clients}: {output.stdout[-500:]} {output.stderr[-500:]}")
    result = json.loads(line.removeprefix("WRKJSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[name] for name in ("connect", "read", "write", "status", "timeout"))
    return result


# --- websockets -----------------------------------------------------------------------------------


def session_cookies(users: list, count: int) -> list[str]:
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore

    cookies = []
    for n in range(count):
        user = users[n % len(users)]
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.save()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return cookies


def websocket_members(seed: Seed, count: int) -> list:
    from accounts import services
    from accounts.models import Membership
    from accounts.roles import Role
    from config.tenancy import tenant_scope

    users = [seed.owner]
    with tenant_scope(seed.organization):
        for n in range(count - 1):
            user = services.user_create(email=f"viewer{n}@bench.bench.test", password=None)
            Membership.objects.create(organization=seed.organization, user=user, role=Role.VIEWER)
            users.append(user)
    return users


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def database_statements() -> int:
    """Transactions committed in the bench database so far (each autocommit query is one)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def websocket_idle(workers: list[int], seconds: float = 10.0) -> dict:
    """What the open connections cost while nothing happens: server CPU and database transactions."""
    cpu, commits, started = cpu_seconds(workers), database_statements(), time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    return {"cpu_percent": (cpu_seconds(workers) - cpu) / elapsed * 100,
            "commits_per_s": (database_statements() - commits) / elapsed, "seconds": elapsed}


def websocket_run(seed: Seed, workers: list[int]) -> dict:
    from config.tenancy import tenant_scope
    from generation.events import job_event

    per_job = max(1, ARGS.ws_clients_per_job)
    jobs = seed.jobs[: min(len(seed.jobs), -(-ARGS.ws_clients // per_job))]
    assignments = [jobs[n % len(jobs)] for n in range(ARGS.ws_clients)]
    users = websocket_members(seed, 20)
    cookies = session_cookies(users, len(assignments))
    config = {"base": f"ws://127.0.0.1:{ARGS.port}", "origin": f"http://127.0.0.1:{ARGS.port}",
              "clients": [[str(job.pk), cookie] for job, cookie in zip(assignments, cookies)],
              "events_per_job": ARGS.ws_events, "connect_parallel": 100, "drain_s": 30}
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "ws_load.py")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    process.stdin.write(json.dumps(config) + "\n")
    process.stdin.flush()
    ready = json.loads(process.stdout.readline())
    idle = websocket_idle(workers)
    published, publish_ms = 0, []
    started = time.perf_counter()
    with tenant_scope(seed.organization):
        for seq in range(ARGS.ws_events):
            round_started = time.perf_counter()
            for job in jobs:
                begun = time.perf_counter()
                with transaction.atomic():
                    job_event(job, "progress", {"progress": round(seq / ARGS.ws_events, 3), "message": "bench",
                                                "bench_seq": seq, "sent": time.time()})
                publish_ms.append((time.perf_counter() - begun) * 1000)
                published += 1
            time.sleep(max(0.0, ARGS.ws_interval - (time.perf_counter() - round_started)))
    publish_s = time.perf_counter() - started
    out, _ = process.communicate("published\n", timeout=config["drain_s"] + 120)
    done = json.loads(out.strip().splitlines()[-1])["done"]
    done.update(ready=ready, idle=idle, published=published, publish_s=publish_s, publish_ms=publish_ms, jobs=len(jobs))
    return done


# --- report -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU")
    memory = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    import redis

    redis_version = redis.Redis.from_url(ARGS.redis_url).info("server")["redis_version"]
    return (f"{os.cpu_count()} cores ({cpu}), {memory / 1024 / 1024:.0f} GiB RAM, Python "
            f"{platform.python_version()}, PostgreSQL {postgres.split()[0]}, Redis {redis_version}; "
            f"server, wrk and this script share the {os.cpu_count()} cores")


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    fd_limit = raise_fd_limit()
    work = Path(os.environ["VAR_DIR"]) / "wrk"
    work.mkdir()
    began = time.perf_counter()
    server = None
    try:
        call_command("migrate", verbosity=0)
        static_path = collect_static()
        seed = Seed()
        seed_organizations(seed)
        seed_jobs(seed, ARGS.start_jobs)
        seed_contents(seed, ARGS.contents)
        counts_start, service_start = query_counts(seed)
        seed_jobs(seed, ARGS.jobs)
        print(f"machine: {machine()}")
        print(f"load average before: {load()}; setup took {time.perf_counter() - began:.0f} s")
        server = server_start()
        workers = server_workers(server)
        print(f"server: uvicorn --workers {ARGS.workers} (pids {', '.join(map(str, workers))}), "
              f"DEPLOYMENT=production, DEBUG off, PostgreSQL, Redis cache and channel layer, QUEUE_ENGINE=celery on "
              f"a Redis broker with no worker (created jobs' steps queue there); rate limits raised to {RAISED_RATE} "
              f"(API_RATE_PER_KEY/ORG/USER/ANON/VERIFY) so they are counted but never refuse; no access log")
        print(f"connection limits: uvicorn --limit-concurrency unset (no limit), backlog 2048; open files: "
              f"server workers {', '.join(fd_limit_of(pid) for pid in workers) or '?'}, this process {fd_limit}")
        print(f"wrk: 2 threads, closed loop{f', think time {ARGS.think_ms} ms +-50%' if ARGS.think_ms else ''}, "
              f"{ARGS.duration} s per run after {ARGS.warmup} s warm-up, 30 s timeout; {ARGS.keys} API keys rotated")
        clients = [int(value) for value in ARGS.clients.split(",") if value.strip()]
        endpoints = ["floor"] + [name for name in ARGS.endpoints.split(",") if name in ENDPOINTS] if clients else []
        results = {}
        print()
        header = (f"{'endpoint':<8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
                  f"{'max ms':>8} {'errors':>7}  load1  [non-2xx codes]  floor/this req/s, this/floor p95")
        print(header)
        for endpoint in endpoints:
            for count in clients:
                server_drain(workers)
                if ARGS.warmup:
                    wrk(endpoint, count, ARGS.warmup, seed, static_path, work)
                    server_drain(workers)
                result = wrk(endpoint, count, ARGS.duration, seed, static_path, work)
                results[endpoint, count] = result
                load1 = os.getloadavg()[0]
                if not result["requests"]:
                    print(f"{endpoint:<8} {count:>7}  no answer within the {ARGS.duration} s run   load {load1:.1f}",
                          flush=True)
                    continue
                floor = results.get(("floor", count))
                ratio = ""
                if endpoint != "floor" and floor and floor["requests"]:
                    ratio = (f"  {floor['rps'] / max(result['rps'], 1e-9):.1f}x, "
                             f"{result['p95_us'] / max(floor['p95_us'], 1):.1f}x")
                codes = f" ({result['codes']})" if result["codes"] else ""
                print(f"{endpoint:<8} {count:>7} {result['rps']:>8.0f} {result['p50_us'] / 1000:>8.1f} "
                      f"{result['p95_us'] / 1000:>8.1f} {result['p99_us'] / 1000:>8.1f} {result['max_us'] / 1000:>8.0f} "
                      f"{result['errors']:>7}  load {load1:>4.1f}{codes}{ratio}", flush=True)
        print(f"load average after HTTP: {load()}")

        from config.tenancy import tenant_scope
        from generation.models import Job

        with tenant_scope(seed.organization):
            jobs_now = Job.objects.count()
        counts_end, service_end = query_counts(seed)
        print()
        print(f"queries per request with {ARGS.start_jobs} jobs -> with {jobs_now} jobs, and the median time of "
              f"one request after another (in-process, test client; no HTTP):")
        for name in counts_start:
            same = "same" if counts_start[name] == counts_end[name] else "CHANGED"
            print(f"  {name:<8} {counts_start[name]:>3} -> {counts_end[name]:>3} queries  {same:<8}"
                  f"{service_start[name]:6.1f} ms -> {service_end[name]:6.1f} ms")
        reads_constant = all(counts_start[name] == counts_end[name] for name in ("list", "detail", "verify"))

        if ARGS.ws_clients:
            print()
            ws = websocket_run(seed, workers)
            ready = ws["ready"]
            print(f"websockets: {ws['clients']} clients on {ws['jobs']} jobs ({ARGS.ws_clients_per_job} per job), "
                  f"connected {ws['connected']}, failed {ready['failed']} in {ready['connect_all_s']} s "
                  f"(client process open files {ready['fd_limit']}){'; errors: ' + '; '.join(ws['errors']) if ws['errors'] else ''}")
            print(f"  connect (handshake + session + snapshot): p50 {percentile(ws['connect_ms'], 0.5):.0f} ms, "
                  f"p95 {percentile(ws['connect_ms'], 0.95):.0f} ms")
            idle = ws["idle"]
            print(f"  idle for {idle['seconds']:.0f} s with every client connected: server workers "
                  f"{idle['cpu_percent']:.0f}% of one core, {idle['commits_per_s']:.0f} database transactions/s")
            print(f"  published {ws['published']} events ({ARGS.ws_events} rounds, one per job every "
                  f"{ARGS.ws_interval} s) in {ws['publish_s']:.1f} s, job_event + commit p50 "
                  f"{percentile(ws['publish_ms'], 0.5):.1f} ms")
            print(f"  delivered: expected {ws['expected']}, received {ws['received']}, clients with every event "
                  f"{ws['complete_clients']}/{ws['connected']}, duplicates {ws['duplicates']}")
            print(f"  delivery latency (event created -> client received): p50 {percentile(ws['latency_ms'], 0.5):.0f} "
                  f"ms, p95 {percentile(ws['latency_ms'], 0.95):.0f} ms, p99 {percentile(ws['latency_ms'], 0.99):.0f} ms")

        print()
        target = [results.get((name, 200)) for name in ("list", "detail", "verify") if (name, 200) in results]
        if target:
            worst = max(result["p95_us"] if result["requests"] else float("inf") for result in target) / 1000
            errors = sum(result["errors"] for result in results.values())
            print(f"target: reads p95 < 200 ms at 200 clients: worst {worst:.0f} ms "
                  f"({'met' if worst < 200 else 'NOT met'}); errors in all runs: {errors}; "
                  f"read query counts constant: {'yes' if reads_constant else 'NO'}")
        print(f"load average at the end: {load()}; total {time.perf_counter() - began:.0f} s")
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        connection.close()
        if not ARGS.keep_database:
            database_drop(ARGS)
            redis_flush(ARGS.redis_url, ARGS.broker_url)
        shutil.rmtree(os.environ["VAR_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
