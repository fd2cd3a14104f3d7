"""Portal pages of a job: the job page and its live fragments, the actions on a job and its shots,
and its files (video, thumbnail, first frames) for members of its organization.

They read through generation.selectors and act through generation.services with the scopes of the
API views (generation/api/jobs.py). An htmx request gets the changed fragments back; any other request
a redirect to the job page. Another organization's job answers 404, like a missing one."""
from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from accounts.decorators import requires_scope
from accounts.portal.base import flash_refused, form_submit, portal_actor
from config.downloads import file_response
from config.errors import DomainError
from generation import selectors, services
from generation.budgets import money
from generation.models import TERMINAL_JOB_STATUSES, Job, JobStatus, Stage, StepStatus
from generation.pipeline import steps as pipeline
from generation.pipeline.specs import STAGE_SPECS
from generation.portal.review_fragments import review_context
from projects.schemas import CAMERA_MOVEMENTS
from rights.selectors import content_rights

CAMERA_LABELS = {
    "static": gettext_lazy("Static"), "pan_left": gettext_lazy("Pan left"), "pan_right": gettext_lazy("Pan right"),
    "tilt_up": gettext_lazy("Tilt up"), "tilt_down": gettext_lazy("Tilt down"), "zoom_in": gettext_lazy("Zoom in"),
    "zoom_out": gettext_lazy("Zoom out"), "tracking": gettext_lazy("Tracking"), "dolly": gettext_lazy("Dolly"),
}
STAGE_LABELS = {spec.stage: spec.label for spec in STAGE_SPECS}
STATUS_LABELS = {
    JobStatus.PENDING: gettext_lazy("Pending"), JobStatus.STYLE_DETECTION: gettext_lazy("Detecting the style"),
    JobStatus.STORY_GENERATION: gettext_lazy("Writing the script"),
    JobStatus.STORYBOARD_BREAKDOWN: gettext_lazy("Storyboarding"),
    JobStatus.IMAGE_GENERATION: gettext_lazy("Drawing frames"),
    JobStatus.VIDEO_GENERATION: gettext_lazy("Animating clips"),
    JobStatus.COMPOSING: gettext_lazy("Composing"), JobStatus.REVIEWING: gettext_lazy("Reviewing"),
    JobStatus.AWAITING_APPROVAL: gettext_lazy("Awaiting approval"), JobStatus.PROTECTING: gettext_lazy("Protecting"),
    JobStatus.CHANGES_REQUESTED: gettext_lazy("Changes requested"),
    JobStatus.REGISTERING: gettext_lazy("Registering"), JobStatus.COMPLETED: gettext_lazy("Completed"),
    JobStatus.FAILED: gettext_lazy("Failed"), JobStatus.CANCELLED: gettext_lazy("Cancelled"),
    JobStatus.RETRYING: gettext_lazy("Retrying"),
}
STEP_STATUS_LABELS = {
    StepStatus.BLOCKED: gettext_lazy("waiting"), StepStatus.QUEUED: gettext_lazy("queued"),
    StepStatus.RUNNING: gettext_lazy("running"), StepStatus.SUCCEEDED: gettext_lazy("done"),
    StepStatus.FAILED: gettext_lazy("failed"), StepStatus.CANCELLED: gettext_lazy("cancelled"),
}


class JobPortalPage(View):
    """The job of the active organization, or 404; `scope` is the API's scope for the same action."""

    scope = "job:read"

    def dispatch(self, request, *args, **kwargs):
        return requires_scope(self.scope)(super().dispatch)(request, *args, **kwargs)

    def job(self, job_id) -> Job:
        return selectors.access_job(portal_actor(self.request), job_id)


def job_context(request, job: Job) -> dict:
    """Everything the job page and its fragments show, from the prefetched steps: a fixed number of
    queries however many shots and steps the job has."""

    steps = list(job.steps.all())
    by_key = {(step.stage, step.shot): step for step in steps}
    shots = selectors.job_shots(job)
    for shot in shots:
        frame = by_key[(Stage.FRAME, shot["number"])]
        # The frame URL changes with the frame, so a regenerated shot is never shown from the cache.
        shot["frame_version"] = frame.artifact_id if shot["has_frame"] else None
        shot["camera_label"] = CAMERA_LABELS.get(shot.get("camera_movement"), shot.get("camera_movement", ""))
        shot["frame_status_label"] = STEP_STATUS_LABELS.get(shot["frame_status"], shot["frame_status"])
        shot["clip_status_label"] = STEP_STATUS_LABELS.get(shot["clip_status"], shot["clip_status"])
    for step in steps:
        step.stage_label = STAGE_LABELS.get(step.stage, step.stage)
        step.status_label = STEP_STATUS_LABELS.get(step.status, step.status)
        step.duration_s = step.total_ms / 1000 if step.total_ms else None
        step.cost_text = money(step.cost)
    scopes = request.scopes
    storyboard = by_key.get((Stage.STORYBOARD, 0))
    status = job.status
    error_stage = (job.error or {}).get("stage")
    video = selectors.job_composed_video(job)
    protect = by_key.get((Stage.PROTECT, 0))
    approval_required = bool((job.template_snapshot.get("settings") or {}).get("approval_required"))
    reviewing = review_context(request, job)
    for shot in shots:  # the open comments against each shot, for the producer editing it
        shot["open_comments"] = reviewing["open_by_shot"].get(shot["number"], [])
    return {
        **reviewing,
        "job": job,
        "steps": steps,
        "shots": shots,
        "script": _artifact_data(by_key.get((Stage.SCRIPT, 0))),
        "style": _artifact_data(by_key.get((Stage.STYLE, 0))),
        "status_label": STATUS_LABELS.get(status, status),
        "error_stage_label": STAGE_LABELS.get(error_stage, error_stage) if error_stage else "",
        "status_labels": {key: str(label) for key, label in STATUS_LABELS.items()},
        "step_status_labels": {key: str(label) for key, label in STEP_STATUS_LABELS.items()},
        "progress_percent": round(job.progress * 100),
        # Money is written as everywhere else in the portal (budgets.money: 12.50, 0.0042).
        "spent": money(job.cost if status == JobStatus.COMPLETED else sum((s.cost for s in steps), Decimal("0"))),
        "estimated_cost": money(job.estimated_cost),
        # A job held for a possible infringement serves no video (selectors.job_file) until released.
        "has_video": video is not None and not pipeline.rights_on_hold(job),
        # The URL changes when the served file does: a recompose, or protection replacing the composed file.
        "video_version": f"{video.pk}-{protect.status}" if video is not None and protect else (video and video.pk),
        "video_metadata": (video.data or {}).get("metadata", {}) if video is not None else {},
        # Subtitles kept beside the video (run_compose), with the language of their track.
        "has_subtitles": bool(video is not None and (video.data or {}).get("subtitle_artifacts")),
        "subtitle_language": "zh-Hans" if video is not None and (video.data or {}).get("language") == "zh" else "en",
        "is_terminal": status in TERMINAL_JOB_STATUSES,
        "can_cancel": "job:create" in scopes and status not in TERMINAL_JOB_STATUSES,
        "can_retry": "job:create" in scopes and status in (JobStatus.FAILED, JobStatus.CANCELLED),
        "can_approve": ("job:approve" in scopes and status in (JobStatus.AWAITING_APPROVAL, JobStatus.CHANGES_REQUESTED)
                        and approval_required and job.approved_at is None),
        "can_edit_shots": ("job:create" in scopes and status != JobStatus.CANCELLED and storyboard is not None
                           and storyboard.status == StepStatus.SUCCEEDED),
        "rights": content_rights(job=job, request=request),
        "ws_path": f"/ws/jobs/{job.pk}",
        # The socket resumes after the events this page already shows, instead of replaying the history.
        "last_event_id": job.events.order_by("-id").values_list("id", flat=True).first() or 0,
    }


def _artifact_data(step):
    if step is None or step.status != StepStatus.SUCCEEDED or step.artifact is None:
        return None
    return step.artifact.data


def _job_url(job_id, anchor: str = "") -> str:
    return reverse("jobs:job-detail", kwargs={"job_id": job_id}) + anchor


def _panel(request, job_id, *, job: Job | None = None, shot_number: int | None = None):
    """The live fragments of the job page, each swapped out of band into its place. After a shot's
    edit, its card comes first (it replaces the form) and the rest of the storyboard stays as it is,
    so another card being edited keeps its form."""
    job = job or selectors.job_detail(job_id=job_id)  # read again after an action changed it
    context = {**job_context(request, job), "oob": True}
    if shot_number is None:
        return render(request, "generation/_job_panel.html", context)
    shot = next(shot for shot in context["shots"] if shot["number"] == shot_number)
    return render(request, "generation/_shot_saved.html", {**context, "shot": shot, "skip_storyboard": True,
                                                           "focus_edit": True})


class JobDetailPage(JobPortalPage):
    def get(self, request, job_id):
        job = self.job(job_id)
        return render(request, "generation/job_detail.html", job_context(request, job))


class JobPanelPage(JobPortalPage):
    """GET /jobs/<id>/panel: what the page's script loads on events, and what it polls without a websocket."""

    def get(self, request, job_id):
        return _panel(request, job_id, job=self.job(job_id))


class JobActionPage(JobPortalPage):
    """A POST that calls one service on the job; the updated fragments (htmx) or a redirect."""

    scope = "job:create"
    done_message = ""

    def act(self, request, job: Job, **kwargs) -> None:
        raise NotImplementedError

    def post(self, request, job_id, **kwargs):
        job = self.job(job_id)
        try:
            self.act(request, job, **kwargs)
        except DomainError as exc:
            flash_refused(request, exc)
        else:
            if self.done_message:
                messages.success(request, self.done_message)
        if request.htmx:
            return _panel(request, job_id)
        return redirect(_job_url(job_id, self.anchor(**kwargs)))

    def anchor(self, **kwargs) -> str:
        return ""


class JobCancelPage(JobActionPage):
    done_message = gettext_lazy("The job was cancelled.")

    def act(self, request, job, **kwargs):
        services.job_cancel(job=job, actor=portal_actor(request))


class JobRetryPage(JobActionPage):
    done_message = gettext_lazy("The job resumes at the steps that did not finish.")

    def act(self, request, job, **kwargs):
        services.job_retry(job=job, actor=portal_actor(request))


class JobApprovePage(JobActionPage):
    scope = "job:approve"

    def act(self, request, job, **kwargs):
        job = services.job_approve(job=job, actor=portal_actor(request))
        if job.approved_at is not None:
            messages.success(request, _("Approved: the video is being protected and registered."))
        else:  # the template asks every assigned reviewer
            messages.success(request, _("Your approval is recorded; the other assigned reviewers must approve too."))


class ShotRegeneratePage(JobActionPage):
    def act(self, request, job, number=0, **kwargs):
        services.shot_regenerate(job=job, number=number, actor=portal_actor(request))
        messages.success(request, _("Shot %(number)d is being regenerated.") % {"number": number})

    def anchor(self, number=0, **kwargs):
        return f"#shot-{number}"


# --- shots -------------------------------------------------------------------------------------


class ShotForm(forms.Form):
    """The fields and limits of the API's ShotIn (generation/api/jobs.py)."""

    description = forms.CharField(label=gettext_lazy("Description"), max_length=2000,
                                  widget=forms.Textarea(attrs={"rows": 4, "autofocus": True}))
    dialogue = forms.CharField(label=gettext_lazy("Dialogue or narration"), max_length=2000, required=False,
                               widget=forms.Textarea(attrs={"rows": 2}))
    camera_movement = forms.ChoiceField(label=gettext_lazy("Camera movement"),
                                        choices=[(name, CAMERA_LABELS.get(name, name)) for name in CAMERA_MOVEMENTS])
    duration_s = forms.FloatField(label=gettext_lazy("Duration (seconds)"), min_value=0.5, max_value=120,
                                  widget=forms.NumberInput(attrs={"step": "0.1"}))

    def changes(self, shot: dict) -> dict:
        """Only what differs from the shot as it is, so an unchanged field never counts as an edit."""
        return {name: value for name, value in self.cleaned_data.items() if value != shot.get(name)}


def _shot(request, job: Job, number: int) -> tuple[dict, dict]:
    context = job_context(request, job)
    for shot in context["shots"]:
        if shot["number"] == number:
            return shot, context
    raise Http404("no such shot")


class ShotCardPage(JobPortalPage):
    """GET /jobs/<id>/shots/<n>/: one shot card (what the edit form's Cancel puts back)."""

    def get(self, request, job_id, number):
        shot, context = _shot(request, self.job(job_id), number)
        if not request.htmx:
            return render(request, "generation/job_detail.html", context)
        return render(request, "generation/_shot_card.html", {**context, "shot": shot, "focus_edit": True})


class ShotEditPage(JobPortalPage):
    """GET: the edit form in place of the card; POST: services.shot_edit, then the card again."""

    scope = "job:create"

    def form_page(self, request, context, shot, form, status=200):
        template = "generation/_shot_form.html" if request.htmx else "generation/shot_edit.html"
        return render(request, template, {**context, "shot": shot, "form": form}, status=status)

    def get(self, request, job_id, number):
        shot, context = _shot(request, self.job(job_id), number)
        form = ShotForm(initial={name: shot.get(name) for name in ShotForm.base_fields},
                        auto_id=f"shot-{number}-%s")
        return self.form_page(request, context, shot, form)

    def post(self, request, job_id, number):
        job = self.job(job_id)
        shot, context = _shot(request, job, number)
        form = ShotForm(request.POST, auto_id=f"shot-{number}-%s")
        form_submit(form, lambda data: services.shot_edit(job=job, number=number, changes=form.changes(shot),
                                                          actor=portal_actor(request)))
        if form.is_valid():
            messages.success(request, _("Shot %(number)d was changed; it is being generated again.")
                             % {"number": number})
            if request.htmx:
                return _panel(request, job_id, shot_number=number)
            return redirect(_job_url(job_id, f"#shot-{number}"))
        # htmx swaps only 2xx answers: the form with its errors comes back as 200 to htmx.
        return self.form_page(request, context, shot, form, status=200 if request.htmx else 400)


# --- files -------------------------------------------------------------------------------------


class JobFilePage(JobPortalPage):
    """The API's downloads (generation.api.jobs.JobFileView) for the portal's session: the same files, ranges for seeking."""

    kind, content_type, extension = "video", "video/mp4", "mp4"

    def get(self, request, job_id, number: int = 0):
        job = self.job(job_id)
        try:
            field_file = selectors.job_file(job, self.kind, number)
        except selectors.RightsHeld as exc:
            return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
        if field_file is None:
            raise Http404(f"no {self.kind} yet")
        return file_response(request, field_file, content_type=self.content_type,
                             filename=f"{job.pk}-{self.kind}{number or ''}.{self.extension}")


class JobVideoPage(JobFilePage):
    kind, content_type, extension = "video", "video/mp4", "mp4"


class JobThumbnailPage(JobFilePage):
    kind, content_type, extension = "thumbnail", "image/jpeg", "jpg"


class JobSubtitlesSrtPage(JobFilePage):
    kind, content_type, extension = "srt", "application/x-subrip; charset=utf-8", "srt"


class JobSubtitlesVttPage(JobFilePage):
    kind, content_type, extension = "vtt", "text/vtt; charset=utf-8", "vtt"


class ShotFramePage(JobFilePage):
    kind, content_type, extension = "frame", "image/png", "png"
