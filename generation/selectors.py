"""Reads of the generation app."""
from __future__ import annotations

from django.db.models import QuerySet

from accounts.audit import Actor
from config.errors import Conflict
from config.tenancy import scoped_object
from generation.error_codes import GenerationErrors
from generation.models import Artifact, Job, JobEvent, Stage, StepStatus
from generation.pipeline import steps as pipeline
from rights.models import Content


class RightsHeld(Conflict):
    code = GenerationErrors.RIGHTS_HOLD

    def __init__(self):
        super().__init__("The job is held for a possible infringement: an operator must release it first.",
                         code=self.code)


def job_list(*, status: str = "", project_id=None) -> QuerySet[Job]:
    queryset = Job.objects.select_related("project", "created_by").order_by("-created_at")
    if status:
        queryset = queryset.filter(status=status)
    if project_id:
        queryset = queryset.filter(project_id=project_id)
    return queryset


def job_detail(*, job_id) -> Job:
    return Job.objects.select_related("project", "created_by").prefetch_related("steps__artifact").get(pk=job_id)


def job_shots(job: Job) -> list[dict]:
    """The storyboard's shots with edits applied and the state of their frame and clip steps."""
    steps = {(s.stage, s.shot): s for s in job.steps.all()}
    storyboard = steps.get((Stage.STORYBOARD, 0))
    if storyboard is None or storyboard.artifact is None:
        return []
    shots = []
    for number in range(1, pipeline.shots_of(job) + 1):
        frame, clip = steps[(Stage.FRAME, number)], steps[(Stage.CLIP, number)]
        shot = pipeline.effective_shot(job, storyboard.artifact.data, number)
        shot.update(frame_status=frame.status, clip_status=clip.status, edited=str(number) in job.shot_edits,
                    has_frame=frame.artifact_id is not None and frame.status == "succeeded")
        shots.append(shot)
    return shots


def job_file(job: Job, kind: str, shot: int = 0):
    """The file behind a job's download: for the video, the current run's protected file once the rights
    stages made it (the watermarked, signed file is what leaves the platform), else its composed one; the
    thumbnail; a shot's first frame. None when there is none yet. While the job is held for a possible
    infringement its video and thumbnail are served to no one (RightsHeld, 409 `rights_hold`): they are
    the copy in question, and an operator has not released it yet."""
    if kind in ("video", "thumbnail", *SUBTITLE_KINDS) and pipeline.rights_on_hold(job):
        raise RightsHeld()
    if kind == "video":
        compose = job_composed_video(job)
        if compose is None:
            return None
        # Matched by the composed video it was made from: a shot edit recomposes, and the content
        # protected from the earlier video is no longer this run's output.
        content = (Content.objects.filter(job=job, original_sha256=compose.content_hash).exclude(protected="")
                   .order_by("-created_at").first())
        if content is not None:
            return content.protected
        return compose.file or None
    artifact = job_artifact(job, kind, shot)
    return artifact.file if artifact is not None and artifact.file else None


def job_composed_video(job: Job) -> Artifact | None:
    """The video composed by the job's current graph; None until its compose step succeeds (again, after a
    shot edit). `job.output` is set only on completion, so it cannot say which video is awaiting approval."""
    step = next((s for s in job.steps.all() if s.stage == Stage.COMPOSE and s.shot == 0), None)
    if step is None or step.status != StepStatus.SUCCEEDED or step.artifact is None or not step.artifact.file:
        return None
    return step.artifact


SUBTITLE_KINDS = ("srt", "vtt")  # the composed video's subtitles, kept beside it (run_compose)


def job_artifact(job: Job, kind: str, shot: int = 0) -> Artifact | None:
    """The current composed video, its thumbnail or subtitles (`srt`, `vtt`), or a shot's first frame."""
    if kind == "video":
        return job_composed_video(job)
    if kind in SUBTITLE_KINDS:
        compose = job_composed_video(job)
        artifact_id = ((compose.data or {}).get("subtitle_artifacts") or {}).get(kind) if compose else None
        return Artifact.objects.filter(pk=artifact_id).first() if artifact_id else None
    if kind == "thumbnail":
        compose = job_composed_video(job)
        artifact_id = None
        if compose is not None:
            artifact_id = (compose.data or {}).get("thumbnail_artifact")
            if not artifact_id and job.output.get("video_artifact") == str(compose.pk):
                artifact_id = job.output.get("thumbnail_artifact")
    else:
        step = job.steps.filter(stage=Stage.FRAME, shot=shot, status="succeeded").first()
        artifact_id = step.artifact_id if step else None
    return Artifact.objects.filter(pk=artifact_id).first() if artifact_id else None


def job_events_after(*, job_id, after: int = 0, limit: int = 200) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job_id=job_id, id__gt=after).order_by("id")[:limit])


def access_job(actor: Actor | None, job_id) -> Job:
    """The job of the active organization with its steps and artifacts, or NotFound."""
    return scoped_object(Job.objects.select_related("project", "created_by").prefetch_related("steps__artifact"),
                         job_id, what="job")
