"""The deployment files (docker/, platform/) checked with the real tools, and kept in step with the code.

- docker-compose validates docker/compose.yaml, `kubectl kustomize` renders platform/k8s and the result
  validates against the Kubernetes OpenAPI schemas (kubernetes-validate, offline), promtool checks and
  unit-tests the alert rules, nginx checks the reverse proxy configuration and then really serves the
  platform: a static file, the API, a websocket, and refuses /metrics.
- The images install with the make targets CI uses, and copy every app.
- Every metric of the contract is on the dashboard, the key ones in the alerts; every variable the
  deployment sets is a setting the platform documents.

A missing tool skips its test with the reason; with REQUIRE_DEPLOY_TOOLS=1 (.ci/run, after
`make install-deploy-tools`) it fails instead. Images are not built here: that needs a Docker daemon.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
K8S = ROOT / "platform" / "k8s"
MONITORING = ROOT / "platform" / "monitoring"
NGINX_SITE = ROOT / "platform" / "nginx" / "platform.conf"
REQUIRE_DEPLOY_TOOLS = os.environ.get("REQUIRE_DEPLOY_TOOLS") == "1"

# The metric names every Prometheus endpoint of the platform exposes (README, Observability).
CONTRACT_METRICS = [
    "platform_http_requests_total",
    "platform_http_request_duration_seconds",
    "platform_jobs",
    "platform_queue_depth",
    "platform_registration_backlog",
    "platform_spend_usd_total",
    "platform_step_duration_seconds",
    "platform_chain_errors_total",
    "platform_websocket_connections",
]
ALERTED_METRICS = [
    "platform_http_requests_total", "platform_http_request_duration_seconds", "platform_jobs",
    "platform_queue_depth", "platform_registration_backlog", "platform_step_duration_seconds",
    "platform_chain_errors_total",
]
# compose's own values for the ${...:?} secrets: placeholders, so that `config` can interpolate.
COMPOSE_SECRETS = {name: "placeholder-for-config" for name in (
    "SECRET_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_SECRET_ACCESS_KEY",
    "METRICS_TOKEN", "CHAIN_SIGNER_KEY")}
ONE_SHOT_SERVICES = {"migrate", "minio-init"}


def tool(name: str, *also: str) -> str:
    found = shutil.which(name) or next((path for path in also if os.access(path, os.X_OK)), None)
    if found:
        return found
    message = f"{name} is not installed (make install-deploy-tools)"
    if REQUIRE_DEPLOY_TOOLS:
        pytest.fail(f"REQUIRE_DEPLOY_TOOLS=1 but {message}", pytrace=False)
    pytest.skip(message)


def run(command: list[str], *, env: dict | None = None, cwd: Path = ROOT, timeout: float = 120):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# --- docker compose -------------------------------------------------------------------------

def compose_config(*args: str, env_overrides: dict | None = None) -> subprocess.CompletedProcess:
    docker_compose = tool("docker-compose")
    env = {key: value for key, value in os.environ.items() if key not in COMPOSE_SECRETS}
    env.update(env_overrides if env_overrides is not None else COMPOSE_SECRETS)
    # An empty project .env, so a developer's docker/.env cannot make this pass or fail.
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty_env:
        return run([docker_compose, "-f", str(COMPOSE), "--env-file", empty_env.name, *args, "config"], env=env)


def test_compose_file_is_valid_and_complete():
    result = compose_config()
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # docker-compose 1.29 lists profiled services too; compose v2 leaves worker-gpu out without --profile gpu.
    assert set(services) - {"worker-gpu"} == {"migrate", "web", "worker-cpu", "scheduler", "nginx", "postgres",
                                              "redis", "rabbitmq", "minio", "minio-init", "chain"}
    for name, service in services.items():
        if name not in ONE_SHOT_SERVICES:
            assert "test" in service.get("healthcheck", {}), f"{name} has no health check"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            # Named volumes only, except nginx's configuration from this repository.
            assert not source.startswith("/") or source == str(NGINX_SITE), f"{name} bind-mounts {source}"
    for name in ("web", "worker-cpu", "scheduler"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["read_only"] is True
        assert services[name]["environment"]["DEPLOYMENT"] == "production"
    assert "--timeout-graceful-shutdown" in " ".join(services["web"]["command"])
    assert services["scheduler"]["command"][:3] == ["python", "manage.py", "sweep"]

    gpu = compose_config("--profile", "gpu")
    assert gpu.returncode == 0, gpu.stderr
    worker_gpu = yaml.safe_load(gpu.stdout)["services"]["worker-gpu"]
    assert worker_gpu["profiles"] == ["gpu"]
    assert worker_gpu["command"] == ["celery", "-A", "config", "worker", "-Q", "gpu", "-P", "solo"]
    assert worker_gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def image_folders_of_platform(dockerfile: str) -> set[str]:
    """The folders the image's runtime stage creates and gives to the platform user."""
    text = (ROOT / "docker" / dockerfile).read_text().replace("\\\n", " ")
    runtime = text[text.index("AS runtime"):]
    made = {path for line in re.findall(r"mkdir -p ([^&]+)", runtime) for path in line.split()}
    made |= {str(parent) for path in made for parent in Path(path).parents}  # -p creates the parents
    owned = {path for line in re.findall(r"chown -R platform:platform ([^&]+)", runtime) for path in line.split()}
    return {path for path in made if any(path == top or path.startswith(top + "/") for top in owned)}


def test_compose_writable_volumes_and_settings_folders_belong_to_the_platform_user():
    """Under read_only: true only volumes and /tmp are writable. A new named volume takes the owner of the
    image's folder it is mounted on (root when the image lacks it), and settings.py creates STATIC_ROOT
    and VAR_DIR at import (possible on a read-only filesystem only when they exist already)."""
    services = yaml.safe_load(compose_config("--profile", "gpu").stdout)["services"]
    images = {"migrate": "Dockerfile", "web": "Dockerfile", "worker-cpu": "Dockerfile", "scheduler": "Dockerfile",
              "worker-gpu": "Dockerfile.gpu"}
    for name, dockerfile in images.items():
        folders = image_folders_of_platform(dockerfile)
        environment = services[name]["environment"]
        image_env = dict(re.findall(r"^\s+([A-Z_]+)=(\S+)", (ROOT / "docker" / dockerfile).read_text(), re.M))
        var_dir = image_env["VAR_DIR"]
        static_root = environment.get("STATIC_ROOT") or image_env.get("STATIC_ROOT") or f"{var_dir}/static"
        assert var_dir in folders, (name, var_dir)
        assert static_root in folders or static_root == "/app/staticfiles", (name, static_root)
        for volume in services[name].get("volumes", []):
            source, target, *mode = volume.split(":") if isinstance(volume, str) else (
                volume["source"], volume["target"], *(["ro"] if volume.get("read_only") else []))
            if "ro" not in mode:
                assert target in folders, f"{name}: the volume {source} on {target} would belong to root"


def test_worker_stop_grace_covers_the_step_grace_and_its_hand_back():
    from generation.queue.worker import RELEASE_EXIT_AFTER_S

    services = yaml.safe_load(compose_config("--profile", "gpu").stdout)["services"]
    for name in ("worker-cpu", "worker-gpu"):
        grace = int(services[name]["environment"]["WORKER_SHUTDOWN_GRACE_S"])
        stop = services[name]["stop_grace_period"]
        seconds = int(stop[:-1]) * (60 if stop.endswith("m") else 1)
        assert seconds >= grace + RELEASE_EXIT_AFTER_S + 5, (name, stop)


def test_compose_refuses_to_start_without_its_secrets():
    result = compose_config(env_overrides={})
    assert result.returncode != 0
    assert "set SECRET_KEY in docker/.env" in result.stderr or "docker/.env" in result.stderr


def test_env_example_names_exactly_the_variables_compose_reads():
    example = {line.split("=", 1)[0] for line in (ROOT / "docker" / "env.example").read_text().splitlines()
               if re.match(r"^[A-Z][A-Z0-9_]*=", line)}
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    assert example == read
    secret_lines = [line for line in (ROOT / "docker" / "env.example").read_text().splitlines()
                    if line.split("=", 1)[0] in COMPOSE_SECRETS]
    assert all(line.endswith("=") for line in secret_lines), "env.example must not carry secret values"


# --- Kubernetes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s_resources() -> list[dict]:
    kubectl = tool("kubectl")
    result = run([kubectl, "kustomize", str(K8S)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_specs(resources):
    for resource in resources:
        if resource["kind"] in {"Deployment", "Job"}:
            yield resource["metadata"]["name"], resource["spec"]["template"]["spec"]


def test_kustomize_output_validates_against_the_kubernetes_schemas(k8s_resources):
    import kubernetes_validate

    for version in ("1.30.0", kubernetes_validate.latest_version()):
        for resource in k8s_resources:
            kubernetes_validate.validate(resource, version, strict=True)  # raises on any schema error
    kinds = sorted({resource["kind"] for resource in k8s_resources})
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "Namespace",
                     "NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget", "Secret", "Service"]


def test_every_pod_runs_locked_down_with_resources(k8s_resources):
    for name, spec in pod_specs(k8s_resources):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            assert {"secretRef": {"name": "platform-secrets"}} in container["envFrom"], (name, container["name"])
            assert not any(var.get("value") for var in container.get("env", [])
                           if var["name"] in {"SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN", "CHAIN_SIGNER_KEY"})


def test_web_probes_drain_and_worker_placement(k8s_resources):
    by_name = {(r["kind"], r["metadata"]["name"]): r for r in k8s_resources}
    web = dict(pod_specs([by_name[("Deployment", "web")]]))["web"]
    container = web["containers"][0]
    for probe in ("startupProbe", "readinessProbe"):
        # Only the database and cache set the probes' status: a chain or S3 outage only delays work.
        assert container[probe]["httpGet"]["path"] == "/api/v1/health?require=database,cache"
    # Liveness must not depend on the database, S3 or the chain: their outage would restart every pod.
    assert container["livenessProbe"] == {**container["livenessProbe"], "tcpSocket": {"port": "http"}}
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    graceful = int(container["command"][container["command"].index("--timeout-graceful-shutdown") + 1])
    assert graceful + int(container["lifecycle"]["preStop"]["exec"]["command"][1]) < web["terminationGracePeriodSeconds"]

    queues = {}
    for name, spec in pod_specs(k8s_resources):
        command = spec["containers"][0]["command"]
        if command[:2] == ["celery", "-A"]:
            queues[name] = command[command.index("-Q") + 1]
    assert queues == {"worker-cpu": "cpu", "worker-llm": "llm", "worker-rights": "rights,chain", "worker-gpu": "gpu"}
    gpu = dict(pod_specs([by_name[("Deployment", "worker-gpu")]]))["worker-gpu"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert by_name[("Deployment", "scheduler")]["spec"]["replicas"] == 1
    from generation.queue.worker import RELEASE_EXIT_AFTER_S

    config = by_name[("ConfigMap", "platform-config")]["data"]
    for name, spec in pod_specs(k8s_resources):
        if name.startswith("worker-"):
            needed = int(config["WORKER_SHUTDOWN_GRACE_S"]) + RELEASE_EXIT_AFTER_S + 5
            assert spec["terminationGracePeriodSeconds"] >= needed, name
            # One process per worker pod (threads, solo): its own registry, process metrics included.
            assert "PROMETHEUS_MULTIPROC_DIR" not in str(spec), name
    assert {("HorizontalPodAutoscaler", "web"), ("HorizontalPodAutoscaler", "worker-cpu"),
            ("PodDisruptionBudget", "web"), ("Job", "migrate")} <= set(by_name)
    # The Secret in git is a template: placeholders only.
    secret = by_name[("Secret", "platform-secrets")]["stringData"]
    assert all(value == "" or "change-me" in value or "example" in value for value in secret.values()), secret


# --- Prometheus ------------------------------------------------------------------------------

def test_alert_rules_check_and_pass_their_unit_tests():
    promtool = tool("promtool")
    checked = run([promtool, "check", "rules", str(MONITORING / "prometheus-rules.yaml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run([promtool, "test", "rules", str(MONITORING / "rules-test.yaml")])
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = run([promtool, "check", "config", "--syntax-only", str(MONITORING / "prometheus-scrape.yaml")])
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_rule_group_alert_has_a_unit_test():
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((MONITORING / "rules-test.yaml").read_text())
    fired = {case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert alerts == fired


def test_dashboard_shows_every_metric_and_alerts_watch_the_key_ones():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    for metric in CONTRACT_METRICS:
        assert re.search(rf"\b{metric}(_bucket|_count|_sum)?\b", expressions), f"no panel shows {metric}"
    assert "process_resident_memory_bytes" in expressions and "process_cpu_seconds_total" in expressions
    rules = (MONITORING / "prometheus-rules.yaml").read_text()
    for metric in ALERTED_METRICS:
        assert metric in rules, f"no alert watches {metric}"


# --- Images ---------------------------------------------------------------------------------

def make_targets(text: str) -> set[str]:
    """`make X` run as a command (a line's start, after RUN, && or ;), not the apt package `make`."""
    return set(re.findall(r"(?:^|RUN|&&|;)\s*make ([a-z][\w-]*)", text, re.M))


def test_images_install_with_the_make_targets_ci_uses():
    ci = make_targets((ROOT / ".ci" / "run").read_text())
    makefile = (ROOT / "Makefile").read_text()
    prerequisites = set(re.search(r"^test: (.*)$", makefile, re.M).group(1).split())
    used_by_ci = ci | prerequisites
    for dockerfile, expected in (("Dockerfile", "install"), ("Dockerfile.gpu", "install-gpu")):
        text = (ROOT / "docker" / dockerfile).read_text()
        assert expected in make_targets(text), f"{dockerfile} does not run make {expected}"
        assert make_targets(text) <= used_by_ci, f"{dockerfile} runs a make target CI does not"
        assert "pip install" not in text, f"{dockerfile} installs packages past the Makefile"
        # Every app and the project package are in the image.
        for package in ("accounts", "config", "generation", "projects", "rights", "templates", "locale"):
            assert f"/src/{package} /app/{package}" in text, f"{dockerfile} does not copy {package}"
        env_lines = " ".join(re.findall(r"^ENV .*?(?<!\\)$", text, re.M | re.S))
        for secret in ("SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN", "S3_SECRET_ACCESS_KEY", "CHAIN_SIGNER_KEY"):
            assert secret not in env_lines, f"{dockerfile} bakes {secret} into the image"
        assert re.search(r"^USER platform", text, re.M)
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")}
    assert apps <= {"accounts", "config", "generation", "projects", "rights"}, f"new app to copy: {apps}"


# --- Settings -------------------------------------------------------------------------------

def documented_settings() -> set[str]:
    names = set(re.findall(r"""env(?:_bool|_int|_list)?\(\s*["']([A-Z][A-Z0-9_]*)["']""",
                           (ROOT / "config" / "settings.py").read_text()))
    readme = (ROOT / "README.md").read_text()
    names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", readme))
    return names


def test_every_variable_the_deployment_sets_is_a_documented_setting(k8s_resources):
    known = documented_settings()
    compose = yaml.safe_load(COMPOSE.read_text())
    ours = {name: service for name, service in compose["services"].items()
            if "build" in service or "PLATFORM_IMAGE" in str(service.get("image", ""))}
    assert set(ours) == {"migrate", "web", "worker-cpu", "worker-gpu", "scheduler"}
    used = {(f"compose {name}", var) for name, service in ours.items() for var in service["environment"]}
    for resource in k8s_resources:
        if resource["kind"] == "ConfigMap":
            used |= {("k8s ConfigMap", var) for var in resource["data"]}
        if resource["kind"] == "Secret":
            used |= {("k8s Secret", var) for var in resource["stringData"]}
    for name, spec in pod_specs(k8s_resources):
        for container in spec.get("initContainers", []) + spec["containers"]:
            used |= {(f"k8s {name}", var["name"]) for var in container.get("env", [])}
    unknown = sorted(f"{where}: {var}" for where, var in used if var not in known)
    assert not unknown, "not a setting in config/settings.py nor in the README: " + ", ".join(unknown)


# --- nginx ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    """platform/nginx/platform.conf, rendered like the nginx image's envsubst, in a complete nginx
    configuration under a temporary prefix on a loopback port."""

    def __init__(self, *, upstream: str, static_root: Path, port: int, prefix: Path):
        self.binary = tool("nginx", "/usr/sbin/nginx")
        self.prefix, self.port = prefix, port
        site = NGINX_SITE.read_text()
        for name, value in {"PLATFORM_UPSTREAM": upstream, "PLATFORM_STATIC_ROOT": str(static_root),
                            "PLATFORM_LISTEN": f"127.0.0.1:{port}"}.items():
            site = site.replace("${%s}" % name, value)
        assert "${" not in site, "a placeholder of platform.conf is not rendered"
        (prefix / "platform.conf").write_text(site)
        # As root, the workers run as nobody (the master keeps root); otherwise as the current user.
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        temp_paths = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in
                               ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(f"""{user}
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix / "access.log"};
{temp_paths}
    include {prefix / "platform.conf"};
}}
""")
        self.command = [self.binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]

    def check(self) -> subprocess.CompletedProcess:
        return run([*self.command, "-t"])

    def __enter__(self):
        self.process = subprocess.Popen([*self.command, "-g", "daemon off;"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("nginx did not start: " + self.process.stdout.read().decode()
                                         + self.errors())
                time.sleep(0.05)

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=15)

    def errors(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text() if log.exists() else ""


@pytest.fixture
def nginx_prefix():
    # World-readable (0755), so nginx's workers can read the static files when the tests run as root.
    prefix = Path(tempfile.mkdtemp(prefix="nginx-test-"))
    prefix.chmod(0o755)
    (prefix / "static").mkdir(mode=0o755)
    yield prefix
    shutil.rmtree(prefix, ignore_errors=True)


def test_nginx_accepts_the_configuration(nginx_prefix):
    nginx = Nginx(upstream="127.0.0.1:8000", static_root=nginx_prefix / "static", port=free_port(), prefix=nginx_prefix)
    result = nginx.check()
    assert result.returncode == 0, result.stdout + result.stderr


def get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.django_db(transaction=True)
def test_nginx_serves_static_files_proxies_the_platform_and_websockets_and_refuses_metrics(
        nginx_prefix, tenant_a, settings):
    from accounts.tests.browser.conftest import PortalServer, server_thread_connections

    # A file only nginx knows (not in the app's static files): what answers is nginx's static location.
    asset = nginx_prefix / "static" / "css" / "proxy-check.3f2a9c.css"
    asset.parent.mkdir(mode=0o755)
    asset.write_bytes(b"body { color: #123456; }\n")
    asset.chmod(0o644)
    # The server's threads open their own connections: closed at the end, so PostgreSQL can drop the
    # test database (as the browser tests do).
    with server_thread_connections():
        server = PortalServer().start()
        try:
            _check_through_nginx(server, nginx_prefix, asset, tenant_a)
        finally:
            server.stop()


def _check_through_nginx(server, nginx_prefix, asset, tenant_a):
    from websockets.sync.client import connect

    from accounts.tests.test_websocket import session_cookie

    port = free_port()
    with Nginx(upstream=f"127.0.0.1:{server.port}", static_root=nginx_prefix / "static", port=port,
               prefix=nginx_prefix) as nginx:
        base = f"http://127.0.0.1:{port}"
        status, headers, body = get(f"{base}/static/css/proxy-check.3f2a9c.css")
        assert (status, body) == (200, asset.read_bytes()), nginx.errors()
        assert "immutable" in headers["Cache-Control"] and "max-age=31536000" in headers["Cache-Control"]
        assert headers["Content-Type"].startswith("text/css")
        assert get(f"{base}/static/css/missing.css")[0] == 404

        status, headers, body = get(f"{base}/api/v1/health")
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"

        # Refused by nginx itself, token or not: the platform never sees the request.
        for path in ("/metrics", "/metrics/", "/metrics?format=text"):
            status, _, body = get(base + path, {"Authorization": "Bearer anything"})
            assert status == 403 and b"<center>nginx</center>" in body, (path, status, body[:200])

        cookie = session_cookie(tenant_a.owner).decode()
        with connect(f"ws://127.0.0.1:{port}/ws/events", additional_headers={"Cookie": cookie},
                     origin=f"http://127.0.0.1:{port}", proxy=None, open_timeout=20) as websocket:
            hello = json.loads(websocket.recv(timeout=20))
            assert hello["organization"] == "studio-a"
            websocket.send(json.dumps({"type": "ping"}))
            assert json.loads(websocket.recv(timeout=20))["type"] == "pong"
