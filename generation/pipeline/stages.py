"""What each stage does with its inputs: call the step's provider, or the platform's own media code,
and hand the output to `pipeline.step_complete`. Runs inside the step's tenant scope."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from django.core.files import File

from accounts.crypto import secret_decrypt
from config.errors import DomainError
from config.media import probe, sha256_file
from generation import media
from generation.error_codes import GenerationErrors
from generation.models import Artifact, Job, ProviderCredential, Stage, Step
from generation.pipeline import steps as pipeline
from generation.pipeline.specs import SPEC
from generation.policy import content_policy_check
from generation.providers import provider_class
from generation.providers.base import ProviderError, ProviderRefused, Result, StageContext
from generation.styles import STYLE_CATALOGUE
from rights.models import Content
from rights.registry import registration_enqueue
from rights.services import content_protect, infringement_matches

logger = logging.getLogger(__name__)


class StageFailed(Exception):
    def __init__(self, code: str, message: str, *, retryable: bool, refused: bool = False):
        super().__init__(message)
        self.error = {"code": code, "message": message, "refused": refused}
        self.retryable = retryable


def provider_settings(organization_id: int, name: str) -> dict:
    credential = ProviderCredential.objects.filter(provider=name).first()
    if credential is None:
        return {}
    values = dict(credential.settings)
    if credential.secret_encrypted:
        values["api_key"] = secret_decrypt(credential.secret_encrypted)
    return values


def _local_copy(artifact: Artifact, work_dir: Path, name: str) -> Path:
    """The artifact's file on local disk (storage may be remote)."""
    target = work_dir / name
    with artifact.file.open("rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target


def _json_hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def step_execute(step: Step, *, worker: str, is_cancelled) -> tuple[str, bool]:
    """Run one claimed step to its end: completed, retried, fallen back, or failed. Returns the provider
    it ran and whether its output was committed (the worker's step metrics)."""
    job = Job.objects.get(pk=step.job_id)
    steps = {(s.stage, s.shot): s for s in job.steps.select_related("artifact")}
    inputs = {(d.stage, d.shot): d.artifact for d in pipeline.dependencies(step, steps)}
    name = pipeline.step_provider_name(job, step)
    work_dir = Path(tempfile.mkdtemp(prefix=f"step-{step.stage}-"))
    prompts = (job.template_snapshot.get("settings") or {}).get("prompts") or {}
    ctx = StageContext(organization_id=job.organization_id, job_id=str(job.pk), options=job.options, prompts=prompts,
                       work_dir=work_dir, settings=provider_settings(job.organization_id, name),
                       is_cancelled=is_cancelled)
    started = time.perf_counter()
    try:
        output = SPEC[step.stage].run(job=job, step=step, inputs=inputs, provider=name, ctx=ctx)
        provider_ms = int((time.perf_counter() - started) * 1000)
        try:
            return name, pipeline.step_complete(step_id=step.pk, worker=worker, provider=name,
                                                provider_ms=provider_ms, **output)
        finally:
            if output.get("file_obj") is not None:
                output["file_obj"].close()
    except StageFailed as exc:
        pipeline.step_fail(step_id=step.pk, worker=worker, error=exc.error, retryable=exc.retryable)
    except ProviderRefused as exc:
        pipeline.step_fail(step_id=step.pk, worker=worker,
                           error={"code": exc.code, "message": str(exc)[:500], "refused": True,
                                  "upstream_status": exc.upstream_status})
    except ProviderError as exc:
        if is_cancelled():
            return name, False
        # The provider's own message (never an endpoint's answer body), its stable code and the HTTP status.
        pipeline.step_fail(step_id=step.pk, worker=worker, retryable=True,
                           error={"code": exc.code, "message": str(exc)[:500], "provider": name,
                                  "upstream_status": exc.upstream_status})
    except Exception as exc:  # a bug or an outage: retried, then the job fails with the reason
        logger.exception("step %s failed", step.pk)
        pipeline.step_fail(step_id=step.pk, worker=worker, retryable=True,
                           error={"code": GenerationErrors.INTERNAL_ERROR,
                                  "message": f"{type(exc).__name__}: {exc}"[:500]})
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return name, False


def _json_output(result: Result) -> dict:
    return {"kind": "json", "data": result.value, "content_hash": _json_hash(result.value),
            "cost": result.cost, "usage": result.usage}


def _file_output(result: Result, kind: str, path: Path, name: str) -> dict:
    return {"kind": kind, "file_obj": File(open(path, "rb")), "file_name": name, "size": path.stat().st_size,
            "content_hash": sha256_file(path), "cost": result.cost, "usage": result.usage}


def _check_policy(job: Job, texts: dict) -> None:

    try:
        content_policy_check(organization_id=job.organization_id, texts=texts)
    except DomainError as exc:
        raise StageFailed(exc.code, exc.message, retryable=False, refused=True) from None


def run_style(*, job, step, inputs, provider, ctx):

    if provider == "catalogue":
        return _json_output(Result({"name": job.style, **STYLE_CATALOGUE[job.style]}))
    return _json_output(provider_class("text", provider)().style(topic=job.topic, catalogue=STYLE_CATALOGUE, ctx=ctx))


def run_script(*, job, step, inputs, provider, ctx):
    style = inputs[(Stage.STYLE, 0)].data
    result = provider_class("text", provider)().script(
        topic=job.topic, style=style, duration_s=float(job.options["duration_s"]), shots=pipeline.shots_of(job),
        ctx=ctx)
    _check_policy(job, {"script": " ".join(
        [result.value.get("title", ""), result.value.get("synopsis", "")]
        + [f"{s.get('description', '')} {s.get('narration', '')} {s.get('dialogue', '')}"
           for s in result.value.get("scenes", [])])})
    return _json_output(result)


def run_storyboard(*, job, step, inputs, provider, ctx):
    result = provider_class("text", provider)().storyboard(
        script=inputs[(Stage.SCRIPT, 0)].data, style=inputs[(Stage.STYLE, 0)].data, shots=pipeline.shots_of(job),
        duration_s=float(job.options["duration_s"]), ctx=ctx)
    shots = result.value["shots"]
    if len(shots) != pipeline.shots_of(job):
        raise StageFailed("bad_storyboard", f"expected {pipeline.shots_of(job)} shots, got {len(shots)}",
                          retryable=True)
    _check_policy(job, {f"storyboard shot {s['number']}": f"{s['description']} {s.get('dialogue', '')}"
                        for s in shots})
    return _json_output(result)


def _shot(job, step, inputs) -> dict:
    shot = pipeline.effective_shot(job, inputs[(Stage.STORYBOARD, 0)].data, step.shot)
    shot["seed"] = step.regeneration
    return shot


def run_frame(*, job, step, inputs, provider, ctx):
    out = ctx.work_dir / "frame.png"
    result = provider_class("image", provider)().frame(
        shot=_shot(job, step, inputs), style=inputs[(Stage.STYLE, 0)].data, out=out, ctx=ctx)
    return _file_output(result, "image", out, f"frame-{step.shot}.png")


def run_clip(*, job, step, inputs, provider, ctx):
    frame = _local_copy(inputs[(Stage.FRAME, step.shot)], ctx.work_dir, "frame.png")
    out = ctx.work_dir / "clip.mp4"
    result = provider_class("video", provider)().clip(
        shot=_shot(job, step, inputs), style=inputs[(Stage.STYLE, 0)].data, frame=frame,
        fps=int(job.options.get("fps", 24)), out=out, ctx=ctx)
    return _file_output(result, "video", out, f"clip-{step.shot}.mp4")


def run_compose(*, job, step, inputs, provider, ctx):

    storyboard = inputs[(Stage.STORYBOARD, 0)].data
    count = pipeline.shots_of(job)
    shots = [pipeline.effective_shot(job, storyboard, n) for n in range(1, count + 1)]
    clips = [_local_copy(inputs[(Stage.CLIP, n)], ctx.work_dir, f"clip-{n}.mp4") for n in range(1, count + 1)]
    narration, cost = None, Decimal("0")
    voice = job.options.get("voice", "")
    if voice:
        narrator = provider_class("voice", pipeline.provider_chain(job, "voice")[0])()
        narration = []
        for shot in shots:
            spoken = narrator.narrate(text=shot.get("dialogue", ""), voice=voice,
                                      out=ctx.work_dir / f"voice-{shot['number']}.wav", ctx=ctx)
            narration.append(spoken.value)
            cost += spoken.cost
    width, height = ctx.size
    out = ctx.work_dir / "video.mp4"
    media.compose(clips, shots, out, width=width, height=height, fps=int(job.options.get("fps", 24)),
                  narration=narration)
    thumbnail = media.thumbnail(out, ctx.work_dir / "thumbnail.jpg")
    metadata = probe(out)
    thumb_artifact, _ = Artifact.objects.get_or_create(
        digest=hashlib.sha256(f"{step.input_digest}:thumbnail".encode()).hexdigest(),
        defaults={"organization_id": job.organization_id, "kind": "image", "content_hash": sha256_file(thumbnail),
                  "size": thumbnail.stat().st_size,
                  "file": File(open(thumbnail, "rb"), name=f"thumbnail-{job.pk}.jpg")})
    output = _file_output(Result(None, cost=cost), "video", out, f"video-{job.pk}.mp4")
    output["data"] = {"metadata": metadata, "thumbnail_artifact": str(thumb_artifact.pk),
                      "narrated": any(path is not None for path in (narration or []))}
    return output


def run_review(*, job, step, inputs, provider, ctx):

    video = _local_copy(inputs[(Stage.COMPOSE, 0)], ctx.work_dir, "video.mp4")
    width, height = ctx.size
    # Narration is required only where a speech engine produced it (none may be installed).
    narrated = bool((inputs[(Stage.COMPOSE, 0)].data or {}).get("narrated"))
    checks = media.review_checks(video, duration_s=float(job.options["duration_s"]), width=width, height=height,
                                 audio_required=bool(job.options.get("voice")) and narrated)
    Job.objects.filter(pk=job.pk).update(review=checks)
    failed = [check for check in checks if not check["ok"]]
    if failed:
        raise StageFailed("review_failed", "; ".join(f"{c['check']}: {c['detail']}" for c in failed),
                          retryable=False, refused=True)
    return _json_output(Result({"checks": checks}))


def run_protect(*, job, step, inputs, provider, ctx):
    """Watermark every frame, sign the content credential, fingerprint; look for infringement."""

    video_artifact = inputs[(Stage.COMPOSE, 0)]
    existing = Content.objects.filter(job=job, original_sha256=video_artifact.content_hash).first()
    if existing is None:  # a rerun after a crash finds the content it already made
        source = _local_copy(video_artifact, ctx.work_dir, "video.mp4")
        protected = content_protect(
            organization=job.organization, source=source, kind="video", origin="generated", work_dir=ctx.work_dir,
            title=job.topic, job=job, user=job.created_by,
            ingredients=[{"title": f"{stage} of job {job.pk}", "sha256": inputs[key].content_hash}
                         for key, stage in (((Stage.COMPOSE, 0), "composed video"),) if key in inputs])
        content, matches = protected.content, protected.infringements
    else:
        content = existing
        matches = infringement_matches(organization_id=job.organization_id,
                                       hashes=list(content.fingerprints.values_list("phash", flat=True)))
    if matches and not job.rights_hold.get("cleared_at"):
        Job.objects.filter(pk=job.pk).update(rights_hold={"matches": matches})
    return _json_output(Result({"content": str(content.pk), "content_id": content.content_id,
                                "sha256": content.sha256, "infringements": matches}))


def run_register(*, job, step, inputs, provider, ctx):
    """Put the content in the registration outbox; the batcher anchors it on chain shortly after."""

    content = Content.objects.get(pk=inputs[(Stage.PROTECT, 0)].data["content"])
    registration = registration_enqueue(content=content)
    return _json_output(Result({"content_id": content.content_id, "registration": str(registration.pk),
                                "leaf": registration.leaf}))
