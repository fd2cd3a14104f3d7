"""Real processes: the ASGI server and queue workers (Celery and Dramatiq) as subprocesses over the
test database, driven through the HTTP API. A worker is killed with SIGKILL mid-step."""
from __future__ import annotations

import subprocess
import sys

import pytest

from config.tenancy import dangerously_unscoped
from generation.models import Artifact, Step
from generation.tests.live import live_platform

pytestmark = pytest.mark.django_db(transaction=True)

SHORT = {"duration_s": 6, "resolution": "480p", "shots": 2}


def ffmpeg_probe(path) -> dict:
    from generation import media

    return media.probe(path)


def start_job(live, key, project, options, topic="A glassblower shapes a blue vase at night"):
    status, body = live.call("POST", "/api/v1/jobs", key, {"project": str(project.pk), "topic": topic,
                                                          "options": options})
    assert status == 201, body
    return body["id"]


def download(live, key, job, tmp_path):
    status, video = live.call("GET", f"/api/v1/jobs/{job['id']}/video", key)
    assert status == 200 and isinstance(video, bytes)
    path = tmp_path / "out.mp4"
    path.write_bytes(video)
    return path


def test_embedded_mode_30_second_720p_job_completes_with_a_real_worker(tenant_a, tmp_path, settings):
    """Must-show: POST returns at once; the job completes; H.264 1280x720, 30 s ±10%, subtitles, motion."""
    if settings.BROKER_URL:
        pytest.skip("the embedded-broker run; the services run covers the brokers below")
    project = tenant_a.project("Launch film")
    _key, plain = tenant_a.key()
    with live_platform(tmp_path, engine="celery", workers=1) as live:
        job_id = start_job(live, plain, project, {"duration_s": 30, "resolution": "720p", "shots": 8})
        job = live.job_when(plain, job_id, {"completed", "failed"}, timeout=240)
        assert job["status"] == "completed", job["error"]
        video = download(live, plain, job, tmp_path)
    meta = ffmpeg_probe(video)
    assert (meta["video_codec"], meta["width"], meta["height"]) == ("h264", 1280, 720)
    assert abs(meta["duration_s"] - 30) <= 3 and meta["audio_codec"] == "aac"
    assert job["output"]["metadata"]["duration_s"] == pytest.approx(meta["duration_s"], abs=0.1)
    assert len(job["shots"]) == 8 and all(shot["dialogue"] for shot in job["shots"])
    assert all(check["ok"] for check in job["review"])


BROKERS = [
    pytest.param("celery", "redis", marks=pytest.mark.redis, id="celery-redis"),
    pytest.param("celery", "rabbitmq", marks=pytest.mark.rabbitmq, id="celery-rabbitmq"),
    pytest.param("dramatiq", "rabbitmq", marks=pytest.mark.rabbitmq, id="dramatiq-rabbitmq"),
]


@pytest.mark.parametrize("engine, broker", BROKERS)
def test_job_completes_through_each_engine_and_broker(engine, broker, tenant_a, tmp_path, settings):
    from django.conf import settings as live_settings

    url = live_settings.REDIS_URL if broker == "redis" else live_settings.BROKER_URL
    if broker == "rabbitmq" and not url.startswith("amqp"):
        pytest.skip("needs rabbitmq")  # conftest turns this into a failure where services are required
    settings.BROKER_URL = url
    project = tenant_a.project(f"{engine} on {broker}")
    _key, plain = tenant_a.key()
    _purge(engine, url)
    with live_platform(tmp_path, engine=engine, workers=1, BROKER_URL=url) as live:
        job_id = start_job(live, plain, project, SHORT)
        job = live.job_when(plain, job_id, {"completed", "failed"}, timeout=180)
    assert job["status"] == "completed", job["error"]
    assert job["output"]["metadata"]["video_codec"] == "h264"


def _purge(engine: str, url: str) -> None:
    """Start from empty queues: drop what earlier runs left on this test broker (wake-ups only)."""
    names = [prefix + queue + suffix for queue in ("cpu", "gpu", "llm", "rights", "chain")
             for prefix in ("", "dq-") for suffix in ("", ".DQ", ".XQ")]
    code = ("from kombu import Connection\n"
            f"with Connection({url!r}) as c:\n"
            f"    for q in {names!r}:\n"
            "        ch = c.channel()\n"
            "        try: ch.queue_delete(q)\n"
            "        except Exception: pass\n")
    subprocess.run([sys.executable, "-c", code], timeout=30, check=False, capture_output=True)


def test_worker_killed_mid_clip_step_the_job_still_completes_once(tenant_a, tmp_path, settings):
    project = tenant_a.project("Resilience")
    _key, plain = tenant_a.key()
    options = {"duration_s": 12, "resolution": "720p", "shots": 2}
    with live_platform(tmp_path, engine="celery", workers=1) as live:
        job_id = start_job(live, plain, project, options)

        def clip_running():
            with dangerously_unscoped():
                return Step.objects.filter(job_id=job_id, stage="clip", status="running").first()

        running = live.wait_for(clip_running, 120, "a clip step to start", interval=0.05)
        live.kill("worker0")  # SIGKILL the whole worker process group, mid-step
        with dangerously_unscoped():
            step = Step.objects.get(pk=running.pk)
        assert step.status == "running" and step.runs == 0
        live.start_worker("worker-new")
        job = live.job_when(plain, job_id, {"completed", "failed"}, timeout=180)
    assert job["status"] == "completed", job["error"]
    with dangerously_unscoped():
        steps = list(Step.objects.filter(job_id=job_id))
        killed = Step.objects.get(pk=running.pk)
        videos = Artifact.objects.filter(organization=tenant_a.organization, kind="video",
                                         digest=Step.objects.get(job_id=job_id, stage="compose").input_digest).count()
    assert all(s.runs == 1 and s.status == "succeeded" for s in steps), [(s.stage, s.shot, s.runs) for s in steps]
    assert killed.attempts == 2
    assert videos == 1
    assert len(list(settings.MEDIA_ROOT.rglob(f"video-{job_id}*.mp4"))) == 1
