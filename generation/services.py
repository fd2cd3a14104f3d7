"""Writes of the generation app: start a job, cancel, retry, edit or regenerate a shot, approve."""
from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import Organization
from config.errors import Conflict, DomainError, NotFound
from generation import events, review
from generation.budgets import budget_check
from generation.error_codes import GenerationErrors
from generation.models import TERMINAL_JOB_STATUSES, Job, JobStatus, Stage, Step, StepStatus
from generation.pipeline import steps as pipeline
from generation.pipeline.stages import provider_settings
from generation.policy import ModerationUnavailable, content_policy_check, policy_for
from generation.providers.base import ProviderError, StageContext
from generation.providers.offline.voice import NO_VOICE
from generation.providers.openai.client import MEDIA_KINDS, estimate_media_cost, price
from generation.providers.openai.text import estimate_cost, moderate
from generation.references import SHOT_REFERENCE, references_validate, shot_reference_validate
from projects.models import Project
from projects.schemas import CAMERA_MOVEMENTS, STYLE_NAMES
from projects.templates import template_for_job
from rights.error_codes import RightsErrors

# voice: "auto" (or empty) narrates in the voice of the storyboard's language, "none" asks for no narration,
# any other value names a voice (generation.providers.offline.voice.voices()).
OPTION_DEFAULTS = {"duration_s": 30, "aspect_ratio": "16:9", "resolution": "720p", "shots": 8, "voice": "auto",
                   "language": "auto"}
VOICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,20}(\+[A-Za-z0-9_-]{1,10})?")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
RESOLUTIONS = ("480p", "720p", "1080p")
LANGUAGES = ("auto", "en", "zh")  # "auto": Chinese when the topic is written in CJK ideographs, else English
LIMITS = {"duration_s": (5, 300), "shots": (1, 24)}


def job_options(*, template_settings: dict, options: dict) -> dict:
    """The job's options: the request's, else the template's, else the defaults; validated."""
    merged = {key: options.get(key, template_settings.get(key, default)) for key, default in OPTION_DEFAULTS.items()}
    errors = {}
    for key, (low, high) in LIMITS.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            errors[key] = [f"a number from {low} to {high}"]
    if merged["aspect_ratio"] not in ASPECT_RATIOS:
        errors["aspect_ratio"] = [f"one of {', '.join(ASPECT_RATIOS)}"]
    if merged["resolution"] not in RESOLUTIONS:
        errors["resolution"] = [f"one of {', '.join(RESOLUTIONS)}"]
    if not isinstance(merged["voice"], str) or not (merged["voice"] == "" or VOICE_NAME.fullmatch(merged["voice"])):
        errors["voice"] = ["auto (the voice of the job's language), none (no narration) or a voice name such as "
                           "en, en+f3 or cmn (letters, digits, - and _, at most 31 characters)"]
    if merged["language"] not in LANGUAGES:
        errors["language"] = [f"one of {', '.join(LANGUAGES)}"]
    if not errors and merged["duration_s"] / merged["shots"] < 1:
        errors["shots"] = ["each shot needs at least one second"]
    if errors:
        raise DomainError("Some options are invalid.", fields={"options": errors})
    merged["shots"] = int(merged["shots"])
    merged["fps"] = 24
    return merged


def _request_hash(**request) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def job_estimate(*, job: Job) -> Decimal:
    """Up-front cost from the providers' prices; offline costs nothing."""
    total = Decimal("0")
    for stage in (Stage.STYLE, Stage.SCRIPT, Stage.STORYBOARD):
        name = pipeline.provider_chain(job, "text")[0]
        if name == "openai":
            total += estimate_cost(stage, job.options["duration_s"], job.options["shots"],
                                   provider_settings(job.organization_id, name))
    # The media kinds whose first provider bills: an image per shot, the seconds of video, the narration.
    for kind in MEDIA_KINDS:
        if kind == "voice" and str(job.options.get("voice") or "auto").lower() == NO_VOICE:
            continue
        if pipeline.provider_chain(job, kind)[0] == "openai":
            settings = provider_settings(job.organization_id, "openai")
            total += estimate_media_cost(kind, job.options["duration_s"], job.options["shots"], settings)
            if kind == "video" and (job.template_snapshot.get("settings") or {}).get("recurring_character"):
                total += price(settings, "per_character")  # the one character made from shot 1's clip
    return total


def job_create(*, organization: Organization, actor: Actor, project_id, topic: str, style: str = "",
               template_id=None, options: dict | None = None, idempotency_key: str = "", priority: int = 5) -> tuple[Job, bool]:
    """Start a job; returns (job, created). The same Idempotency-Key returns the first job."""
    options = options or {}
    request_hash = _request_hash(project=str(project_id), topic=topic, style=style, template=str(template_id or ""),
                                 options=options)
    if idempotency_key:
        existing = Job.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.request_hash != request_hash:
                raise Conflict("This Idempotency-Key was used for a different request.",
                               code=GenerationErrors.IDEMPOTENCY_MISMATCH)
            return existing, False
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise NotFound("No such project.", fields={"project": ["not found"]})
    if style and style not in STYLE_NAMES:
        raise DomainError("Unknown style.", fields={"style": [f"one of {', '.join(STYLE_NAMES)}"]})
    snapshot = {}
    template_version = None
    if template_id:
        # A public template of another studio gives only the snapshot (never a cross-tenant key).
        template_version, snapshot = template_for_job(organization=organization, template_id=template_id)
    template_settings = snapshot.get("settings", {})
    job_opts = job_options(template_settings=template_settings, options=options)
    references = references_validate(organization_id=organization.pk, value=options.get("references"))
    if references:  # the studio's assets the job builds on (generation.references)
        job_opts["references"] = references
    job = Job(organization=organization, project=project, topic=topic.strip(), style=style or template_settings.get(
        "style", ""), options=job_opts,
        template=template_version, template_snapshot=snapshot, idempotency_key=idempotency_key,
        request_hash=request_hash, priority=priority,
        created_by=actor.user if actor.user and actor.user.is_authenticated else None,
        created_by_key=actor.api_key)
    _policy_check_topic(job)
    job.estimated_cost = job_estimate(job=job)

    try:
        with transaction.atomic():
            # Inside the transaction: the check locks the policy row, so concurrent jobs queue up.
            budget_check(organization=organization, user=job.created_by, estimated_cost=job.estimated_cost)
            job.save()
            pipeline.steps_create(job)
            audit_record(actor=actor, action="job.create", target=job,
                         after={"topic": job.topic, "project": str(project.pk), "options": job.options})
            events.job_event(job, "status", {"status": job.status})
            transaction.on_commit(lambda: pipeline.job_advance(job.pk, job.organization_id))
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won
            return Job.objects.get(idempotency_key=idempotency_key), False
        raise
    return job, True


def _policy_check_topic(job: Job) -> None:

    moderation = None
    policy = policy_for(job.organization_id)
    if policy.moderation_provider == "openai":
        ctx = StageContext(organization_id=job.organization_id, job_id="", options={}, prompts={}, work_dir=None,
                           settings=provider_settings(job.organization_id, "openai"))

        def moderation(text):
            # Unreachable or unconfigured (no openai credentials): refuse the job for now, in the
            # API's error shape, rather than wave the topic through or answer a bare 500.
            try:
                return moderate(text, ctx)
            except ProviderError as exc:
                raise ModerationUnavailable(f"The moderation service could not check the topic: {exc}") from exc
    content_policy_check(organization_id=job.organization_id, texts={"topic": job.topic}, moderation=moderation)


def _locked(job: Job) -> Job:
    return Job.objects.select_for_update().get(pk=job.pk)


@transaction.atomic
def job_cancel(*, job: Job, actor: Actor) -> Job:
    job = _locked(job)
    if job.status in TERMINAL_JOB_STATUSES:
        raise Conflict(f"The job is already {job.status}.", code=GenerationErrors.JOB_FINISHED)
    job.steps.filter(status__in=[StepStatus.BLOCKED, StepStatus.QUEUED, StepStatus.RUNNING]).update(
        status=StepStatus.CANCELLED, lease_owner="", lease_expires_at=None)
    previous = job.status
    job.status, job.finished_at = JobStatus.CANCELLED, timezone.now()
    job.save(update_fields=["status", "finished_at"])
    audit_record(actor=actor, action="job.cancel", target=job, before={"status": previous},
                 after={"status": job.status})
    events.job_event(job, "status", {"status": job.status, "previous": previous})
    return job


@transaction.atomic
def job_retry(*, job: Job, actor: Actor) -> Job:
    """Resume a failed or cancelled job at the steps that did not finish."""
    job = _locked(job)
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict("Only a failed or cancelled job can be retried.", code=GenerationErrors.JOB_NOT_RETRYABLE)
    job.steps.exclude(status=StepStatus.SUCCEEDED).update(
        status=StepStatus.BLOCKED, attempts=0, provider_index=0, error=None, available_at=None, lease_owner="",
        lease_expires_at=None)
    previous = job.status
    job.status, job.error, job.finished_at = JobStatus.RETRYING, None, None
    job.save(update_fields=["status", "error", "finished_at"])
    audit_record(actor=actor, action="job.retry", target=job, before={"status": previous},
                 after={"status": job.status})
    events.job_event(job, "status", {"status": job.status, "previous": previous})
    transaction.on_commit(lambda: pipeline.job_advance(job.pk, job.organization_id))
    return job


SHOT_EDITABLE = {"description": str, "dialogue": str, "camera_movement": str, "duration_s": (int, float),
                 SHOT_REFERENCE: str}


def _shot_step(job: Job, stage: str, number: int) -> Step:
    if not 1 <= number <= pipeline.shots_of(job):
        raise NotFound(f"The job has no shot {number}.")
    return job.steps.get(stage=stage, shot=number)


def _editable(job: Job) -> None:
    if job.status == JobStatus.CANCELLED:
        raise Conflict("The job was cancelled.", code=GenerationErrors.JOB_CANCELLED)
    storyboard = job.steps.get(stage=Stage.STORYBOARD, shot=0)
    if storyboard.status != StepStatus.SUCCEEDED:
        raise Conflict("The storyboard is not ready yet.", code=GenerationErrors.STORYBOARD_NOT_READY)


def rerun_from_shots(job: Job) -> None:
    """Put every shot and later step back to blocked; digests decide what really reruns."""
    stages = [Stage.FRAME, Stage.CLIP, Stage.COMPOSE, Stage.REVIEW, Stage.PROTECT, Stage.REGISTER]
    job.steps.filter(stage__in=stages).update(status=StepStatus.BLOCKED, attempts=0, provider_index=0, error=None,
                                              available_at=None, lease_owner="", lease_expires_at=None)
    job.status, job.error, job.finished_at, job.approved_at, job.approved_by = (
        JobStatus.IMAGE_GENERATION, None, None, None, None)
    job.save(update_fields=["status", "error", "finished_at", "approved_at", "approved_by", "shot_edits",
                            "pending_changes"])
    transaction.on_commit(lambda: pipeline.job_advance(job.pk, job.organization_id))


@transaction.atomic
def shot_edit(*, job: Job, number: int, changes: dict, actor: Actor) -> Job:
    job = _locked(job)
    _editable(job)
    _shot_step(job, Stage.FRAME, number)
    errors = {}
    for key, value in changes.items():
        if key not in SHOT_EDITABLE or isinstance(value, bool) or not isinstance(value, SHOT_EDITABLE[key]):
            errors[key] = ["cannot be edited" if key not in SHOT_EDITABLE else "wrong type"]
    if "camera_movement" in changes and changes["camera_movement"] not in CAMERA_MOVEMENTS:
        errors["camera_movement"] = [f"one of {', '.join(CAMERA_MOVEMENTS)}"]
    if "duration_s" in changes and not errors.get("duration_s") and not 0.5 <= changes["duration_s"] <= 120:
        errors["duration_s"] = ["from 0.5 to 120 seconds"]
    for key in ("description", "dialogue"):
        if isinstance(changes.get(key), str) and len(changes[key]) > 2000:
            errors[key] = ["at most 2000 characters"]
    if errors or not changes:
        raise DomainError("The shot changes are invalid.", fields=errors or {"non_field_errors": ["nothing to change"]})
    if SHOT_REFERENCE in changes:  # the shot's own image asset ("" for none)
        changes = {**changes, SHOT_REFERENCE: shot_reference_validate(organization_id=job.organization_id,
                                                                      value=changes[SHOT_REFERENCE])}
    from generation.policy import content_policy_check

    content_policy_check(organization_id=job.organization_id,
                         texts={f"storyboard shot {number}": f"{changes.get('description', '')} "
                                                            f"{changes.get('dialogue', '')}"})
    before = dict(job.shot_edits.get(str(number), {}))
    job.shot_edits = {**job.shot_edits, str(number): {**before, **changes}}
    review.change_note(job, {"shot": number, "change": "edited", "fields": sorted(changes), "by": _who(actor),
                             "user": _user_pk(actor)})
    rerun_from_shots(job)
    audit_record(actor=actor, action="job.shot_edit", target=job, before={str(number): before},
                 after={str(number): job.shot_edits[str(number)]})
    events.job_event(job, "shot.edited", {"shot": number, "changes": changes})
    return job


@transaction.atomic
def shot_regenerate(*, job: Job, number: int, actor: Actor) -> Job:
    job = _locked(job)
    _editable(job)
    for stage in (Stage.FRAME, Stage.CLIP):
        step = _shot_step(job, stage, number)
        step.regeneration += 1
        step.save(update_fields=["regeneration"])
    review.change_note(job, {"shot": number, "change": "regenerated", "by": _who(actor), "user": _user_pk(actor)})
    rerun_from_shots(job)
    audit_record(actor=actor, action="job.shot_regenerate", target=job, after={"shot": number})
    events.job_event(job, "shot.regenerating", {"shot": number})
    return job


def _who(actor: Actor) -> str:
    if actor.user is not None and actor.user.is_authenticated:
        return actor.user.email
    return f"API key {actor.api_key.name}" if actor.api_key is not None else "system"


def _user_pk(actor: Actor):
    return actor.user.pk if actor.user is not None and actor.user.is_authenticated else None


@transaction.atomic
def job_approve(*, job: Job, actor: Actor, version: int | None = None, note: str = "") -> Job:
    """Approve the job's current version (review.decision_approve: the template's rule, any or all assigned
    reviewers, decides when the job goes on to protection)."""
    job = _locked(job)
    if pipeline.rights_on_hold(job):
        # It waits for an operator's decision on a possible infringement, which no approval replaces.
        raise Conflict("The job is held for a possible infringement of another studio's content; an operator "
                       "must release it.", code=GenerationErrors.RIGHTS_HOLD)
    job = review.decision_approve(job=job, actor=actor, version=version, note=note)
    transaction.on_commit(lambda: pipeline.job_advance(job.pk, job.organization_id))
    return job


@transaction.atomic
def job_request_changes(*, job: Job, actor: Actor, version: int | None = None, note: str = "") -> Job:
    """Ask for changes to the current version: the job goes back to editing (status `changes_requested`)."""
    job = review.decision_request_changes(job=_locked(job), actor=actor, version=version, note=note)
    transaction.on_commit(lambda: pipeline.job_advance(job.pk, job.organization_id))
    return job


@transaction.atomic
def version_restore(*, job: Job, number: int, actor: Actor) -> Job:
    """Make an earlier version current again, as a new version pointing at the same files (no re-render)."""
    job = _locked(job)
    _editable(job)
    review.version_restore_prepare(job=job, number=number, actor=actor)
    rerun_from_shots(job)
    audit_record(actor=actor, action="job.version_restore", target=job, after={"version": number})
    return job


@transaction.atomic
def job_rights_release(*, job: Job, actor: Actor, note: str = "") -> Job:
    """An operator decided a possible infringement is not one: registration goes ahead."""
    job = _locked(job)
    if not pipeline.rights_on_hold(job):
        raise Conflict("The job has no infringement hold.", code=RightsErrors.NO_RIGHTS_HOLD)
    job.rights_hold = {**job.rights_hold, "cleared_at": timezone.now().isoformat(), "note": note[:500],
                       "cleared_by": actor.user.email if actor.user and actor.user.is_authenticated else ""}
    job.save(update_fields=["rights_hold"])
    audit_record(actor=actor, action="job.rights_release", target=job, after={"note": note[:500]})
    events.job_event(job, "rights.released", {"by": job.rights_hold["cleared_by"]})
    transaction.on_commit(lambda: pipeline.job_advance(job.pk, job.organization_id))
    return job
