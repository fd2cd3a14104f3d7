"""What each stage does with its inputs: call the step's provider, or the platform's own media code,
and hand the output to `pipeline.step_complete`. Runs inside the step's tenant scope."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from django.core.files import File

from config.errors import DomainError
from config.media import probe, sha256_file
from generation import media
from generation.error_codes import GenerationErrors
from generation.models import Artifact, Job, Stage, Step
from generation.music import music_bed
from generation.pipeline import steps as pipeline
from generation.pipeline.specs import SPEC
from generation.policy import content_policy_check
from generation.provider_settings import provider_settings_read
from generation.providers import provider_class
from generation.providers.base import (
    MAKE_CHARACTER,
    RECURRING_CHARACTER,
    REFERENCE_ASSET,
    ProviderError,
    ProviderRefused,
    Result,
    StageContext,
)
from generation.providers.offline.image import luma, palette_colors
from generation.providers.offline.voice import LANGUAGES, NO_VOICE, voice_resolve
from generation.references import logo_reference, music_reference, reference_file, shot_image_reference
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
    return provider_settings_read(organization_id=organization_id, provider=name)


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
    inputs = {(d.stage, d.shot): d.artifact for d in pipeline.dependencies(step, steps, job)}
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
    # The job's topic: two topics whose storyboards read alike still get frames of their own (the offline
    # renderer seeds with it), so each job's video is its own content, protected and registered.
    shot["topic"] = job.topic
    return shot


def _previous_output(job, step) -> Artifact | None:
    """This shot step's output before the producer edited the shot (None when the shot is unedited or never
    ran): an edited shot's providers may build on it (an image edit of the old frame, a remix of the old clip)."""
    if str(step.shot) not in (job.shot_edits or {}) or step.artifact_id is None:
        return None
    artifact = step.artifact
    return artifact if artifact.digest != step.input_digest else None


def run_frame(*, job, step, inputs, provider, ctx):
    out = ctx.work_dir / "frame.png"
    image_provider = provider_class("image", provider)
    shot = _shot(job, step, inputs)
    previous = _previous_output(job, step) if getattr(image_provider, "takes_reference_image", False) else None
    if previous is not None and previous.file:
        # The digest leaves this out on purpose: it follows from the edit, which the digest does hold.
        shot["reference_image"] = str(_local_copy(previous, ctx.work_dir, "reference.png"))
    asset = shot_image_reference(job, shot)
    if asset:  # the studio's product or character image (generation.references); the digest holds its bytes
        shot[REFERENCE_ASSET] = str(reference_file(job.organization_id, asset, ctx.work_dir, "asset"))
    result = image_provider().frame(shot=shot, style=inputs[(Stage.STYLE, 0)].data, out=out, ctx=ctx)
    output = _file_output(result, "image", out, f"frame-{step.shot}.png")
    data = {}
    if result.usage.get("drawn"):  # what the frame shows (the offline painter's record), kept with the artifact
        data["drawn"] = result.usage["drawn"]
    if asset:  # and whether the provider could build on the reference (diffusers' text to image cannot)
        data.update(reference=asset, reference_used=bool(result.usage.get("reference_used")))
    if data:
        output["data"] = data
    return output


def run_clip(*, job, step, inputs, provider, ctx):
    frame = _local_copy(inputs[(Stage.FRAME, step.shot)], ctx.work_dir, "frame.png")
    out = ctx.work_dir / "clip.mp4"
    video_provider = provider_class("video", provider)
    shot = _shot(job, step, inputs)
    previous = _previous_output(job, step) if getattr(video_provider, "remixes_previous", False) else None
    if previous is not None and (previous.data or {}).get("remote_video_id"):
        shot["previous_remote_video_id"] = previous.data["remote_video_id"]
    if pipeline.recurring_character(job, step):
        if step.shot == 1:
            shot[MAKE_CHARACTER] = True
        else:  # the first clip's character; none when that clip was made without one (by a fallback provider)
            first = inputs.get((Stage.CLIP, 1))
            character = ((first.data or {}) if first is not None else {}).get("character")
            if character:
                shot[RECURRING_CHARACTER] = {"id": character["id"], "name": character["name"]}
    result = video_provider().clip(
        shot=shot, style=inputs[(Stage.STYLE, 0)].data, frame=frame,
        fps=int(job.options.get("fps", 24)), out=out, ctx=ctx)
    output = _file_output(result, "video", out, f"clip-{step.shot}.mp4")
    data = {}
    if result.usage.get("remote_video_id"):
        # Kept with the clip, so a later edit of the shot remixes the endpoint's video instead of starting over.
        data["remote_video_id"] = result.usage["remote_video_id"]
    made = result.usage.get("character") if shot.get(MAKE_CHARACTER) else None
    if made:  # kept with the first clip: the later clips, and their retries, refer to it and never make another
        data["character"] = {"id": made["id"], "name": made["name"]}
    if data:
        output["data"] = data
    return output


def _derived_artifact(job, step, name: str, kind: str, path: Path, file_name: str) -> Artifact:
    """A second file of a step (thumbnail, subtitles), addressed by the step's digest and its name."""
    artifact, _ = Artifact.objects.get_or_create(
        digest=hashlib.sha256(f"{step.input_digest}:{name}".encode()).hexdigest(),
        defaults={"organization_id": job.organization_id, "kind": kind, "content_hash": sha256_file(path),
                  "size": path.stat().st_size, "file": File(open(path, "rb"), name=file_name)})
    return artifact


def run_compose(*, job, step, inputs, provider, ctx):

    storyboard = inputs[(Stage.STORYBOARD, 0)].data
    language = storyboard.get("language") if storyboard.get("language") in LANGUAGES else "en"
    count = pipeline.shots_of(job)
    shots = [pipeline.effective_shot(job, storyboard, n) for n in range(1, count + 1)]
    clips = [_local_copy(inputs[(Stage.CLIP, n)], ctx.work_dir, f"clip-{n}.mp4") for n in range(1, count + 1)]
    narration, cost, voiced = None, Decimal("0"), {}
    voice = (job.options.get("voice") or "auto").strip()
    if voice.lower() != NO_VOICE:
        narration, cost, voiced = _narrate(job, shots, voice=voice, language=language, ctx=ctx)
    # The bed follows the style's mood; the style reaches compose through the storyboard, so its step's
    # output is read here rather than made another input (the digest already covers it).
    style_step = job.steps.filter(stage=Stage.STYLE).select_related("artifact").first()
    style = (style_step.artifact.data if style_step and style_step.artifact else None) or {
        "name": job.style, **STYLE_CATALOGUE.get(job.style, {})}
    track = music_reference(job)
    if track:  # the studio's own music track (an audio asset), looped or cut to the video and ducked the same way
        bed = reference_file(job.organization_id, track, ctx.work_dir, "music")
    else:
        bed = music_bed(ctx.work_dir / "music.wav", duration_s=sum(float(s.get("duration_s") or 0) for s in shots),
                        style=str(style.get("name", job.style)), mood=str(style.get("mood", "")),
                        seed=step.input_digest)
    burn = bool((job.template_snapshot.get("settings") or {}).get("burn_subtitles", True))
    subtitle_style = (job.template_snapshot.get("settings") or {}).get("subtitle_style")  # older ones lack it
    width, height = ctx.size
    out = ctx.work_dir / "video.mp4"
    logo, placement = logo_reference(job)
    logo_path = reference_file(job.organization_id, logo, ctx.work_dir, "logo") if logo else None
    composed = media.compose_timed(clips, shots, out, width=width, height=height, fps=int(job.options.get("fps", 24)),
                                   narration=narration, music=bed, subtitles=burn, language=language,
                                   subtitle_style=subtitle_style,
                                   logo=logo_path, logo_placement=placement,
                                   card_color=min(palette_colors(style), key=luma))
    thumbnail = media.thumbnail(out, ctx.work_dir / "thumbnail.jpg")
    metadata = probe(out)
    thumb_artifact = _derived_artifact(job, step, "thumbnail", "image", thumbnail, f"thumbnail-{job.pk}.jpg")
    srt = _derived_artifact(job, step, "subtitles.srt", "subtitles", composed["srt"], f"subtitles-{job.pk}.srt")
    vtt = _derived_artifact(job, step, "subtitles.vtt", "subtitles", composed["vtt"], f"subtitles-{job.pk}.vtt")
    output = _file_output(Result(None, cost=cost), "video", out, f"video-{job.pk}.mp4")
    output["data"] = {"metadata": metadata, "thumbnail_artifact": str(thumb_artifact.pk),
                      "subtitle_artifacts": {"srt": str(srt.pk), "vtt": str(vtt.pk)},
                      "narrated": bool(composed["lines"]), "narration_asked": voice.lower() != NO_VOICE,
                      "language": language, "lines": composed["lines"], "cues": composed["cues"],
                      "loudness_gain_db": composed["loudness_gain_db"], **voiced}
    return output


def _narrate(job, shots: list[dict], *, voice: str, language: str, ctx: StageContext) -> tuple[list, Decimal, dict]:
    """Every shot's line spoken by the job's voice chain: the first provider speaks them all; where it fails
    (an outage past its retries, a refusal) the next one speaks them all again, so one voice narrates the
    whole video. Returns the lines' files, their cost (the failed tries' included) and what to keep with the
    video: the provider that spoke, and the failures fallen back from. Raises the last failure when none can."""
    cost, fallbacks = Decimal("0"), []
    chain = pipeline.provider_chain(job, "voice")
    for index, name in enumerate(chain):
        narrator = provider_class("voice", name)()
        spoken_ctx = dataclasses.replace(ctx, settings=provider_settings(job.organization_id, name))
        lines = []
        try:
            for shot in shots:
                text = shot.get("dialogue", "")
                # The offline engine's voice for the language (Chinese text always gets a Mandarin voice).
                spoken = narrator.narrate(text=text, voice=voice_resolve(voice, language=language, text=text),
                                          out=ctx.work_dir / f"voice-{shot['number']}.wav", ctx=spoken_ctx)
                lines.append(spoken.value)
                cost += spoken.cost
        except ProviderError as exc:
            if index == len(chain) - 1 or ctx.is_cancelled():
                raise
            logger.warning("voice provider %s failed (%s); falling back to %s", name, exc.code, chain[index + 1])
            fallbacks.append({"provider": name, "code": str(exc.code), "upstream_status": exc.upstream_status})
            continue
        return lines, cost, {"voice_provider": name, **({"voice_fallbacks": fallbacks} if fallbacks else {})}
    raise AssertionError("a provider chain is never empty")


# The reason code of a failed review: the first failed check's, in this order.
REVIEW_CODES = {"narration": GenerationErrors.REVIEW_NARRATION_SILENT,
                "timing": GenerationErrors.REVIEW_NARRATION_OVERRUN,
                "loudness": GenerationErrors.REVIEW_LOUDNESS,
                "subtitles": GenerationErrors.REVIEW_SUBTITLE_OVERFLOW}


def run_review(*, job, step, inputs, provider, ctx):

    video = _local_copy(inputs[(Stage.COMPOSE, 0)], ctx.work_dir, "video.mp4")
    width, height = ctx.size
    composed = inputs[(Stage.COMPOSE, 0)].data or {}
    # Narration is asked for unless the job said none; a voice provider that has no engine (Result(None)
    # for every line) still fails the review then: the video would be silent where a voice was promised.
    asked = composed.get("narration_asked", str(job.options.get("voice") or "auto").lower() != NO_VOICE)
    narrated = bool(composed.get("narrated"))
    has_text = any((c.get("lines") for c in composed.get("cues") or []))
    checks = media.review_checks(video, duration_s=float(job.options["duration_s"]), width=width, height=height,
                                 audio_required=asked and narrated, narration_required=asked and has_text,
                                 lines=composed.get("lines"), cues=composed.get("cues"),
                                 loudness_target=media.LOUDNESS_TARGET_LUFS if "lines" in composed else None)
    Job.objects.filter(pk=job.pk).update(review=checks)
    failed = [check for check in checks if not check["ok"]]
    if failed:
        code = next((REVIEW_CODES[c["check"]] for c in failed if c["check"] in REVIEW_CODES),
                    GenerationErrors.REVIEW_FAILED)
        raise StageFailed(code, "; ".join(f"{c['check']}: {c['detail']}" for c in failed),
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
