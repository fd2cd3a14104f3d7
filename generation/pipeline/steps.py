"""The job graph and its scheduler: which steps exist, when each may run, what it digests to,
and how a worker claims, runs and finishes one.

Workers hold a lease on the step they run and renew it; a worker that dies lets the lease expire,
and `steps_requeue_expired` puts the step back in the queue. A step's result is committed only by
the lease holder, so a step completes once even when two workers raced for it. Everything here
is idempotent: calling `job_advance` twice changes nothing the second time.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q
from django.utils import timezone

from config.tenancy import dangerously_unscoped, tenant_scope
from generation import events, media
from generation.error_codes import GenerationErrors
from generation.models import (
    TERMINAL_JOB_STATUSES,
    Artifact,
    Job,
    JobStatus,
    Stage,
    Step,
    StepStatus,
)
from generation.pipeline.specs import EVERY_SHOT, FIRST_SHOT, ONE, SAME_SHOT, SPEC, STAGE_SPECS
from generation.policy import policy_for
from generation.providers import provider_class, provider_queue
from generation.queue.dispatch import steps_dispatch
from generation.review import changes_requested, version_record
from generation.references import logo_reference, music_reference, reference_sha256, shot_image_reference

logger = logging.getLogger(__name__)



def shots_of(job: Job) -> int:
    return int(job.options.get("shots", 8))


def dependencies(step: Step, steps: dict, job: Job) -> list[Step]:
    """The steps whose outputs `step` consumes: its stage's `needs`, in order, then its `character_needs` when
    `job` keeps a recurring character (`recurring_character`). `steps` maps (stage, shot) to Step."""
    spec = SPEC[step.stage]
    needs = spec.needs + (spec.character_needs if recurring_character(job, step) else ())
    found = []
    for stage, which in needs:
        if which == ONE:
            found.append(steps[(stage, 0)])
        elif which == SAME_SHOT:
            found.append(steps[(stage, step.shot)])
        elif which == FIRST_SHOT:
            if step.shot > 1:
                found.append(steps[(stage, 1)])
        else:
            assert which == EVERY_SHOT, which
            found += sorted((value for (s, _), value in steps.items() if s == stage), key=lambda other: other.shot)
    return found


def steps_create(job: Job) -> list[Step]:
    """Create the job's graph: one row per (stage, shot)."""
    rows, position = [], 0
    for spec in STAGE_SPECS:
        shots = range(1, shots_of(job) + 1) if spec.per_shot else [0]
        for shot in shots:
            position += 1
            rows.append(Step(organization_id=job.organization_id, job=job, stage=spec.stage, shot=shot,
                             position=position, priority=job.priority))
    return Step.objects.bulk_create(rows)


# --- providers per step -------------------------------------------------------------------------


def provider_chain(job: Job, kind: str) -> list[str]:
    """The ordered provider names for a kind: the template's, else the organization's, else offline."""
    template_providers = (job.template_snapshot.get("settings") or {}).get("providers") or {}
    chain = template_providers.get(kind) or job.options.get("providers", {}).get(kind)
    if not chain:
        chain = (policy_for(job.organization_id).providers or {}).get(kind)
    return list(chain or ["offline"])


def step_provider_name(job: Job, step: Step) -> str:
    kind = SPEC[step.stage].kind
    if kind is None:
        return "platform"
    if step.stage == Stage.STYLE and job.style:
        return "catalogue"
    chain = provider_chain(job, kind)
    return chain[min(step.provider_index, len(chain) - 1)]


def recurring_character(job: Job, step: Step) -> bool:
    """Whether `step` is a clip of a job that keeps one recurring character: its template asks for it
    (`recurring_character`) and the step's video provider makes characters (`makes_characters`: openai). The
    first shot's clip then makes the character, and the later clips wait for that clip and feature it."""
    if step.stage != Stage.CLIP or not (job.template_snapshot.get("settings") or {}).get("recurring_character"):
        return False
    return bool(getattr(provider_class("video", step_provider_name(job, step)), "makes_characters", False))


def step_queue(job: Job, step: Step) -> str:
    kind = SPEC[step.stage].kind
    if kind is None:
        return SPEC[step.stage].queue
    name = step_provider_name(job, step)
    if name == "catalogue":
        return "cpu"

    return provider_queue(kind, name)


# --- digests ------------------------------------------------------------------------------------


def effective_shot(job: Job, storyboard: dict, number: int) -> dict:
    """Shot `number` of the storyboard with the producer's edits applied."""
    shot = dict(storyboard["shots"][number - 1])
    shot.update(job.shot_edits.get(str(number), {}))
    return shot


def _hash(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def step_params(job: Job, step: Step, inputs: dict[tuple, Artifact]) -> dict:
    """Everything that determines the step's output, besides the upstream content hashes."""
    options = job.options
    prompts = (job.template_snapshot.get("settings") or {}).get("prompts") or {}
    # The organization: providers may make its output differ from another's for the same request (the
    # offline renderer seeds with it, so studios never get byte-identical animatics).
    params = {"stage": step.stage, "provider": step_provider_name(job, step), "regeneration": step.regeneration,
              "prompt": prompts.get(step.stage, ""), "organization": job.organization_id}
    if step.stage == Stage.STYLE:
        params.update(topic=job.topic, style=job.style)
    elif step.stage in (Stage.SCRIPT, Stage.STORYBOARD):
        params.update(topic=job.topic, duration_s=options["duration_s"], shots=shots_of(job))
        if options.get("language", "auto") != "auto":  # "auto" follows from the topic; keeps older digests
            params["language"] = options["language"]
    elif step.stage in (Stage.FRAME, Stage.CLIP):
        storyboard = inputs[(Stage.STORYBOARD, 0)].data
        params.update(shot=effective_shot(job, storyboard, step.shot), topic=job.topic,
                      resolution=options["resolution"],
                      aspect_ratio=options["aspect_ratio"], fps=options.get("fps", 24))
        if recurring_character(job, step):  # only then, so that other jobs keep their digests
            params["recurring_character"] = True
        reference = shot_image_reference(job, params["shot"]) if step.stage == Stage.FRAME else ""
        if reference:  # the asset's bytes, so a replaced or another asset reruns the frame (and what follows)
            params["reference"] = reference_sha256(job.organization_id, reference)
    elif step.stage == Stage.COMPOSE:
        storyboard = inputs[(Stage.STORYBOARD, 0)].data
        params.update(
            shots=[effective_shot(job, storyboard, n) for n in range(1, shots_of(job) + 1)],
            resolution=options["resolution"], aspect_ratio=options["aspect_ratio"], fps=options.get("fps", 24),
            voice=options.get("voice", ""),
            burn_subtitles=bool((job.template_snapshot.get("settings") or {}).get("burn_subtitles", True)),
        )
        look = (job.template_snapshot.get("settings") or {}).get("subtitle_style") or {}
        look = {**media.SUBTITLE_STYLE, **look}
        if params["burn_subtitles"] and look != media.SUBTITLE_STYLE:  # the default look keeps older digests
            params["subtitle_style"] = look
        logo, placement = logo_reference(job)
        if logo:
            params.update(logo=reference_sha256(job.organization_id, logo), logo_placement=placement)
        if music_reference(job):
            params["music"] = reference_sha256(job.organization_id, music_reference(job))
        voices = provider_chain(job, "voice")
        if voices != ["offline"]:  # who narrates (the offline default keeps older digests)
            params["voice_providers"] = voices
    elif step.stage == Stage.REVIEW:
        params.update(duration_s=options["duration_s"], resolution=options["resolution"],
                      aspect_ratio=options["aspect_ratio"], audio_required=bool(options.get("voice")))
    return params


def step_digest(job: Job, step: Step, inputs: dict[tuple, Artifact]) -> str:
    upstream = sorted(f"{stage}:{shot}:{artifact.content_hash}" for (stage, shot), artifact in inputs.items())
    return _hash({"params": step_params(job, step, inputs), "inputs": upstream})


# --- scheduling ---------------------------------------------------------------------------------


@dataclass
class Advance:
    dispatched: list[str]
    changed: bool


def _load_graph(job: Job) -> dict[tuple, Step]:
    return {(step.stage, step.shot): step for step in job.steps.select_related("artifact").all()}


def job_advance(job_id, organization_id: int) -> Advance:
    """Move every step whose inputs are ready forward: reuse an artifact with the same digest, or
    queue it. Then recompute the job's status and progress. Dispatches after commit.
    Runs from commit callbacks, so it activates the job's tenant scope itself."""
    dispatched: list[str] = []
    with tenant_scope(organization_id), transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status in TERMINAL_JOB_STATUSES and job.status != JobStatus.COMPLETED:
            return Advance([], False)
        steps = _load_graph(job)
        limit = settings.JOB_SHOT_CONCURRENCY
        in_flight = sum(1 for s in steps.values()
                        if s.stage in (Stage.FRAME, Stage.CLIP) and s.status in (StepStatus.QUEUED, StepStatus.RUNNING))
        changed = True
        while changed:
            changed = False
            for step in sorted(steps.values(), key=lambda s: s.position):
                if step.status != StepStatus.BLOCKED:
                    continue
                deps = dependencies(step, steps, job)
                if any(dep.status != StepStatus.SUCCEEDED for dep in deps):
                    continue
                if step.stage == Stage.PROTECT and job.template_snapshot.get("settings", {}).get(
                    "approval_required"
                ) and job.approved_at is None:
                    continue
                if step.stage == Stage.REGISTER and rights_on_hold(job):
                    continue
                inputs = {(dep.stage, dep.shot): dep.artifact for dep in deps}
                digest = step_digest(job, step, inputs)
                existing = Artifact.objects.filter(digest=digest).first()
                if existing is not None:
                    step.status, step.artifact, step.reused, step.input_digest = (
                        StepStatus.SUCCEEDED, existing, True, digest)
                    step.provider = step.provider or step_provider_name(job, step)
                    step.finished_at = timezone.now()
                    step.save(update_fields=["status", "artifact", "reused", "input_digest", "provider",
                                             "finished_at"])
                    events.job_event(job, "step.finished", step_summary(step))
                    changed = True
                    continue
                if step.stage in (Stage.FRAME, Stage.CLIP):
                    if in_flight >= limit:
                        continue
                    in_flight += 1
                step.status, step.input_digest, step.queued_at = StepStatus.QUEUED, digest, timezone.now()
                step.queue, step.reused = step_queue(job, step), False
                step.save(update_fields=["status", "input_digest", "queued_at", "queue", "reused"])
                dispatched.append(str(step.pk))
        version_record(job, steps)
        _job_refresh_state(job, steps)
        if dispatched:
            steps_dispatch(dispatched)
    return Advance(dispatched, bool(dispatched))


def _job_refresh_state(job: Job, steps: dict[tuple, Step]) -> None:
    """Status from the least advanced unfinished step; progress from weighted finished steps."""
    ordered = sorted(steps.values(), key=lambda s: s.position)
    total = sum(SPEC[s.stage].weight for s in ordered)
    done = sum(SPEC[s.stage].weight for s in ordered if s.status == StepStatus.SUCCEEDED)
    progress = round(done / total, 4) if total else 0.0
    unfinished = [s for s in ordered if s.status != StepStatus.SUCCEEDED]
    old_status = job.status
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return
    if not unfinished:
        status, message = JobStatus.COMPLETED, "Completed"
    else:
        head = unfinished[0]
        status = SPEC[head.stage].job_status
        if head.stage == Stage.PROTECT and head.status == StepStatus.BLOCKED and job.approved_at is None and \
                job.template_snapshot.get("settings", {}).get("approval_required"):
            # A reviewer's request for changes sends it back to editing until the next version renders.
            status = JobStatus.CHANGES_REQUESTED if changes_requested(job) else JobStatus.AWAITING_APPROVAL
        if head.stage == Stage.REGISTER and head.status == StepStatus.BLOCKED and rights_on_hold(job):
            status = JobStatus.AWAITING_APPROVAL
        message = progress_message(job, head, steps)
    fields = []
    if status != job.status:
        job.status = status
        fields.append("status")
        if status == JobStatus.COMPLETED:
            job.finished_at = timezone.now()
            job.output = job_output(job, steps)
            job.cost = sum((s.cost for s in ordered), Decimal("0"))
            fields += ["finished_at", "output", "cost"]
    if progress != job.progress or message != job.progress_message:
        job.progress, job.progress_message = progress, message
        fields += ["progress", "progress_message"]
    if fields:
        job.save(update_fields=fields)
        if "status" in fields:
            events.job_event(job, "status", {"status": job.status, "previous": old_status})
        events.job_event(job, "progress", {"progress": job.progress, "message": job.progress_message})
        if job.status == JobStatus.COMPLETED and old_status != JobStatus.COMPLETED:
            events.job_event(job, "completed", {"output": job.output})
            events.job_webhook(job, "job.completed")


def progress_message(job: Job, head: Step, steps: dict) -> str:
    if head.stage in (Stage.FRAME, Stage.CLIP):
        total = shots_of(job)
        done = sum(1 for (stage, _), s in steps.items() if stage == head.stage and s.status == StepStatus.SUCCEEDED)
        noun = "frame" if head.stage == Stage.FRAME else "clip"
        return f"Generating {noun} {min(done + 1, total)} of {total}"
    if head.status == StepStatus.BLOCKED and head.stage == Stage.PROTECT:
        return "Changes requested" if changes_requested(job) else "Waiting for approval"
    if head.status == StepStatus.BLOCKED and head.stage == Stage.REGISTER and rights_on_hold(job):
        owners = ", ".join(sorted({m["owner"] for m in job.rights_hold.get("matches", [])}))
        return f"Possible infringement of content registered by {owners}: waiting for an administrator"
    return SPEC[head.stage].verb


def job_output(job: Job, steps: dict) -> dict:
    compose = steps[(Stage.COMPOSE, 0)].artifact
    data = (compose.data or {}) if compose else {}
    return {"video_artifact": str(compose.pk) if compose else None,
            "thumbnail_artifact": data.get("thumbnail_artifact"), "metadata": data.get("metadata", {})}


def rights_on_hold(job: Job) -> bool:
    return bool(job.rights_hold.get("matches")) and not job.rights_hold.get("cleared_at")


def step_summary(step: Step) -> dict:
    return {"step": str(step.pk), "stage": step.stage, "shot": step.shot or None, "status": step.status,
            "provider": step.provider, "reused": step.reused, "attempts": step.attempts,
            "cost": str(step.cost)}


# --- claiming and leases (workers run these unscoped: they serve every tenant) ------------------


FAIR_SHARE_WINDOW_S = 60


def lease_seconds() -> int:
    return settings.STEP_LEASE_S


def step_claim_next(*, queue: str, worker: str) -> Step | None:
    """Claim the next step of `queue` for `worker`, fairly between organizations: the organization
    with the fewest running steps goes first, then the one served least in the last minute, then
    the job priority, then the oldest step. So one studio's hundred jobs can't starve another's one.
    A suspended organization's steps are not claimed: they wait, queued, and `steps_resume` wakes
    them when it is reinstated (its steps already running finish)."""
    now = timezone.now()
    with dangerously_unscoped():
        ready = Step.objects.filter(queue=queue, status=StepStatus.QUEUED, organization__is_suspended=False).filter(
            Q(available_at__isnull=True) | Q(available_at__lte=now))
        heads = list(ready.values("organization_id").annotate(oldest=Min("queued_at"), top=Max("priority")))
        if not heads:
            return None
        running = dict(Step.objects.filter(status=StepStatus.RUNNING).values_list("organization_id")
                       .annotate(n=Count("id")).values_list("organization_id", "n"))
        served = dict(Step.objects.filter(started_at__gte=now - timedelta(seconds=FAIR_SHARE_WINDOW_S))
                      .values_list("organization_id").annotate(n=Count("id")).values_list("organization_id", "n"))
        heads.sort(key=lambda h: (running.get(h["organization_id"], 0), served.get(h["organization_id"], 0),
                                  -h["top"], h["oldest"]))
        for head in heads:
            candidates = ready.filter(organization_id=head["organization_id"]).order_by("-priority", "queued_at")
            for step_id in candidates.values_list("id", flat=True)[:5]:
                claimed = Step.objects.filter(pk=step_id, status=StepStatus.QUEUED).update(
                    status=StepStatus.RUNNING, lease_owner=worker, lease_expires_at=now + timedelta(
                        seconds=lease_seconds()), attempts=F("attempts") + 1, started_at=now)
                if claimed:
                    return Step.objects.select_related("job").get(pk=step_id)
    return None


def step_renew_lease(*, step_id, worker: str) -> bool:
    """Extend the lease; False when the lease was lost or the job was cancelled (stop working)."""
    with dangerously_unscoped():
        renewed = Step.objects.filter(pk=step_id, lease_owner=worker, status=StepStatus.RUNNING).exclude(
            job__status=JobStatus.CANCELLED).update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds()))
    return bool(renewed)


def step_release(*, step_id, worker: str) -> bool:
    """Hand a claimed step back to its queue now (its worker is shutting down), so that another
    worker claims it without waiting for the lease to expire. The interrupted attempt is not counted.
    False when `worker` no longer held it (it finished, or its lease was lost)."""
    with dangerously_unscoped():
        released = Step.objects.filter(pk=step_id, lease_owner=worker, status=StepStatus.RUNNING).update(
            status=StepStatus.QUEUED, lease_owner="", lease_expires_at=None, queued_at=timezone.now(),
            available_at=None, attempts=F("attempts") - 1)
    if released:
        logger.warning("step %s released by %s (shutting down); queued again", step_id, worker)
        steps_dispatch([str(step_id)])
    return bool(released)


def steps_requeue_expired() -> list[str]:
    """Steps whose worker stopped renewing the lease go back to the queue (or fail when out of tries),
    and queued steps nobody claimed for a while are woken again."""
    now = timezone.now()
    requeued = []
    with dangerously_unscoped():
        expired = list(Step.objects.filter(status=StepStatus.RUNNING, lease_expires_at__lt=now).values_list(
            "id", "job_id", "attempts"))
        for step_id, job_id, attempts in expired:
            if attempts >= settings.STEP_MAX_ATTEMPTS:
                step_fail(step_id=step_id, worker=None, error={
                    "code": GenerationErrors.LEASE_EXPIRED,
                    "message": "The worker running this step stopped responding too often."})
                continue
            if Step.objects.filter(pk=step_id, status=StepStatus.RUNNING, lease_expires_at__lt=now).update(
                    status=StepStatus.QUEUED, lease_owner="", lease_expires_at=None, queued_at=now):
                logger.warning("step %s lease expired; queued again", step_id)
                requeued.append(str(step_id))
        # A queued step whose wake-up message was lost (broker outage, a message spent on another
        # step) is woken again; extra wake-ups are harmless, since a claim takes only ready steps.
        # A suspended organization's steps are left asleep (no worker would take them).
        stale = Step.objects.filter(status=StepStatus.QUEUED, organization__is_suspended=False,
                                    queued_at__lt=now - timedelta(seconds=settings.STEP_REDISPATCH_S)).filter(
            Q(available_at__isnull=True) | Q(available_at__lte=now))
        stale_ids = [str(step_id) for step_id in stale.values_list("id", flat=True)[:500]]
        if stale_ids:
            Step.objects.filter(pk__in=stale_ids, status=StepStatus.QUEUED).update(queued_at=now)
            requeued += stale_ids
    if requeued:
        steps_dispatch(requeued)
    return requeued


def steps_resume(*, organization_id: int) -> list[str]:
    """Wake the queued steps of an organization that was just reinstated: while it was suspended
    workers passed them over, and their wake-up messages were spent. Extra wake-ups are harmless."""
    now = timezone.now()
    with dangerously_unscoped():
        waiting = Step.objects.filter(organization_id=organization_id, status=StepStatus.QUEUED).filter(
            Q(available_at__isnull=True) | Q(available_at__lte=now))
        ids = [str(step_id) for step_id in waiting.values_list("id", flat=True)]
        if ids:
            Step.objects.filter(pk__in=ids, status=StepStatus.QUEUED).update(queued_at=now)
    if ids:
        steps_dispatch(ids)
    return ids


def jobs_advance_stalled(*, limit: int = 100) -> list[str]:
    """Advance again the unfinished jobs that nothing moves: no step queued or running. A step's
    success commits before its job advances (a commit callback, its own transaction), so a database
    outage or a worker's death between the two leaves the next steps blocked, or a finished job not
    completed. Advancing is idempotent; jobs waiting for a person are left alone, and so are jobs
    with a step finished in the last STEP_REDISPATCH_S (their own advance is on its way)."""
    recently = timezone.now() - timedelta(seconds=settings.STEP_REDISPATCH_S)
    with dangerously_unscoped():
        moving = Step.objects.filter(job_id=OuterRef("pk")).filter(
            Q(status__in=[StepStatus.QUEUED, StepStatus.RUNNING]) | Q(finished_at__gte=recently))
        stalled = list(Job.objects.exclude(status__in=[*TERMINAL_JOB_STATUSES, JobStatus.AWAITING_APPROVAL,
                                                        JobStatus.CHANGES_REQUESTED])
                       .filter(~Exists(moving), created_at__lt=recently)
                       .values_list("id", "organization_id")[:limit])
    advanced = []
    for job_id, organization_id in stalled:
        if job_advance(job_id, organization_id).dispatched or _job_completed(job_id):
            logger.warning("job %s was stalled; advanced again", job_id)
            advanced.append(str(job_id))
    return advanced


def _job_completed(job_id) -> bool:
    with dangerously_unscoped():
        return Job.objects.filter(pk=job_id, status=JobStatus.COMPLETED).exists()


@transaction.atomic
def step_complete(*, step_id, worker: str, kind: str, content_hash: str, data=None, file_name: str = "",
                  file_obj=None, size: int = 0, cost: Decimal = Decimal("0"), usage: dict | None = None,
                  provider: str = "", provider_ms: int = 0) -> bool:
    """Commit a step's output. Only the lease holder can; returns False when the lease was lost."""
    step = Step.objects.select_for_update().select_related("job").get(pk=step_id)
    if step.status != StepStatus.RUNNING or step.lease_owner != worker:
        logger.warning("step %s finished by %s after losing its lease; result dropped", step_id, worker)
        return False
    artifact = Artifact.objects.filter(digest=step.input_digest).first()
    if artifact is None:
        artifact = Artifact(organization_id=step.organization_id, digest=step.input_digest, kind=kind,
                            content_hash=content_hash, data=data, size=size)
        if file_obj is not None:
            artifact.file.save(file_name, file_obj, save=False)
        artifact.save()
    now = timezone.now()
    step.status, step.artifact, step.finished_at = StepStatus.SUCCEEDED, artifact, now
    step.cost, step.usage, step.provider, step.error = cost, usage or {}, provider, None
    step.lease_owner, step.lease_expires_at = "", None
    step.provider_ms = provider_ms
    step.total_ms = int((now - step.started_at).total_seconds() * 1000) if step.started_at else 0
    step.runs += 1
    step.save()
    events.job_event(step.job, "step.finished", step_summary(step))
    transaction.on_commit(lambda: job_advance(step.job_id, step.organization_id))
    return True


@transaction.atomic
def step_fail(*, step_id, worker: str | None, error: dict, retryable: bool = False) -> None:
    """Record a failure: retry with backoff, fall back to the next provider, or fail the job."""
    step = Step.objects.select_for_update().select_related("job").get(pk=step_id)
    if worker is not None and (step.status != StepStatus.RUNNING or step.lease_owner != worker):
        return
    job = step.job
    now = timezone.now()
    step.error, step.lease_owner, step.lease_expires_at = error, "", None
    kind = SPEC[step.stage].kind
    chain = provider_chain(job, kind) if kind else []
    if retryable and step.attempts < settings.STEP_MAX_ATTEMPTS:
        delay = settings.STEP_RETRY_BACKOFF_S * (2 ** (step.attempts - 1))
        step.status, step.available_at, step.queued_at = StepStatus.QUEUED, now + timedelta(seconds=delay), now
        step.save()
        events.job_event(job, "step.retrying", {**step_summary(step), "error": error, "delay_s": delay})

        steps_dispatch([str(step.pk)], countdown=delay)
        return
    if kind and step.provider_index + 1 < len(chain) and not error.get("refused"):
        step.provider_index += 1
        step.attempts, step.status, step.available_at = 0, StepStatus.BLOCKED, None
        step.save()
        events.job_event(job, "step.fallback", {**step_summary(step), "error": error,
                                                "next_provider": chain[step.provider_index]})
        transaction.on_commit(lambda: job_advance(job.pk, job.organization_id))
        return
    step.status, step.finished_at = StepStatus.FAILED, now
    step.save()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error={**error, "stage": step.stage,
                                         "shot": step.shot or None}, finished_at=now)
    job.refresh_from_db()
    events.job_event(job, "error", {**step_summary(step), "error": error})
    events.job_webhook(job, "job.failed")
