"""Pipeline overhead and offline animatic time, measured against a baseline in the same run.

    .venv/bin/python bench/pipeline.py [--jobs 5] [--workers-concurrency 2]

Runs the embedded mode in a fresh temporary VAR_DIR: the real ASGI server and a real Celery worker
(filesystem broker), driven over HTTP. Prints:
  1. POST -> first step started (the platform's own latency before any provider runs), median/p95;
  2. per step, the time beyond the provider's own (claim, inputs, commit, scheduling), median;
  3. a 30 s, 8-shot, 720p offline animatic through the platform (POST to review done), against the
     baseline: the same providers and compose called directly in one process with no database or
     queue; then the rights stages' time and the whole job's;
  4. what narration and music add (speech, the bed, the mix) to the whole job.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="bench-pipeline-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
    os.environ.pop(name, None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from config.tenancy import dangerously_unscoped  # noqa: E402
from generation.models import Job, Step  # noqa: E402

ANIMATIC = {"duration_s": 30, "resolution": "720p", "shots": 8}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def baseline_animatic(work: Path) -> tuple[float, float]:
    """The same offline animatic with the providers and compose called directly: no platform. Returns the
    whole time (narrated, with its music bed, as the platform's default job) and the part of it that the
    sound adds: speaking the lines, the bed, and compose with them against compose of the silent video."""
    from generation import media
    from generation.music import music_bed
    from generation.providers.base import StageContext
    from generation.providers.offline import OfflineImage, OfflineText, OfflineVideo, OfflineVoice
    from generation.styles import STYLE_CATALOGUE

    started = time.perf_counter()
    ctx = StageContext(organization_id=0, job_id="bench", options={**ANIMATIC, "aspect_ratio": "16:9"}, prompts={},
                       work_dir=work)
    text = OfflineText()
    topic = "A glassblower shapes a blue vase at night"
    style = text.style(topic=topic, catalogue=STYLE_CATALOGUE, ctx=ctx).value
    script = text.script(topic=topic, style=style, duration_s=30, shots=8, ctx=ctx).value
    shots = text.storyboard(script=script, style=style, shots=8, duration_s=30, ctx=ctx).value["shots"]
    clips = []
    for shot in shots:
        frame = work / f"frame-{shot['number']}.png"
        OfflineImage().frame(shot={**shot, "seed": 0}, style=style, out=frame, ctx=ctx)
        clip = work / f"clip-{shot['number']}.mp4"
        OfflineVideo().clip(shot={**shot, "seed": 0}, style=style, frame=frame, fps=24, out=clip, ctx=ctx)
        clips.append(clip)
    width, height = ctx.size
    sound_started = time.perf_counter()
    narration = [OfflineVoice().narrate(text=shot.get("dialogue", ""), voice="en", out=work / f"voice-{n}.wav",
                                        ctx=ctx).value for n, shot in enumerate(shots, start=1)]
    bed = music_bed(work / "music.wav", duration_s=30, style=style.get("name", ""), mood=style.get("mood", ""),
                    seed="bench")
    out = work / "video.mp4"
    media.compose(clips, shots, out, width=width, height=height, fps=24, narration=narration, music=bed)
    sound_s = time.perf_counter() - sound_started
    media.thumbnail(out, work / "thumb.jpg")
    media.review_checks(out, duration_s=30, width=width, height=height, audio_required=True)
    whole_s = time.perf_counter() - started
    silent_started = time.perf_counter()
    media.compose(clips, shots, work / "silent.mp4", width=width, height=height, fps=24)
    silent_s = time.perf_counter() - silent_started
    return whole_s, max(0.0, sound_s - silent_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5, help="jobs timed for POST -> first step")
    args = parser.parse_args()

    from accounts import services as accounts_services
    from accounts.audit import Actor
    from accounts.models import User
    from accounts.roles import SCOPES
    from config.tenancy import tenant_scope
    from generation.tests.live import live_platform
    from projects.services import project_create

    call_command("migrate", verbosity=0)
    owner = User.objects.create_user(email="bench@bench.test", password=None)
    organization = accounts_services.organization_create(name="Bench", slug="bench", owner=owner)
    with tenant_scope(organization):
        project = project_create(organization=organization, name="Bench", actor=Actor(user=owner))
        _key, key = accounts_services.api_key_create(organization=organization, name="bench", scopes=list(SCOPES),
                                                      actor=Actor(scopes=frozenset(SCOPES)))

    work = Path(tempfile.mkdtemp(prefix="bench-work-"))
    print(f"machine: {machine()}")
    with live_platform(work, engine="celery", workers=0, STEP_LEASE_S="60") as live:
        # The benchmark's worker: the same command `make run` starts (threads, concurrency 2).
        from generation.management.commands.runplatform import worker_command

        live.start("worker", worker_command("cpu,gpu,llm,rights,chain", 2))
        time.sleep(3)
        first_step = []
        for index in range(args.jobs):
            posted = time.time()
            status, body = live.call("POST", "/api/v1/jobs", key, {
                "project": str(project.pk), "topic": f"Bench topic {index}",
                "options": {"duration_s": 5, "resolution": "480p", "shots": 1}})
            assert status == 201, body

            def started(job_id=body["id"]):
                with dangerously_unscoped():
                    return Step.objects.filter(job_id=job_id, stage="style").values_list(
                        "started_at", flat=True).first()

            first_step.append(live.wait_for(started, 60, "the first step", interval=0.01).timestamp() - posted)
            live.job_when(key, body["id"], {"completed", "failed"}, timeout=120)

        posted = time.perf_counter()
        status, body = live.call("POST", "/api/v1/jobs", key, {
            "project": str(project.pk), "topic": "A glassblower shapes a blue vase at night", "options": ANIMATIC})
        job = live.job_when(key, body["id"], {"completed", "failed"}, timeout=600)
        platform_s = time.perf_counter() - posted
        assert job["status"] == "completed", job["error"]
        with dangerously_unscoped():
            steps = list(Step.objects.filter(job_id=body["id"]).values("stage", "provider_ms", "total_ms",
                                                                        "queued_at", "started_at", "finished_at"))
            job_row = Job.objects.get(pk=body["id"])
    overhead = [max(0, s["total_ms"] - s["provider_ms"]) for s in steps]
    waits = [(s["started_at"] - s["queued_at"]).total_seconds() * 1000 for s in steps if s["queued_at"]]
    baseline_s, sound_s = baseline_animatic(Path(tempfile.mkdtemp(prefix="bench-baseline-")))

    print(f"\nPOST -> first step started ({args.jobs} jobs): median {statistics.median(first_step) * 1000:.0f} ms, "
          f"p95 {percentile(first_step, 0.95) * 1000:.0f} ms   (target < 1000 ms)")
    print(f"per step beyond the provider ({len(steps)} steps): median {statistics.median(overhead):.0f} ms, "
          f"max {max(overhead):.0f} ms; ready -> started median {statistics.median(waits):.0f} ms")
    review_done = next(s["finished_at"] for s in steps if s["stage"] == "review")
    animatic_s = (review_done - job_row.created_at).total_seconds()
    rights_s = {s["stage"]: s["total_ms"] / 1000 for s in steps if s["stage"] in ("protect", "register")}
    print(f"30 s / 8-shot / 720p offline animatic (through review): platform {animatic_s:.1f} s, "
          f"direct baseline {baseline_s:.1f} s, ratio platform/direct {animatic_s / baseline_s:.2f}   (target < 60 s)")
    print(f"then the rights stages: protect {rights_s.get('protect', 0):.1f} s (watermark every frame, C2PA, "
          f"fingerprints), register {rights_s.get('register', 0):.1f} s; whole job {platform_s:.1f} s from POST")
    print(f"narration and music (speech of 8 lines, the bed, their mix and loudness) add {sound_s:.1f} s: "
          f"{100 * sound_s / platform_s:.1f}% of the whole job   (target < 10%)")
    by_stage: dict[str, list[float]] = {}
    for s in steps:
        by_stage.setdefault(s["stage"], []).append(s["total_ms"] / 1000)
    print("per stage, seconds (steps: sum / longest): " + ", ".join(
        f"{stage} {sum(times):.1f}/{max(times):.1f}" for stage, times in by_stage.items()))
    print(f"whole job POST -> registered {platform_s:.1f} s   (target < 30 s on 2 cores)")
    print(f"output: {job['output']['metadata']}")


if __name__ == "__main__":
    main()
