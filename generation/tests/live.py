"""A live platform for end-to-end tests: the real ASGI server and real worker processes, started as
subprocesses against the test database, talked to over HTTP."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from config.client_address import UVICORN_ARGS
from config.queues import QUEUES, dramatiq_queue

ROOT = Path(__file__).resolve().parents[2]
ALL_QUEUES = ",".join(QUEUES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_env() -> dict:
    """Environment that points a subprocess at the database this test uses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"DATABASE_URL": "", "SQLITE_PATH": str(db["NAME"])}
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return {"DATABASE_URL": f"postgres://{user}{password}@{host}/{db['NAME']}"}


def platform_env(**overrides) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(database_env())
    env.update(VAR_DIR=str(settings.VAR_DIR), MEDIA_ROOT=str(settings.MEDIA_ROOT), SECRET_KEY=settings.SECRET_KEY,
               REDIS_URL=settings.REDIS_URL, BROKER_URL=settings.BROKER_URL, PYTHONUNBUFFERED="1",
               STEP_LEASE_S="4", SWEEP_INTERVAL_S="1", STEP_RETRY_BACKOFF_S="1", STEP_REDISPATCH_S="5")
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def worker_command(engine: str, queues: str = ALL_QUEUES, name: str = "worker") -> list[str]:
    if engine == "dramatiq":
        return [sys.executable, "-m", "dramatiq", "generation.queue.dramatiq_actors", "--queues",
                *(dramatiq_queue(queue) for queue in queues.split(",")),
                "--processes", "1", "--threads", "1"]
    # A node name of its own: on RabbitMQ two workers named celery@host clash over their control queue
    # (here and in concurrent test runs on one broker).
    return [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-P", "solo",
            "-n", f"{name}.{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]


class Live:
    def __init__(self, env: dict, engine: str, log_dir: Path):
        self.env, self.engine, self.log_dir = env, engine, log_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self.start(name, worker_command(self.engine, name=name))

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.log_dir.glob("*.log")))

    def call(self, method: str, path: str, key: str, body: dict | None = None, headers: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if response.headers.get_content_type() ==
                                         "application/json" else raw)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited with {process.returncode} while waiting for {what}\n"
                                         + self.logs())
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n" + self.logs())

    def job_when(self, key: str, job_id: str, statuses: set[str], timeout: float) -> dict:
        def check():
            status, body = self.call("GET", f"/api/v1/jobs/{job_id}", key)
            return body if status == 200 and body["status"] in statuses else None

        return self.wait_for(check, timeout, f"job {job_id} to reach {statuses}")


@contextmanager
def live_platform(tmp_path: Path, *, engine: str = "celery", workers: int = 1, **env_overrides):
    """Serve the platform with uvicorn and `workers` worker processes; yields the Live handle."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    live = Live(platform_env(QUEUE_ENGINE=engine, **env_overrides), engine, log_dir)
    live.start("web", [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                       "--port", str(live.port), "--log-level", "warning", *UVICORN_ARGS])
    for index in range(workers):
        live.start_worker(f"worker{index}")
    try:
        live.wait_for(lambda: _healthy(live.base), 60, "the web server")
        yield live
    finally:
        live.stop()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/v1/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False
