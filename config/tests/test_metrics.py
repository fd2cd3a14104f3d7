"""/metrics: every metric of the contract with real values after real requests, jobs, websocket
connections and chain failures; the database gauges equal the database across organizations; the
route label is the URL pattern; access needs the token, or a direct request from a private address."""
from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db.models import Sum
from prometheus_client.parser import text_string_to_metric_families

from accounts.audit import Actor
from accounts.tests.test_websocket import session_cookie
from config.tenancy import dangerously_unscoped, tenant_scope
from generation import services
from generation.models import Job, Step
from generation.queue.worker import run_until_idle
from generation.tests.live import free_port
from rights.models import Registration

CONTRACT = ["platform_http_requests", "platform_http_request_duration_seconds", "platform_jobs",
            "platform_queue_depth", "platform_registration_backlog", "platform_spend_usd",
            "platform_step_duration_seconds", "platform_chain_errors", "platform_websocket_connections"]
JOB_ROUTE = "api/v1/jobs/<uuid:job_id>"


def scrape(client=None, **headers) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from GET /metrics."""
    from django.test import Client

    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run_job(tenant, django_capture_on_commit_callbacks, topic) -> Job:
    project = tenant.project(topic[:20])
    with tenant_scope(tenant.organization), django_capture_on_commit_callbacks(execute=True):
        job, _ = services.job_create(organization=tenant.organization, actor=Actor(user=tenant.owner),
                                     project_id=project.pk, topic=topic,
                                     options={"duration_s": 6, "resolution": "480p", "shots": 2})
    while True:
        with django_capture_on_commit_callbacks(execute=True):
            if not run_until_idle():
                return job


@pytest.mark.django_db(transaction=True)
def test_metrics_expose_the_contract_with_real_values(tenant_a, tenant_b, django_capture_on_commit_callbacks,
                                                     settings):
    before = scrape()
    job_a = run_job(tenant_a, django_capture_on_commit_callbacks, "Paper boats on a rainy canal")
    run_job(tenant_b, django_capture_on_commit_callbacks, "A kite festival on a windy beach")
    # A third job of studio B, created and not run: its first step waits in a queue.
    project = tenant_b.project("Queued")
    with tenant_scope(tenant_b.organization), django_capture_on_commit_callbacks(execute=True):
        services.job_create(organization=tenant_b.organization, actor=Actor(user=tenant_b.owner),
                            project_id=project.pk, topic="Snow on a quiet harbour",
                            options={"duration_s": 6, "resolution": "480p", "shots": 2})

    client = tenant_a.client("viewer")
    for _ in range(3):
        assert client.get(f"/api/v1/jobs/{job_a.pk}").status_code == 200
    missing = "0b7e2f4c-1111-4222-8333-944455556666"
    assert client.get(f"/api/v1/jobs/{missing}").status_code == 404

    # A websocket open at scrape time counts; a chain node that refuses connections counts an error.
    from config.asgi import application

    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", session_cookie(tenant_a.owner))]
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    from rights.chain import ChainUnavailable, chain_client_reset, transaction_receipt

    chain_client_reset()
    try:
        with pytest.raises(ChainUnavailable):
            transaction_receipt("0x" + "ab" * 32)
    finally:
        chain_client_reset()

    async def with_open_socket():
        ws = WebsocketCommunicator(application, f"/ws/jobs/{job_a.pk}", headers=headers)
        assert (await ws.connect())[0]
        during = await _scrape_async()
        await ws.disconnect()
        return during

    during = async_to_sync(with_open_socket)()
    after = scrape()

    names = {name for name, _labels in after}
    for metric in CONTRACT:
        assert any(name.startswith(metric) for name in names), metric
    assert value(after, "process_cpu_seconds_total") > 0  # prometheus_client's process metrics

    with dangerously_unscoped():
        completed = Job.objects.filter(status="completed").count()
        queued = list(Step.objects.filter(status="queued").values_list("queue", flat=True))
        spend = Job.objects.aggregate(total=Sum("cost"))["total"] or Decimal("0")
        pending = Registration.objects.filter(status="pending").count()
        anchored = Registration.objects.filter(status="anchored").count()
    assert completed == 2  # one per studio: the gauge reads across organizations
    assert value(after, "platform_jobs", status="completed") == completed
    assert value(after, "platform_jobs", status="failed") == 0
    assert sum(value(after, "platform_jobs", status=s) for s in ("pending", "style_detection")) == 1
    assert queued == ["cpu"] and value(after, "platform_queue_depth", queue="cpu") == 1
    assert value(after, "platform_queue_depth", queue="gpu") == 0
    assert value(after, "platform_registration_backlog", status="pending") == pending
    assert value(after, "platform_registration_backlog", status="anchored") == anchored
    assert pending + anchored >= 2  # each completed job registered its video; none confirmed yet
    assert value(after, "platform_spend_usd_total") == pytest.approx(float(spend))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("platform_http_requests_total", method="GET", route=JOB_ROUTE, status="200") == 3
    assert delta("platform_http_requests_total", method="GET", route=JOB_ROUTE, status="404") == 1
    assert delta("platform_http_request_duration_seconds_count", method="GET", route=JOB_ROUTE) == 4
    for stage in ("style", "script", "storyboard", "compose", "review", "protect", "register"):
        assert delta("platform_step_duration_seconds_count", stage=stage, provider="platform" if stage in (
            "compose", "review", "protect", "register") else "offline", outcome="succeeded") == 2, stage
    assert delta("platform_step_duration_seconds_count", stage="clip", provider="offline", outcome="succeeded") == 4
    assert delta("platform_chain_errors_total", kind="ChainUnavailable") == 1
    assert value(during, "platform_websocket_connections") == value(before, "platform_websocket_connections") + 1
    assert value(after, "platform_websocket_connections") == value(before, "platform_websocket_connections")
    # Scrapes are not counted, and no raw path (an id) becomes a label value.
    assert not any(dict(labels).get("route") == "metrics" for _name, labels in after)
    assert not any(missing in dict(labels).get("route", "") for _name, labels in after)


async def _scrape_async():
    from asgiref.sync import sync_to_async

    return await sync_to_async(scrape)()


def test_unknown_paths_share_one_route_label(db):
    from django.test import Client

    client = Client()
    for path in ("/no-such-page-1", "/no-such-page-2", "/api/v1/nothing/here"):
        client.get(path)
    samples = scrape()
    routes = {dict(labels).get("route") for name, labels in samples if name == "platform_http_requests_total"}
    assert not any("no-such-page" in (route or "") or "nothing/here" in (route or "") for route in routes), routes


@pytest.mark.django_db
def test_token_is_required_when_set(settings):
    from django.test import Client

    settings.METRICS_TOKEN = "m" * 40
    client = Client()
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "x" * 40).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic " + "m" * 40).status_code == 401
    # With the token, any address may scrape (through the ingress too).
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "m" * 40, REMOTE_ADDR="93.184.216.34",
                    HTTP_X_FORWARDED_FOR="151.101.1.69")
    assert ok.status_code == 200 and b"platform_jobs" in ok.content


@pytest.mark.django_db
def test_a_short_token_such_as_a_placeholder_refuses_every_scrape(settings):
    from django.test import Client

    settings.METRICS_TOKEN = "change-me"  # the k8s Secret template's placeholder
    client = Client()
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer change-me")
    assert refused.status_code == 503 and b"shorter than 32 characters" in refused.content
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 503
    settings.METRICS_TOKEN = "c" * 32
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "c" * 32).status_code == 200


@pytest.mark.django_db
def test_without_a_token_only_direct_private_requests_are_served(settings):
    from django.test import Client

    settings.METRICS_TOKEN = ""
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.4.0.12").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="93.184.216.34").status_code == 403
    # Through a proxy the real client is unknown: refused even from the proxy's private address.
    assert client.get("/metrics", REMOTE_ADDR="10.4.0.12", HTTP_X_FORWARDED_FOR="93.184.216.34").status_code == 403


@pytest.mark.django_db
def test_a_failing_database_leaves_out_only_the_database_gauges(settings, caplog):
    from django.db import connection
    from django.test import Client

    settings.METRICS_TOKEN = ""
    Client().get("/no-such-page")
    assert ("platform_jobs", (("status", "completed"),)) in scrape()
    # The jobs table is gone for a moment (the test's transaction puts it back): the aggregate fails.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE generation_job RENAME TO generation_job_away")
    samples = scrape()
    assert not any(name in ("platform_jobs", "platform_queue_depth", "platform_registration_backlog",
                            "platform_spend_usd_total") for name, _labels in samples)
    assert value(samples, "platform_http_requests_total", method="GET", route="<unmatched>", status="404") >= 1
    assert "database gauges left out of this scrape" in caplog.text
    # The connection is still usable afterwards (the failure was rolled back to its savepoint).
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE generation_job_away RENAME TO generation_job")
    assert ("platform_jobs", (("status", "completed"),)) in scrape()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_gauges_read_every_organization_under_row_level_security(tenant_a, tenant_b,
                                                                         django_capture_on_commit_callbacks):
    for tenant in (tenant_a, tenant_b):
        project = tenant.project("Counted")
        with tenant_scope(tenant.organization), django_capture_on_commit_callbacks(execute=True):
            services.job_create(organization=tenant.organization, actor=Actor(user=tenant.owner),
                                project_id=project.pk, topic="Lanterns over a night market",
                                options={"duration_s": 6, "resolution": "480p", "shots": 2})
    samples = scrape()
    assert sum(value(samples, "platform_jobs", status=s) for s in ("pending", "style_detection")) == 2
    assert value(samples, "platform_queue_depth", queue="cpu") == 2


MULTIPROCESS_CHILD = """
import django, sys
django.setup()
from config.metrics import HTTP_REQUESTS, WEBSOCKET_CONNECTIONS, exposition
HTTP_REQUESTS.labels("GET", "multiprocess-test", "200").inc()
WEBSOCKET_CONNECTIONS.inc()
if sys.argv[1] == "scrape":
    sys.stdout.write(exposition(database=True).decode())
"""


@pytest.mark.django_db(transaction=True)
def test_multiprocess_mode_adds_up_the_processes_and_forgets_the_dead_ones(tmp_path, tenant_a):
    import subprocess
    import sys

    from generation.tests.live import ROOT, platform_env

    env = platform_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"), DJANGO_SETTINGS_MODULE="config.settings")
    for mode in ("record", "scrape"):
        result = subprocess.run([sys.executable, "-c", MULTIPROCESS_CHILD, mode], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    samples = {}
    for family in text_string_to_metric_families(result.stdout):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert value(samples, "platform_http_requests_total", method="GET", route="multiprocess-test", status="200") == 2
    assert value(samples, "platform_websocket_connections") == 1  # the first process exited: its count is gone
    assert ("platform_jobs", (("status", "completed"),)) in samples  # the database gauges, once
