"""Graceful shutdown with real worker processes: SIGTERM mid-step hands the step back to the queue at
once (no wait for its lease to expire) and the worker exits 0 within its grace; another worker
finishes the job with every step run to success once. An idle worker stops at once."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest
from django.utils import timezone

from config.tenancy import dangerously_unscoped
from generation.models import Artifact, Step
from generation.tests.live import free_port, live_platform
from generation.tests.test_workers import _purge, start_job

pytestmark = pytest.mark.django_db(transaction=True)

GRACE_S = 1
LEASE_S = 60  # long, so that a claim soon after the SIGTERM can only come from the release
EXIT_MARGIN_S = 8  # the grace, plus stopping the clip, acknowledging and closing connections
IDLE_STOP_S = 5


def sigterm_and_wait(process, limit: float) -> float:
    """SIGTERM the worker's main process only (as Kubernetes does); seconds until it exited."""
    started = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    process.wait(timeout=limit + 30)
    return time.monotonic() - started


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


ENGINES = [
    pytest.param("celery", id="celery"),  # the run's broker: embedded in run 1, RabbitMQ in the services run
    pytest.param("dramatiq", marks=pytest.mark.rabbitmq, id="dramatiq-rabbitmq"),
]


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_mid_step_releases_the_step_and_another_worker_finishes_the_job(engine, tenant_a, tmp_path,
                                                                               settings):
    if engine == "dramatiq" and not settings.BROKER_URL.startswith("amqp"):
        pytest.skip("needs rabbitmq")  # conftest turns this into a failure where services are required
    if settings.BROKER_URL:
        _purge(engine, settings.BROKER_URL)
    project = tenant_a.project(f"Shutdown {engine}")
    _key, plain = tenant_a.key()
    metrics_port = free_port()
    # 24 s clips at 1080p: several seconds of rendering each, well past the 1 s grace (12 s clips at 720p
    # rendered in about a second once the clip encode got faster, so a clip could finish within the grace)
    options = {"duration_s": 48, "resolution": "1080p", "shots": 2}
    with live_platform(tmp_path, engine=engine, workers=1, WORKER_SHUTDOWN_GRACE_S=GRACE_S, STEP_LEASE_S=LEASE_S,
                       LOG_FORMAT="json", WORKER_METRICS_PORT=metrics_port) as live:
        job_id = start_job(live, plain, project, options)

        def clip_running():
            with dangerously_unscoped():
                return Step.objects.filter(job_id=job_id, stage="clip", status="running").first()

        running = live.wait_for(clip_running, 120, "a clip step to start", interval=0.05)
        # The worker serves its own metrics: the steps it finished so far are there.
        exposition = scrape(metrics_port)
        assert 'platform_step_duration_seconds_count{outcome="succeeded",provider="offline",stage="script"} 1.0' \
            in exposition, exposition[-3000:]

        worker0 = live.processes.pop("worker0")
        terminated_at = timezone.now()
        took = sigterm_and_wait(worker0, GRACE_S + EXIT_MARGIN_S)
        assert worker0.returncode == 0, live.logs()
        assert took <= GRACE_S + EXIT_MARGIN_S, f"the worker took {took:.1f} s to stop\n{live.logs()}"
        with dangerously_unscoped():
            released = Step.objects.get(pk=running.pk)
        # Handed back, not left running until its lease expires; the interrupted attempt is not counted.
        assert (released.status, released.lease_owner, released.runs, released.attempts) == ("queued", "", 0, 0), \
            (released.status, released.lease_owner, released.runs, released.attempts)

        live.start_worker("worker-new")

        def reclaimed():
            with dangerously_unscoped():
                step = Step.objects.get(pk=running.pk)
            return step if step.status != "queued" else None

        again = live.wait_for(reclaimed, LEASE_S / 2, "the released step to be claimed again", interval=0.1)
        assert (again.started_at - terminated_at).total_seconds() < LEASE_S / 2
        job = live.job_when(plain, job_id, {"completed", "failed"}, timeout=240)
        assert job["status"] == "completed", job["error"]

        # Idle now: a SIGTERM stops it at once (no step to wait for).
        idle = live.processes.pop("worker-new")
        took_idle = sigterm_and_wait(idle, IDLE_STOP_S)
        assert idle.returncode == 0 and took_idle < IDLE_STOP_S, f"the idle worker took {took_idle:.1f} s to stop"
        print(f"{engine}: stopped {took:.1f} s after SIGTERM mid-step (grace {GRACE_S} s), {took_idle:.1f} s when idle")

    with dangerously_unscoped():
        steps = list(Step.objects.filter(job_id=job_id))
        clip = Step.objects.get(pk=running.pk)
        clips = Artifact.objects.filter(digest=clip.input_digest).count()
        videos = Artifact.objects.filter(organization=tenant_a.organization, kind="video",
                                         digest=Step.objects.get(job_id=job_id, stage="compose").input_digest).count()
    assert all(s.runs == 1 and s.status == "succeeded" for s in steps), [(s.stage, s.shot, s.runs) for s in steps]
    assert clip.attempts == 1 and clips == 1 and videos == 1
    assert len(list(settings.MEDIA_ROOT.rglob(f"video-{job_id}*.mp4"))) == 1

    # The worker's JSON log line for the release carries the job and step ids.
    lines = [json.loads(line) for line in (tmp_path / "logs" / "worker0.log").read_text().splitlines()
             if line.startswith("{")]
    release = [line for line in lines if "released" in line["message"]]
    assert release and release[0]["job_id"] == job_id and release[0]["step_id"] == str(running.pk), lines[-20:]
    assert release[0]["level"] == "WARNING" and release[0]["organization_id"] == str(tenant_a.organization.pk)
