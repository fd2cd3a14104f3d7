"""`manage.py sweep`, the scheduler process: one round requeues dead workers' steps of every
organization; the loop touches its heartbeat, serves its metrics, and stops cleanly on SIGTERM."""
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.audit import Actor
from config.tenancy import tenant_scope
from generation import services
from generation.models import Step, StepStatus
from generation.tests.live import ROOT, free_port, platform_env


def running_step_of_dead_worker(tenant, django_capture_on_commit_callbacks):
    project = tenant.project("Sweep")
    with tenant_scope(tenant.organization), django_capture_on_commit_callbacks(execute=True):
        job, _ = services.job_create(organization=tenant.organization, actor=Actor(user=tenant.owner),
                                     project_id=project.pk, topic="A harbour at dawn",
                                     options={"duration_s": 8, "resolution": "480p", "shots": 2})
    with tenant_scope(tenant.organization):
        step = Step.objects.filter(job=job, status=StepStatus.QUEUED).first()
        Step.objects.filter(pk=step.pk).update(status=StepStatus.RUNNING, lease_owner="dead-worker", attempts=1,
                                               lease_expires_at=timezone.now() - timedelta(seconds=5))
    return step


def test_sweep_once_requeues_expired_steps_of_every_organization(tenant_a, tenant_b,
                                                                 django_capture_on_commit_callbacks, capsys):
    step_a = running_step_of_dead_worker(tenant_a, django_capture_on_commit_callbacks)
    step_b = running_step_of_dead_worker(tenant_b, django_capture_on_commit_callbacks)

    call_command("sweep", "--once")

    assert "requeued 2 steps" in capsys.readouterr().out
    for tenant, step in ((tenant_a, step_a), (tenant_b, step_b)):
        with tenant_scope(tenant.organization):
            step.refresh_from_db()
        assert (step.status, step.lease_owner, step.lease_expires_at) == (StepStatus.QUEUED, "", None)


@pytest.mark.django_db(transaction=True)
def test_sweep_loop_touches_heartbeat_serves_metrics_and_stops_on_sigterm(tmp_path):
    heartbeat = tmp_path / "sweep.alive"
    metrics_port = free_port()
    process = subprocess.Popen([sys.executable, "manage.py", "sweep", "--interval", "0.5", "--heartbeat",
                                str(heartbeat)], cwd=ROOT, env=platform_env(WORKER_METRICS_PORT=metrics_port,
                                                                          WORKER_METRICS_ADDR="127.0.0.1"),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not heartbeat.exists():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "no sweep round within 60 s"
            time.sleep(0.2)
        first = heartbeat.stat().st_mtime
        while heartbeat.stat().st_mtime == first:  # a second round: it loops
            assert time.monotonic() < deadline, "no second round"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            assert b"# TYPE platform_chain_errors_total counter" in response.read()
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output
    assert time.monotonic() - stopped_at < 15
    assert "stopped after" in output
