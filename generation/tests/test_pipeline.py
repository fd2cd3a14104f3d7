"""The pipeline driven in-process (workers are tested live in test_workers.py): completion, reuse
by digest when one shot is edited or regenerated, fallback, cancel, retry, approval, fair share."""
import itertools
import subprocess
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from accounts.audit import Actor
from config.media import ffmpeg_exe, probe
from config.tenancy import dangerously_unscoped, tenant_scope
from generation import services
from generation.models import Artifact, GenerationPolicy, Job, JobEvent, ProviderCredential, Stage, Step
from generation.pipeline import steps as pipeline
from generation.queue.worker import run_until_idle
from projects import templates

SMALL = {"duration_s": 8, "resolution": "480p", "shots": 3}


_names = itertools.count(1)


def start(tenant, run_commits, options=SMALL, topic="A lighthouse keeper restores the lamp before a storm",
          **extra) -> Job:
    project = tenant.project(f"Project {next(_names)}")
    with tenant_scope(tenant.organization):
        job, _ = run_commits(lambda: services.job_create(
            organization=tenant.organization, actor=Actor(user=tenant.owner), project_id=project.pk,
            topic=topic, options=dict(options), **extra))
    return job


def drain(run_commits) -> int:
    total = 0
    while True:
        ran = run_commits(run_until_idle)
        total += ran
        if not ran:
            return total


def runs_by_step(tenant, job) -> dict:
    with tenant_scope(tenant.organization):
        return {(s.stage, s.shot): s.runs for s in Step.objects.filter(job=job)}


def reload(tenant, job) -> Job:
    with tenant_scope(tenant.organization):
        return Job.objects.get(pk=job.pk)


def test_job_runs_to_completion_with_a_playable_video(tenant_a, run_commits):
    job = start(tenant_a, run_commits)
    drain(run_commits)
    job = reload(tenant_a, job)
    assert job.status == "completed", job.error
    assert job.progress == 1.0 and job.progress_message == "Completed"
    meta = job.output["metadata"]
    assert meta["video_codec"] == "h264" and (meta["width"], meta["height"]) == (854, 480)
    assert abs(meta["duration_s"] - 8) <= 0.8
    assert all(runs == 1 for runs in runs_by_step(tenant_a, job).values())
    with tenant_scope(tenant_a.organization):
        types = list(JobEvent.objects.filter(job=job).values_list("type", flat=True))
        assert all(check["ok"] for check in job.review)
    assert types[0] == "status" and types[-1] == "completed" and types.count("step.finished") == 3 + 3 + 3 + 4


def test_regenerating_one_of_eight_shots_reruns_only_that_shot_and_what_follows(tenant_a, run_commits):
    job = start(tenant_a, run_commits, options={"duration_s": 8, "resolution": "480p", "shots": 8})
    drain(run_commits)
    before = runs_by_step(tenant_a, job)
    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.shot_regenerate(job=job, number=3, actor=Actor(user=tenant_a.owner)))
    drain(run_commits)
    after = runs_by_step(tenant_a, job)
    rerun = sorted(key for key in after if after[key] != before[key])
    assert rerun == [("clip", 3), ("compose", 0), ("frame", 3), ("protect", 0), ("register", 0), ("review", 0)]
    assert reload(tenant_a, job).status == "completed"


def test_editing_a_shot_reruns_only_that_shot_and_the_edit_is_kept(tenant_a, run_commits):
    job = start(tenant_a, run_commits, options={"duration_s": 8, "resolution": "480p", "shots": 4})
    drain(run_commits)
    before = runs_by_step(tenant_a, job)
    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.shot_edit(job=job, number=2, actor=Actor(user=tenant_a.owner), changes={
            "description": "A close view of the lamp's brass gears", "camera_movement": "zoom_in"}))
    drain(run_commits)
    after = runs_by_step(tenant_a, job)
    assert sorted(k for k in after if after[k] != before[k]) == [
        ("clip", 2), ("compose", 0), ("frame", 2), ("protect", 0), ("register", 0), ("review", 0)]
    job = reload(tenant_a, job)
    assert job.status == "completed" and job.shot_edits["2"]["camera_movement"] == "zoom_in"


def test_failing_provider_falls_back_to_the_next_and_records_which_produced_it(tenant_a, run_commits, settings):
    settings.STEP_RETRY_BACKOFF_S = 0
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True  # so the step fails at connecting, not at the outbound guard
    with tenant_scope(tenant_a.organization):
        GenerationPolicy.objects.create(organization=tenant_a.organization, providers={"text": ["openai", "offline"]})
        ProviderCredential.objects.create(organization=tenant_a.organization, provider="openai", settings={
            "base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout_s": 1, "max_attempts": 1, "backoff_s": 0})
    job = start(tenant_a, run_commits)
    drain(run_commits)
    job = reload(tenant_a, job)
    assert job.status == "completed", job.error
    with tenant_scope(tenant_a.organization):
        style = Step.objects.get(job=job, stage="style")
        kinds = list(JobEvent.objects.filter(job=job).values_list("type", flat=True))
    assert style.provider == "offline" and style.provider_index == 1 and "step.fallback" in kinds


def test_cancel_stops_queued_steps_and_retry_resumes_at_the_unfinished_ones(tenant_a, run_commits):
    job = start(tenant_a, run_commits)
    # Run the first three steps, then cancel.
    from generation.queue.worker import execute_next

    for _ in range(3):
        run_commits(lambda: execute_next("cpu"))
    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.job_cancel(job=job, actor=Actor(user=tenant_a.owner)))
    assert drain(run_commits) == 0
    assert reload(tenant_a, job).status == "cancelled"
    before = runs_by_step(tenant_a, job)
    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.job_retry(job=job, actor=Actor(user=tenant_a.owner)))
    drain(run_commits)
    after = runs_by_step(tenant_a, job)
    assert reload(tenant_a, job).status == "completed"
    assert [after[key] for key in [("style", 0), ("script", 0), ("storyboard", 0)]] == [1, 1, 1]
    assert before[("style", 0)] == 1 and all(runs == 1 for runs in after.values())


def test_template_asking_for_approval_waits_for_a_reviewer(tenant_a, run_commits):
    from projects.templates import template_create

    with tenant_scope(tenant_a.organization):
        template = template_create(organization=tenant_a.organization, name="Needs approval", description="",
                                   settings={**SMALL, "approval_required": True}, actor=Actor(user=tenant_a.owner))
    job = start(tenant_a, run_commits, template_id=template.pk)
    drain(run_commits)
    job = reload(tenant_a, job)
    assert job.status == "awaiting_approval" and job.template_snapshot["version"] == 1
    reviewer = tenant_a.client("reviewer")
    response = run_commits(lambda: reviewer.post(f"/api/v1/jobs/{job.pk}/approve"))
    assert response.status_code == 200, response.json()
    drain(run_commits)
    assert reload(tenant_a, job).status == "completed"


def test_fair_share_one_studios_many_jobs_do_not_starve_anothers_one_job(tenant_a, tenant_b, run_commits):
    tiny = {"duration_s": 5, "resolution": "480p", "shots": 1}
    a_jobs = [start(tenant_a, run_commits, options=tiny) for _ in range(4)]
    b_job = start(tenant_b, run_commits, options=tiny, topic="Desert caravans crossing dunes under stars")
    finished_order = []
    while True:
        ran = run_commits(lambda: run_until_idle(limit=1))
        if not ran:
            break
        with dangerously_unscoped():
            for job in Job.objects.filter(status="completed").exclude(pk__in=finished_order):
                finished_order.append(job.pk)
    assert len(finished_order) == 5
    # B's only job, submitted last, finishes before most of A's.
    assert finished_order.index(b_job.pk) <= 1, finished_order
    assert {j.pk for j in a_jobs} | {b_job.pk} == set(finished_order)


def test_same_request_in_another_studio_is_its_own_video_not_a_held_copy(tenant_a, tenant_b, run_commits):
    """Issue 19: the offline renderer made byte-identical animatics for two studios, so the second studio's
    job was held as a copy of the first's. Each studio now gets its own; a real copy is still held
    (rights/tests/test_rightful_owner.py)."""
    job_a = start(tenant_a, run_commits)
    drain(run_commits)
    job_b = start(tenant_b, run_commits)
    drain(run_commits)
    upstream = ["style", "script", "storyboard", "frame", "clip", "compose"]
    with dangerously_unscoped():
        def digests(job):
            return {(s.stage, s.shot): s.input_digest for s in Step.objects.filter(job=job, stage__in=upstream)}

        a, b = digests(job_a), digests(job_b)
        b_artifacts = set(Artifact.objects.filter(organization=tenant_b.organization).values_list("id", flat=True))
        a_artifacts = set(Artifact.objects.filter(organization=tenant_a.organization).values_list("id", flat=True))
        reused_b = Step.objects.filter(job=job_b, reused=True).count()
    # The organization is part of every digest (its output differs), and B computed its own: nothing is
    # shared across tenants.
    assert a.keys() == b.keys() and len(a) >= 6 and not set(a.values()) & set(b.values())
    assert reused_b == 0 and not a_artifacts & b_artifacts
    assert reload(tenant_a, job_a).status == "completed" and reload(tenant_a, job_a).cost == Decimal("0")
    with dangerously_unscoped():
        composed = {job.pk: Step.objects.get(job=job, stage="compose").artifact.content_hash for job in (job_a, job_b)}
    assert composed[job_a.pk] != composed[job_b.pk]
    own = reload(tenant_b, job_b)
    assert own.status == "completed" and not own.rights_hold


def test_a_voiced_job_completes_with_the_bundled_speech_engine(tenant_a, run_commits):
    job = start(tenant_a, run_commits, options={**SMALL, "voice": "narrator"})
    drain(run_commits)
    job = reload(tenant_a, job)
    assert job.status == "completed", job.error
    assert next(check for check in job.review if check["check"] == "audio")["ok"]


def test_a_job_whose_advance_was_lost_is_advanced_again_by_the_sweep(tenant_a, tenant_b, run_commits, settings):
    """A step's success commits before its job advances (a commit callback): a database crash in
    between left the next steps blocked for good. The sweep advances such a job, and only such a job."""
    from generation.pipeline.steps import jobs_advance_stalled

    settings.STEP_REDISPATCH_S = 0
    job = start(tenant_a, run_commits)
    assert run_until_idle(limit=1) == 1  # its commit callbacks never run: the advance is lost
    moving = start(tenant_b, run_commits, topic="A beekeeper moves her hives before the first frost")
    with dangerously_unscoped():
        assert not Step.objects.filter(job=job, status__in=["queued", "running"]).exists()
    assert run_commits(jobs_advance_stalled) == [str(job.pk)]
    assert run_commits(jobs_advance_stalled) == []  # moving again; the other studio's job never was stalled
    drain(run_commits)
    assert reload(tenant_a, job).status == "completed" and reload(tenant_b, moving).status == "completed"


# --- the subtitle look of a template ------------------------------------------------------------

OLD_COMPOSE_PARAMS = {"stage", "provider", "regeneration", "prompt", "organization", "shots", "resolution",
                      "aspect_ratio", "fps", "voice", "burn_subtitles"}


def test_the_compose_digest_holds_the_subtitle_style_only_when_it_is_not_the_default(db):
    template_defaults = templates.template_defaults
    storyboard = SimpleNamespace(data={"shots": [{"number": 1, "duration_s": 5, "dialogue": "Hello."}]},
                                 content_hash="c0ffee")
    inputs = {(Stage.STORYBOARD, 0): storyboard}

    def compose_step(settings):
        job = Job(organization_id=7, options={"duration_s": 5, "resolution": "480p", "aspect_ratio": "16:9",
                                              "shots": 1}, template_snapshot={"settings": settings} if settings else {})
        step = Step(stage=Stage.COMPOSE, shot=0)
        return pipeline.step_params(job, step, inputs), pipeline.step_digest(job, step, inputs)

    older = {key: value for key, value in template_defaults().items() if key != "subtitle_style"}
    params, digest = compose_step(older)  # a template snapshot from before the style existed
    assert set(params) == OLD_COMPOSE_PARAMS
    assert compose_step(template_defaults())[1] == digest == compose_step(None)[1]
    assert compose_step({**older, "subtitle_style": {"size": "medium"}})[1] == digest  # a default spelt out
    top, top_digest = compose_step({**older, "subtitle_style": {"position": "top"}})
    assert top["subtitle_style"] == {**template_defaults()["subtitle_style"], "position": "top"}
    assert top_digest != digest
    assert compose_step({**older, "subtitle_style": {"size": "large"}})[1] not in (digest, top_digest)
    # Nothing is burned in: the look changes nothing, so neither does the digest.
    unburned = compose_step({**older, "burn_subtitles": False})[1]
    assert compose_step({**older, "burn_subtitles": False, "subtitle_style": {"position": "top"}})[1] == unburned


def test_a_templates_subtitle_position_reaches_the_burned_video(tenant_a, run_commits, tmp_path):
    """Two jobs of one topic whose templates differ only in the subtitles' position: the clips are
    reused, the compose steps are not, and each video has its (dark-boxed) subtitles where its template
    put them."""
    videos, digests = {}, {}
    for position in ("top", "bottom"):
        with tenant_scope(tenant_a.organization):
            template = templates.template_create(
                organization=tenant_a.organization, name=f"Subtitles at the {position}",
                actor=Actor(user=tenant_a.owner),
                settings={"duration_s": 5, "shots": 1, "resolution": "480p", "subtitle_style": {"position": position}})
        job = start(tenant_a, run_commits, options={"voice": "none"}, template_id=template.pk)
        drain(run_commits)
        with tenant_scope(tenant_a.organization):
            compose = Step.objects.select_related("artifact").get(job=job, stage="compose")
            assert compose.artifact is not None, reload(tenant_a, job).error
            videos[position] = tmp_path / f"{position}.mp4"
            videos[position].write_bytes(compose.artifact.file.read())
            digests[position] = compose.input_digest
            clip_reused = Step.objects.get(job=job, stage="clip", shot=1).reused
    assert digests["top"] != digests["bottom"] and clip_reused  # the second job reused the first one's clip

    def frame(path: Path) -> np.ndarray:  # the middle of the only shot, in grey levels
        info = probe(path)
        raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "2.5", "-i", str(path), "-frames:v", "1", "-f",
                              "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
        return np.frombuffer(raw, np.uint8).reshape(info["height"], info["width"]).astype(np.float64)

    top, bottom = frame(videos["top"]), frame(videos["bottom"])
    band = top.shape[0] // 4
    # Where a video's subtitles are, the two frames differ; elsewhere they are the same picture.
    assert np.abs(top[band:-band] - bottom[band:-band]).mean() < 2
    assert np.abs(top[:band] - bottom[:band]).mean() > 4 and np.abs(top[-band:] - bottom[-band:]).mean() > 4
    # The box darkens its band: the top video's top band, the bottom video's bottom band.
    assert top[:band].mean() < bottom[:band].mean() and bottom[-band:].mean() < top[-band:].mean()


def test_the_compose_digest_names_the_voice_chain_unless_it_is_the_offline_default(tenant_a):
    storyboard = SimpleNamespace(data={"shots": [{"number": 1, "duration_s": 5, "dialogue": "Hello."}]},
                                 content_hash="c0ffee")
    inputs = {(Stage.STORYBOARD, 0): storyboard}

    def compose_digest(voice_chain):
        providers = {kind: ["offline"] for kind in ("text", "image", "video")}
        job = Job(organization=tenant_a.organization, options={"duration_s": 5, "resolution": "480p",
                                                               "aspect_ratio": "16:9", "shots": 1},
                  template_snapshot={"settings": {"providers": {**providers, "voice": voice_chain}}})
        step = Step(stage=Stage.COMPOSE, shot=0)
        return pipeline.step_params(job, step, inputs), pipeline.step_digest(job, step, inputs)

    offline, offline_digest = compose_digest(["offline"])
    spoken, spoken_digest = compose_digest(["openai", "offline"])
    assert "voice_providers" not in offline and spoken["voice_providers"] == ["openai", "offline"]
    assert spoken_digest != offline_digest  # another narrator never reuses the offline narration's video
