"""Failure tests: the production services fail under a running platform, for real.

Private PostgreSQL, Redis, RabbitMQ and anvil instances (generation/tests/services.py) serve the
real ASGI server and real Celery workers (generation/tests/live.py). Each test restarts or kills one
part while jobs run and checks that every job still ends completed, that every video is registered
and anchored on chain exactly once, and that /api/v1/health answered 503 naming the part while it
was down. Marked `failures`: they run once, in the production-services run, and need the servers'
binaries (not the machine's shared services).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass

import pytest

from generation.tests import services
from generation.tests.live import ROOT, live_platform

pytestmark = pytest.mark.failures

# anvil's first well-known development account: funded on every anvil chain, worthless elsewhere.
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
SHORTEST = {"duration_s": 5, "resolution": "480p", "shots": 1}  # the smallest job the API accepts
# Short leases, sweeps and re-dispatch so lost wake-ups and dead workers heal within seconds.
FAST = {"STEP_LEASE_S": "4", "SWEEP_INTERVAL_S": "1", "STEP_REDISPATCH_S": "3", "STEP_RETRY_BACKOFF_S": "1",
        "STEP_MAX_ATTEMPTS": "6", "CHAIN_RPC_TIMEOUT": "3"}


@dataclass
class Stack:
    postgres: services.Postgres
    redis: services.Redis
    rabbitmq: services.RabbitMQ
    anvil: services.Anvil
    contract: str = ""
    key: str = ""

    def env(self, broker: str = "redis") -> dict:
        return {"DATABASE_URL": self.postgres.url, "REDIS_URL": self.redis.url,
                "BROKER_URL": self.redis.url.replace("/0", "/1") if broker == "redis" else self.rabbitmq.url,
                "CHAIN_RPC_URL": self.anvil.url, "CHAIN_CONTRACT": self.contract, "CHAIN_SIGNER_KEY": ANVIL_KEY,
                "DATABASE_CONN_MAX_AGE": "60", **FAST}

    def manage(self, *args: str) -> str:
        from generation.tests.live import platform_env

        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                                env=platform_env(**self.env()), timeout=180)
        assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def stack():
    roots, started = [], []

    def service(kind):
        root = services.make_root(kind.name)
        roots.append(root)
        instance = kind(root)
        instance.start()
        started.append(instance)
        return instance

    try:
        stack = Stack(postgres=service(services.Postgres), redis=service(services.Redis),
                      rabbitmq=service(services.RabbitMQ), anvil=service(services.Anvil))
        stack.manage("migrate", "--noinput")
        stack.manage("create_org", "failures", "--name", "Failure Studio", "--owner", "owner@failures.test")
        stack.key = stack.manage("create_api_key", "--org", "failures", "--name", "failures").strip()
        stack.contract = stack.manage("deploy_registry").strip().splitlines()[-1].removeprefix("CHAIN_CONTRACT=")
        yield stack
    finally:
        for instance in reversed(started):
            instance.stop(crash=True)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


class HealthWatch(threading.Thread):
    """Polls /api/v1/health from a thread and keeps every answer with its time."""

    def __init__(self, base: str):
        super().__init__(daemon=True, name="health-watch")
        self.base = base
        self.readings: list[tuple[float, int, dict]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.3):
            try:
                with urllib.request.urlopen(self.base + "/api/v1/health", timeout=8) as response:
                    code, body = response.status, json.load(response)
            except urllib.error.HTTPError as error:
                code, body = error.code, _json_or_empty(error.read())
            except OSError as error:  # the web process itself did not answer
                code, body = 0, {"error": str(error)}
            self.readings.append((time.monotonic(), code, body.get("checks", {})))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join(timeout=10)

    def reported_down(self, part: str, start: float, end: float) -> bool:
        return any(code == 503 and checks.get(part, {}).get("status") == "down"
                   for at, code, checks in self.readings if start <= at <= end)

    def wait_healthy(self, timeout: float) -> None:
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            if any(code == 200 and at > since for at, code, _checks in self.readings):
                return
            time.sleep(0.3)
        raise AssertionError(f"health never answered 200 again: {self.readings[-3:]}")

    def summary(self) -> Counter:
        return Counter(code for _at, code, _checks in self.readings)


def _json_or_empty(raw: bytes) -> dict:
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def start_jobs(live, stack: Stack, count: int, label: str) -> list[str]:
    status, project = live.call("POST", "/api/v1/projects", stack.key, {"name": f"Failures {label}"})
    assert status == 201, project
    ids = []
    for index in range(count):
        status, body = live.call("POST", "/api/v1/jobs", stack.key, {
            "project": project["id"], "topic": f"{label}: a lighthouse keeper's night number {index}",
            "options": SHORTEST})
        assert status == 201, body
        ids.append(body["id"])
    return ids


def job_status(live, stack: Stack, job_id: str) -> dict | None:
    """The job as the API shows it, or None while the API cannot answer (a service is down)."""
    try:
        status, body = live.call("GET", f"/api/v1/jobs/{job_id}", stack.key)
    except (OSError, ValueError):
        return None
    return body if status == 200 else None


def wait_all_done(live, stack: Stack, job_ids: list[str], timeout: float) -> dict[str, dict]:
    done: dict[str, dict] = {}

    def all_done():
        for job_id in job_ids:
            if job_id in done:
                continue
            body = job_status(live, stack, job_id)
            if body and body["status"] in {"completed", "failed", "cancelled"}:
                done[job_id] = body
        return len(done) == len(job_ids)

    try:
        live.wait_for(all_done, timeout, f"{len(job_ids)} jobs to finish", interval=1)
    except AssertionError as error:
        waiting = [job_id for job_id in job_ids if job_id not in done]
        steps = stack.postgres.query(
            "SELECT job_id::text, stage, shot, status, attempts, runs, lease_owner, lease_expires_at, error "
            "FROM generation_step WHERE job_id = ANY(%s::uuid[]) AND status <> 'succeeded' ORDER BY job_id",
            (waiting,))
        raise AssertionError(f"unfinished jobs {waiting}; their steps: {steps}\n{error}") from None
    return done


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def steps_succeeded(stack: Stack, job_ids: list[str]) -> int:
    return stack.postgres.query("SELECT count(*) FROM generation_step WHERE job_id = ANY(%s::uuid[]) "
                                "AND status = 'succeeded'", (job_ids,))[0][0]


def assert_completed_once(stack: Stack, jobs: dict[str, dict]) -> None:
    """Every job completed with one video, one protected content and one registration."""
    failed = {job_id: (job["status"], job["error"]) for job_id, job in jobs.items() if job["status"] != "completed"}
    assert not failed, failed
    job_ids = list(jobs)
    rows = stack.postgres.query(
        "SELECT j.id::text, count(DISTINCT c.id), count(r.id) FROM generation_job j "
        "LEFT JOIN rights_content c ON c.job_id = j.id LEFT JOIN rights_registration r ON r.content_id = c.id "
        "WHERE j.id = ANY(%s::uuid[]) GROUP BY j.id", (job_ids,))
    assert sorted(rows) == sorted((job_id, 1, 1) for job_id in job_ids)
    videos = stack.postgres.query(
        "SELECT s.job_id::text, count(a.id) FROM generation_step s JOIN generation_artifact a "
        "ON a.digest = s.input_digest AND a.organization_id = s.organization_id AND a.kind = 'video' "
        "WHERE s.job_id = ANY(%s::uuid[]) AND s.stage = 'compose' GROUP BY s.job_id", (job_ids,))
    assert sorted(videos) == sorted((job_id, 1) for job_id in job_ids)


def anchored_roots_on_chain(stack: Stack) -> Counter:
    from web3 import Web3

    from rights.chain import registry_contract

    w3 = Web3(Web3.HTTPProvider(stack.anvil.url))
    events = registry_contract(w3, address=stack.contract).events.Anchored().get_logs(from_block=0)
    return Counter(Web3.to_hex(event.args.root) for event in events)


def assert_registered_on_chain_once(stack: Stack, timeout: float = 60) -> None:
    """Every registration confirmed, in exactly one confirmed batch whose root is on chain once;
    no root on chain that no batch accounts for (nothing anchored twice across an outage)."""
    wait_until(lambda: not stack.postgres.query(
        "SELECT 1 FROM rights_registration WHERE status <> 'confirmed' LIMIT 1"), timeout,
        "every registration to be confirmed")
    batches = stack.postgres.query("SELECT merkle_root, size FROM rights_registrationbatch "
                                   "WHERE kind = 'anchor' AND status = 'confirmed'")
    registrations = stack.postgres.query("SELECT count(*) FROM rights_registration")[0][0]
    on_chain = anchored_roots_on_chain(stack)
    assert sum(size for _root, size in batches) == registrations
    assert all(count == 1 for count in on_chain.values()), on_chain
    assert sorted(on_chain) == sorted(root for root, _size in batches)
    # Each registration's inclusion proof leads to its batch's root, which the chain holds.
    from rights.registry import merkle_root_from_proof

    proofs = stack.postgres.query("SELECT r.leaf, r.proof, b.merkle_root FROM rights_registration r "
                                  "JOIN rights_registrationbatch b ON b.id = r.batch_id")
    assert len(proofs) == registrations and len({leaf for leaf, _proof, _root in proofs}) == registrations
    assert all(merkle_root_from_proof(leaf=leaf, proof=proof) == root and on_chain[root] == 1
               for leaf, proof, root in proofs)


def test_postgres_killed_and_restarted_while_20_jobs_run(stack, tmp_path):
    with live_platform(tmp_path, engine="celery", workers=2, **stack.env("redis")) as live, \
            HealthWatch(live.base) as health:
        job_ids = start_jobs(live, stack, 20, "postgres")
        wait_until(lambda: steps_succeeded(stack, job_ids) >= 15, 120, "the run to get going")
        down = time.monotonic()
        stack.postgres.stop(crash=True)  # SIGKILL: a real crash, recovered from the WAL on start
        time.sleep(4)
        stack.postgres.start()
        up = time.monotonic()
        health.wait_healthy(30)
        jobs = wait_all_done(live, stack, job_ids, 240)
        assert_registered_on_chain_once(stack)  # while the workers' batchers run
    assert health.reported_down("database", down, up + 1), health.summary()
    assert_completed_once(stack, jobs)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_broker_restarted_during_a_run(broker, stack, tmp_path):
    """Redis (cache, and the broker) loses everything it held; RabbitMQ is crashed and comes back with
    its durable queues. Lost wake-ups heal through STEP_REDISPATCH_S."""
    server = stack.redis if broker == "redis" else stack.rabbitmq
    with live_platform(tmp_path, engine="celery", workers=2, **stack.env(broker)) as live, \
            HealthWatch(live.base) as health:
        job_ids = start_jobs(live, stack, 3, broker)
        wait_until(lambda: steps_succeeded(stack, job_ids) >= 6, 120, "the run to get going")
        down = time.monotonic()
        server.stop(crash=broker == "rabbitmq")
        wait_until(lambda: health.reported_down("broker", down, time.monotonic()), 20, "health to report the outage")
        time.sleep(2)
        server.start()
        up = time.monotonic()
        health.wait_healthy(60)
        jobs = wait_all_done(live, stack, job_ids, 180)
        assert_registered_on_chain_once(stack)  # while the workers' batchers run
    assert health.reported_down("broker", down, up + 1), health.summary()
    if broker == "redis":
        assert health.reported_down("cache", down, up + 1), health.summary()
    assert_completed_once(stack, jobs)


def test_worker_killed_mid_step_while_another_runs(stack, tmp_path):
    """SIGKILL one of two workers in the middle of a step: the step's lease expires, the other
    worker runs it again, and every job completes with one video and one registration."""
    with live_platform(tmp_path, engine="celery", workers=2, **stack.env("rabbitmq")) as live:
        job_ids = start_jobs(live, stack, 3, "kill")
        victim = live.processes["worker0"].pid

        def victim_running():
            rows = stack.postgres.query(
                "SELECT id::text FROM generation_step WHERE job_id = ANY(%s::uuid[]) AND status = 'running' "
                "AND stage IN ('clip', 'compose', 'protect') AND lease_owner LIKE %s",
                (job_ids, f"%:{victim}:%"))
            return rows[0][0] if rows else None

        killed = wait_until(victim_running, 120, "worker0 to run a clip, compose or protect step", interval=0.05)
        live.kill("worker0")
        jobs = wait_all_done(live, stack, job_ids, 180)
        assert_registered_on_chain_once(stack)  # while the surviving worker's batcher runs
    assert_completed_once(stack, jobs)
    (status, attempts, runs, owner), = stack.postgres.query(
        "SELECT status, attempts, runs, lease_owner FROM generation_step WHERE id = %s", (killed,))
    assert (status, runs) == ("succeeded", 1) and attempts >= 2
    assert f":{victim}:" not in owner  # the other worker finished it
    doubled = stack.postgres.query("SELECT stage, shot, runs FROM generation_step WHERE job_id = ANY(%s::uuid[]) "
                                   "AND runs <> 1", (job_ids,))
    assert not doubled


def test_chain_node_stopped_during_a_run(stack, tmp_path):
    """Jobs complete while the node is down, their registrations wait in the outbox; after the
    restart each is anchored and confirmed once."""
    with live_platform(tmp_path, engine="celery", workers=2, **stack.env("redis")) as live, \
            HealthWatch(live.base) as health:
        job_ids = start_jobs(live, stack, 2, "chain")
        wait_until(lambda: steps_succeeded(stack, job_ids) >= 3, 120, "the run to get going")
        down = time.monotonic()
        stack.anvil.stop()  # SIGINT: the node writes its state file and leaves; the chain continues on start
        jobs = wait_all_done(live, stack, job_ids, 180)
        waiting = stack.postgres.query(
            "SELECT r.status, count(*) FROM rights_registration r JOIN rights_content c ON c.id = r.content_id "
            "WHERE c.job_id = ANY(%s::uuid[]) GROUP BY r.status", (job_ids,))
        stack.anvil.start()
        up = time.monotonic()
        health.wait_healthy(30)
        assert_registered_on_chain_once(stack)
    assert dict(waiting) == {"pending": 2}, waiting
    assert health.reported_down("chain", down, up), health.summary()
    assert_completed_once(stack, jobs)
