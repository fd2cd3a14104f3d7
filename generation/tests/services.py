"""Private instances of the production services for the failure tests: PostgreSQL, Redis, RabbitMQ
and anvil, each started from the machine's binaries on a free loopback port with its data in a
temporary folder, so a test can crash and restart one without touching the machine's own services.

A restart is a real one: the process is stopped (SIGTERM, or SIGKILL for a crash) and started
again on the same port with the same data folder.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _postgres_bin(name: str) -> str | None:
    for folder in POSTGRES_BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


def _anvil_bin() -> str | None:
    configured = os.environ.get("ANVIL_BIN")
    if configured:
        return os.path.abspath(configured) if os.access(configured, os.X_OK) else None
    return shutil.which("anvil")


def _rabbitmq_server_bin() -> str | None:
    # Debian's /usr/sbin wrapper switches to the rabbitmq user and drops our environment.
    direct = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    return str(direct) if direct.exists() else shutil.which("rabbitmq-server")


def _rabbitmqctl_bin() -> str | None:
    direct = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
    return str(direct) if direct.exists() else shutil.which("rabbitmqctl")


def missing_binaries() -> list[str]:
    """The server binaries these tests need that this machine lacks."""
    found = {
        "postgres (initdb)": _postgres_bin("initdb") and _postgres_bin("postgres"),
        "redis-server": shutil.which("redis-server"),
        "rabbitmq-server": _rabbitmq_server_bin() and _rabbitmqctl_bin(),
        "anvil (ANVIL_BIN, make install-anvil)": _anvil_bin(),
    }
    return [name for name, path in found.items() if not path]


def _wait(predicate, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:] if log and log.exists() else ''}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start in {timeout} s: "
                       f"{log.read_text(errors='replace')[-2000:] if log and log.exists() else ''}")


class Service:
    """One server process on a fixed port with a fixed data folder."""

    name = "service"

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        self.log = root / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return dict(os.environ)

    def ready(self) -> bool:
        return _port_open(self.port)

    def preexec(self):
        return None

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.root, start_new_session=True, preexec_fn=self.preexec())
        _wait(self.ready, timeout, self.name, self.process, self.log)

    def stop(self, *, crash: bool = False, timeout: float = 30) -> None:
        """SIGTERM and wait; `crash` sends SIGKILL to the whole process group instead (no clean shutdown)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL if crash else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
        _wait(lambda: not _port_open(self.port), 15, f"{self.name} to release its port")

    def restart(self, *, crash: bool = False, down_s: float = 0) -> None:
        self.stop(crash=crash)
        time.sleep(down_s)
        self.start()


def _as_postgres_user():
    """initdb and postgres refuse to run as root: drop to the postgres system user there."""
    if os.getuid() != 0:
        return None
    user = pwd.getpwnam("postgres")

    def demote():
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    return demote


class Postgres(Service):
    """A private cluster with trust authentication, an application role `platform` that is not a
    superuser (so row level security applies to it) and its database."""

    name = "postgres"

    def __init__(self, root: Path):
        super().__init__(root)
        self.data = root / "pgdata"
        demote = _as_postgres_user()
        if demote is not None:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        self.superuser = "postgres" if demote is not None else pwd.getpwuid(os.getuid()).pw_name
        subprocess.run([_postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", self.superuser,
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, preexec_fn=demote, cwd=root)

    @property
    def url(self) -> str:
        return f"postgres://platform@127.0.0.1:{self.port}/platform"

    @property
    def admin_url(self) -> str:
        return f"postgres://{self.superuser}@127.0.0.1:{self.port}/platform"

    def preexec(self):
        return _as_postgres_user()

    def command(self) -> list[str]:
        return [_postgres_bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(self.root), "-c", "fsync=off", "-c", "max_connections=200"]

    def ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(f"postgres://{self.superuser}@127.0.0.1:{self.port}/postgres", connect_timeout=1).close()
            return True
        except psycopg.Error:
            return False

    def start(self, timeout: float = 60) -> None:
        super().start(timeout)
        import psycopg

        with psycopg.connect(f"postgres://{self.superuser}@127.0.0.1:{self.port}/postgres", autocommit=True) as db:
            if not db.execute("SELECT 1 FROM pg_roles WHERE rolname = 'platform'").fetchone():
                db.execute("CREATE ROLE platform LOGIN NOSUPERUSER NOBYPASSRLS")
                db.execute("CREATE DATABASE platform OWNER platform")

    def query(self, sql: str, params=()) -> list[tuple]:
        """Read as the superuser, which row level security does not restrict."""
        import psycopg

        with psycopg.connect(self.admin_url) as db:
            return db.execute(sql, params).fetchall()


class Redis(Service):
    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.root)]


class RabbitMQ(Service):
    """A node of its own (name, ports, database, logs, plugins file, Erlang cookie under its folder)."""

    name = "rabbitmq"

    def __init__(self, root: Path):
        super().__init__(root)
        self.node = f"failures{os.getpid()}x{self.port}@localhost"
        self.dist_port = _free_port()
        (root / "mnesia").mkdir(exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        (root / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict:
        return {**os.environ, "HOME": str(self.root), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.root / "logs"), "RABBITMQ_ENABLED_PLUGINS_FILE":
                str(self.root / "enabled_plugins"), "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
                "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"), "RABBITMQ_SERVER_START_ARGS": ""}

    def command(self) -> list[str]:
        return [_rabbitmq_server_bin()]

    def ready(self) -> bool:
        if not _port_open(self.port):
            return False
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as broker:
                broker.ensure_connection(max_retries=1, timeout=1)
            return True
        except Exception:
            return False

    def start(self, timeout: float = 90) -> None:
        super().start(timeout)

    def stop(self, *, crash: bool = False, timeout: float = 60) -> None:
        if self.process is not None and not crash and self.process.poll() is None:
            subprocess.run([_rabbitmqctl_bin(), "-n", self.node, "stop"], env=self.env(), capture_output=True,
                           timeout=timeout, check=False)
        super().stop(crash=crash, timeout=timeout)


class Anvil(Service):
    """An EVM node whose state is dumped to a file on a clean stop and loaded on start (`--state`),
    so the chain continues across a restart."""

    name = "anvil"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [_anvil_bin(), "--host", "127.0.0.1", "--port",
                str(self.port), "--silent", "--state", str(self.root / "state.json"), "--preserve-historical-states"]

    def ready(self) -> bool:
        try:
            self.rpc("eth_chainId")
            return True
        except OSError:
            return False

    def rpc(self, method: str, params: list | None = None):
        import json

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)["result"]

    def stop(self, *, crash: bool = False, timeout: float = 30) -> None:
        # SIGINT: anvil writes its state file on the way out (SIGKILL would lose the chain).
        if self.process is not None and self.process.poll() is None and not crash:
            os.killpg(self.process.pid, signal.SIGINT)
        super().stop(crash=crash, timeout=timeout)


def make_root(name: str) -> Path:
    """A folder outside pytest's private tmp tree (the postgres user must be able to reach it)."""
    root = Path(tempfile.mkdtemp(prefix=f"platform-{name}-"))
    root.chmod(0o755)
    return root
