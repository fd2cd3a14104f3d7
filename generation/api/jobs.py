"""Jobs endpoints: start, list, read, cancel, retry, edit and regenerate shots, approve, download."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from config.downloads import file_response
from config.errors import DomainError, NotFound
from config.json_input import StrictSerializer
from generation import selectors, services
from generation.error_codes import GenerationErrors
from generation.models import Job, JobStatus
from generation.pipeline.steps import step_summary
from generation.references import LOGO_PLACEMENTS
from projects.schemas import CAMERA_MOVEMENTS, STYLE_NAMES
from rights.selectors import content_rights


class JobReferencesIn(StrictSerializer):
    image = serializers.CharField(required=False, allow_blank=True, max_length=16, help_text=(
        "Content id of one of the studio's image assets (a product or character): every shot's frame builds on "
        "it (the image providers' reference; the offline renderer composites it)."))
    logo = serializers.CharField(required=False, allow_blank=True, max_length=16,
                                 help_text="Content id of one of the studio's image assets, shown as the logo.")
    music = serializers.CharField(required=False, allow_blank=True, max_length=16, help_text=(
        "Content id of one of the studio's audio assets (WAV, MP3 or FLAC): the bed under the narration, in "
        "place of the generated one, looped or cut to the video and ducked under the voice."))
    logo_placement = serializers.ChoiceField(choices=LOGO_PLACEMENTS, required=False, help_text=(
        "corner (the default): the logo in the top right corner of every frame; end_card: the logo over the "
        "last seconds, on a card of the style's colour."))


class JobOptionsIn(serializers.Serializer):
    duration_s = serializers.FloatField(required=False, min_value=5, max_value=300)
    aspect_ratio = serializers.ChoiceField(choices=services.ASPECT_RATIOS, required=False)
    resolution = serializers.ChoiceField(choices=services.RESOLUTIONS, required=False)
    shots = serializers.IntegerField(required=False, min_value=1, max_value=24)
    voice = serializers.CharField(required=False, allow_blank=True, max_length=40)
    language = serializers.ChoiceField(choices=services.LANGUAGES, required=False,
                                       help_text="auto (the default): Chinese for a topic in CJK ideographs, "
                                                 "else English.")
    references = JobReferencesIn(required=False, help_text="The studio's uploaded assets the job builds on.")


class JobIn(StrictSerializer):
    project = serializers.UUIDField()
    topic = serializers.CharField(max_length=2000, min_length=3)
    style = serializers.ChoiceField(choices=STYLE_NAMES, required=False, allow_blank=True, default="")
    template = serializers.UUIDField(required=False, allow_null=True, default=None)
    options = JobOptionsIn(required=False, default=dict)
    priority = serializers.IntegerField(required=False, min_value=0, max_value=9, default=5)


def _url(request, name: str, job: Job, **kwargs) -> str:
    return request.build_absolute_uri(reverse(f"api:{name}", kwargs={"job_id": job.pk, **kwargs}))


class JobSummaryOut(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project_id")

    class Meta:
        model = Job
        fields = ["id", "project", "topic", "style", "status", "progress", "progress_message", "cost", "created_at",
                  "finished_at"]


class JobOut(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project_id")
    template = serializers.SerializerMethodField()
    shots = serializers.SerializerMethodField()
    output = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()
    rights = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "project", "topic", "style", "template", "options", "priority", "status", "progress",
                  "progress_message", "shots", "output", "estimated_cost", "cost", "error", "review", "steps",
                  "rights", "approved_at", "created_at", "finished_at"]

    def get_template(self, job: Job) -> dict | None:
        snapshot = job.template_snapshot
        if not snapshot:
            return None
        return {"id": snapshot.get("template_id"), "name": snapshot.get("name"), "version": snapshot.get("version")}

    def get_shots(self, job: Job) -> list:
        request = self.context["request"]
        shots = selectors.job_shots(job)
        for shot in shots:
            shot["frame_url"] = _url(request, "job-frame", job, number=shot["number"]) if shot.pop("has_frame") else None
        return shots

    def get_output(self, job: Job) -> dict:
        request = self.context["request"]
        if job.status != JobStatus.COMPLETED and not job.output.get("video_artifact"):
            return {"video_url": None, "thumbnail_url": None, "metadata": {}}
        return {"video_url": _url(request, "job-video", job), "thumbnail_url": _url(request, "job-thumbnail", job),
                "metadata": job.output.get("metadata", {})}

    def get_steps(self, job: Job) -> list:
        return [step_summary(step) for step in job.steps.all()]

    @extend_schema_field(serializers.DictField(allow_null=True))  # null until the job's output is protected
    def get_rights(self, job: Job) -> dict | None:
        return content_rights(job=job, request=self.context["request"])


class JobListView(mixins.ListModelMixin, OrganizationAPIView):
    required_scopes = {"GET": "job:read", "POST": "job:create"}
    # 402: over a budget; 409: an Idempotency-Key reused for another request; 422: content refused;
    # 503: the moderation the policy asks for could not run.
    error_codes = {"POST": (GenerationErrors.INVALID_HEADER, GenerationErrors.BUDGET_EXCEEDED,
                            GenerationErrors.IDEMPOTENCY_MISMATCH, GenerationErrors.CONTENT_REFUSED,
                            GenerationErrors.MODERATION_UNAVAILABLE)}
    serializer_class = JobSummaryOut

    def get_queryset(self):
        status_filter = self.request.query_params.get("status", "")
        if status_filter and status_filter not in JobStatus.values:
            raise DomainError("Unknown status.", fields={"status": [f"one of {', '.join(JobStatus.values)}"]})
        project = self.request.query_params.get("project") or None
        if project:
            try:
                project = serializers.UUIDField().to_internal_value(project)
            except serializers.ValidationError:
                raise DomainError("Invalid project id.", fields={"project": ["not a UUID"]}) from None
        # Only the summary's columns: a page of whole rows (template snapshots, options, review JSON) and
        # the joined project and user cost most of the request under load (bench/load.py).
        return selectors.job_list(status=status_filter, project_id=project).select_related(None).only(
            "id", "project_id", *(name for name in JobSummaryOut.Meta.fields if name not in {"id", "project"}))

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=JobStatus.values),
                               OpenApiParameter("project", OpenApiTypes.UUID)])
    def get(self, request):
        return self.list(request)

    @extend_schema(
        request=JobIn, responses={201: JobOut, 200: JobOut},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="Repeating a request with the same key returns the first job")],
    )
    def post(self, request):
        data = JobIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 100:
            raise DomainError("The Idempotency-Key header is longer than 100 characters.",
                              code=GenerationErrors.INVALID_HEADER)
        job, created = services.job_create(
            organization=request.organization, actor=request.actor, project_id=values["project"],
            topic=values["topic"], style=values["style"], template_id=values["template"],
            options=dict(values["options"]), idempotency_key=key, priority=values["priority"])
        job = selectors.job_detail(job_id=job.pk)
        return Response(JobOut(job, context={"request": request}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class JobView(OrganizationAPIView):
    """Base of the per-job endpoints: the job of this organization, or 404."""

    serializer_class = JobOut

    def job(self, job_id) -> Job:
        return selectors.access_job(self.request.actor, job_id)

    def respond(self, job: Job) -> Response:
        return Response(JobOut(selectors.job_detail(job_id=job.pk), context={"request": self.request}).data)


class JobDetailView(JobView):
    required_scopes = {"GET": "job:read"}

    def get(self, request, job_id):
        # Serialized as read: `respond` reads the job again, which only a change before it needs.
        return Response(JobOut(self.job(job_id), context={"request": request}).data)


class JobActionView(JobView):
    """A POST that acts on the job through one service (`service`) and answers the job as it is then."""

    service = None  # (not `action`: DRF's name for a viewset's action)

    @extend_schema(request=None, responses=JobOut)
    def post(self, request, job_id):
        return self.respond(type(self).service(job=self.job(job_id), actor=request.actor))


class JobCancelView(JobActionView):
    required_scopes = {"POST": "job:create"}
    error_codes = {"POST": (GenerationErrors.JOB_FINISHED,)}
    service = staticmethod(services.job_cancel)


class JobRetryView(JobActionView):
    required_scopes = {"POST": "job:create"}
    error_codes = {"POST": (GenerationErrors.JOB_NOT_RETRYABLE,)}
    service = staticmethod(services.job_retry)


class ApproveIn(StrictSerializer):
    version = serializers.IntegerField(required=False, min_value=1, help_text="Must be the current version")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class JobApproveView(JobView):
    """Approve the current version. With the template's `approval_rule` `all`, the job goes on only once
    every assigned reviewer approved; `review` in the answer's approval state says who is still awaited."""

    required_scopes = {"POST": "job:approve"}
    error_codes = {"POST": (GenerationErrors.NOT_AWAITING_APPROVAL, GenerationErrors.RIGHTS_HOLD,
                            GenerationErrors.VERSION_NOT_CURRENT, GenerationErrors.NOT_A_REVIEWER)}

    @extend_schema(request=ApproveIn, responses=JobOut)
    def post(self, request, job_id):
        job = self.job(job_id)
        data = ApproveIn(data=request.data if request.data else {})
        data.is_valid(raise_exception=True)
        return self.respond(services.job_approve(job=job, actor=request.actor, **data.validated_data))


class ShotIn(StrictSerializer):
    description = serializers.CharField(max_length=2000, required=False)
    dialogue = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    camera_movement = serializers.ChoiceField(choices=CAMERA_MOVEMENTS, required=False)
    duration_s = serializers.FloatField(min_value=0.5, max_value=120, required=False)
    reference = serializers.CharField(max_length=16, required=False, allow_blank=True, help_text=(
        "Content id of one of the studio's image assets for this shot's frame alone; empty: none, not even "
        "the job's."))


class ShotView(JobView):
    required_scopes = {"PATCH": "job:create"}
    error_codes = {"PATCH": (GenerationErrors.JOB_CANCELLED, GenerationErrors.STORYBOARD_NOT_READY,
                             GenerationErrors.CONTENT_REFUSED, GenerationErrors.MODERATION_UNAVAILABLE)}

    @extend_schema(request=ShotIn, responses=JobOut)
    def patch(self, request, job_id, number):
        job = self.job(job_id)
        data = ShotIn(data=request.data)
        data.is_valid(raise_exception=True)
        return self.respond(services.shot_edit(job=job, number=number, changes=dict(data.validated_data),
                                               actor=request.actor))


class ShotRegenerateView(JobView):
    required_scopes = {"POST": "job:create"}
    error_codes = {"POST": (GenerationErrors.JOB_CANCELLED, GenerationErrors.STORYBOARD_NOT_READY)}

    @extend_schema(request=None, responses=JobOut)
    def post(self, request, job_id, number):
        return self.respond(services.shot_regenerate(job=self.job(job_id), number=number, actor=request.actor))


def _file_schema(content_type: str):
    """The download's documented answers: the file, a part of it for a Range request, or with S3 storage
    (STORAGE_BACKEND=s3) a redirect to a link signed for S3_SIGNED_URL_EXPIRY_S."""
    return extend_schema_view(get=extend_schema(
        parameters=[OpenApiParameter("download", OpenApiTypes.INT, enum=[1],
                                     description="1: answered as an attachment (saved, not shown)")],
        responses={(200, content_type): OpenApiTypes.BINARY, (206, content_type): OpenApiTypes.BINARY,
                   302: OpenApiResponse(description="S3 storage: `Location` is a signed link to the file")}))


class JobFileView(JobView):
    required_scopes = {"GET": "job:read"}
    error_codes = {"GET": (GenerationErrors.RIGHTS_HOLD,)}  # held for a possible infringement
    kind = "video"
    content_type = "video/mp4"

    def get(self, request, job_id, number: int = 0):
        job = self.job(job_id)
        field_file = selectors.job_file(job, self.kind, number)
        if field_file is None:
            raise NotFound(f"The job has no {self.kind} yet.")
        extension = {"video": "mp4", "thumbnail": "jpg", "frame": "png", "srt": "srt", "vtt": "vtt"}[self.kind]
        return file_response(request, field_file, content_type=self.content_type,
                             filename=f"{job.pk}-{self.kind}{number or ''}.{extension}")


@_file_schema("video/mp4")
class JobVideoView(JobFileView):
    kind, content_type = "video", "video/mp4"


@_file_schema("image/jpeg")
class JobThumbnailView(JobFileView):
    kind, content_type = "thumbnail", "image/jpeg"


@_file_schema("image/png")
class JobFrameView(JobFileView):
    kind, content_type = "frame", "image/png"


@_file_schema("application/x-subrip")
class JobSubtitlesSrtView(JobFileView):
    """The narration's subtitles as SubRip, timed to the speech (also a soft track in the video)."""

    kind, content_type = "srt", "application/x-subrip; charset=utf-8"


@_file_schema("text/vtt")
class JobSubtitlesVttView(JobFileView):
    """The narration's subtitles as WebVTT, for a browser's <track>."""

    kind, content_type = "vtt", "text/vtt; charset=utf-8"


class JobEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    data = serializers.JSONField()
    created_at = serializers.DateTimeField()


class JobEventsView(JobView):
    """Events after `after` (an event id), for clients that poll instead of using the websocket."""

    required_scopes = {"GET": "job:read"}
    serializer_class = JobEventOut
    pagination_class = None  # `after` pages through the events

    @extend_schema(parameters=[OpenApiParameter("after", int)], responses=JobEventOut(many=True))
    def get(self, request, job_id):
        job = self.job(job_id)
        try:
            after = max(0, int(request.query_params.get("after", 0)))
        except ValueError:
            raise DomainError("`after` must be an event id.", fields={"after": ["an integer"]}) from None
        return Response(JobEventOut(selectors.job_events_after(job_id=job.pk, after=after), many=True).data)
