"""Review and delivery endpoints: a job's versions (list, restore, download), comments pinned to frames
(threads, edit, resolve), reviewers and decisions (approve is jobs.JobApproveView; request changes here),
share links and their access logs, notifications, and tracing a leaked copy to its share link."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from config.downloads import file_response
from config.error_codes import KernelErrors
from config.errors import DomainError, NotFound
from config.json_input import StrictSerializer
from config.parsers import JSONParser
from config.tenancy import scoped_object
from generation import review, services
from generation.api.jobs import JobOut, JobView
from generation.error_codes import GenerationErrors
from generation.models import Comment, ShareAccess, ShareLink
from rights import verification
from rights.api.views import upload_to_file


def _version_out(request, job, version, *, current: int | None, assigned: dict, content=None) -> dict:
    return {
        "number": version.number, "current": version.number == current, "changes": version.changes,
        "restored_from": version.restored_from, "created_at": version.created_at,
        "created_by": version.created_by.email if version.created_by else None,
        "content_id": content.content_id if content is not None else None,
        "video_url": request.build_absolute_uri(reverse("api:job-version-video", args=[job.pk, version.number])),
        "download_name": review.version_download_name(job, version),
        "approval": review.approval_state(job, version, assigned=assigned),
    }


class VersionOut(serializers.Serializer):
    number = serializers.IntegerField()
    current = serializers.BooleanField()
    changes = serializers.JSONField(help_text="What changed since the previous version: shot, change, by, at")
    restored_from = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    created_by = serializers.EmailField(allow_null=True)
    content_id = serializers.CharField(allow_null=True, help_text="The version's own rights record, once protected")
    video_url = serializers.URLField()
    download_name = serializers.CharField()
    approval = serializers.JSONField(help_text="rule, approved, approved_by, waiting_for, changes_requested")


class VersionListView(JobView):
    """The job's version stack, newest first (v1 is the first composed video)."""

    required_scopes = {"GET": "job:read"}
    serializer_class = VersionOut
    pagination_class = None

    @extend_schema(responses=VersionOut(many=True))
    def get(self, request, job_id):
        job = self.job(job_id)
        versions = list(job.versions.select_related("artifact", "created_by")
                        .prefetch_related("decisions").order_by("-number"))
        contents = review.version_contents(job, versions)
        current = versions[0].number if versions else None
        assigned = review.reviewers_assigned(job)
        return Response(VersionOut([_version_out(request, job, v, current=current, assigned=assigned,
                                                 content=contents.get(v.pk)) for v in versions], many=True).data)


class VersionRestoreView(JobView):
    """Make an earlier version current again: a new version with the same files (nothing is re-rendered)."""

    required_scopes = {"POST": "job:create"}
    error_codes = {"POST": (GenerationErrors.JOB_CANCELLED, GenerationErrors.STORYBOARD_NOT_READY)}

    @extend_schema(request=None, responses=JobOut)
    def post(self, request, job_id, version):
        return self.respond(services.version_restore(job=self.job(job_id), number=version, actor=request.actor))


class VersionVideoView(JobView):
    """One version's video (protected once the rights stages made it), named `<job title> v<N>.mp4`."""

    required_scopes = {"GET": "job:read"}
    error_codes = {"GET": (GenerationErrors.RIGHTS_HOLD,)}

    @extend_schema(responses={(200, "video/mp4"): OpenApiTypes.BINARY})
    def get(self, request, job_id, version):
        from generation.selectors import RightsHeld
        from generation.pipeline.steps import rights_on_hold

        job = self.job(job_id)
        if rights_on_hold(job):
            raise RightsHeld()
        found = review.version_get(job, version)
        return file_response(request, review.version_file(found), content_type="video/mp4",
                             filename=review.version_download_name(job, found))


# --- comments --------------------------------------------------------------------------------------------


class RegionField(serializers.JSONField):
    pass


class CommentIn(StrictSerializer):
    body = serializers.CharField(max_length=review.COMMENT_MAX)
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the current version")
    frame = serializers.IntegerField(required=False, min_value=0, help_text="Frame number at the job's fps")
    time_s = serializers.FloatField(required=False, min_value=0, help_text="Or a time, rounded to its frame")
    frame_end = serializers.IntegerField(required=False, min_value=0, help_text="The end of a range")
    shot = serializers.IntegerField(required=False, min_value=1)
    region = serializers.JSONField(required=False, help_text=(
        '{"type": "rect", "x", "y", "w", "h"} or {"type": "points", "points": [[x, y], ...]}, fractions of '
        "the picture"))
    parent = serializers.UUIDField(required=False, help_text="Reply in this comment's thread")


class CommentOut(serializers.Serializer):
    id = serializers.UUIDField()
    version = serializers.IntegerField()
    parent = serializers.UUIDField(allow_null=True)
    author = serializers.CharField()
    body = serializers.CharField()
    frame = serializers.IntegerField(allow_null=True)
    frame_end = serializers.IntegerField(allow_null=True)
    time_s = serializers.FloatField(allow_null=True)
    shot = serializers.IntegerField(allow_null=True)
    region = serializers.JSONField(allow_null=True)
    mentions = serializers.ListField(child=serializers.EmailField())
    resolved = serializers.BooleanField()
    created_at = serializers.CharField()
    edited_at = serializers.CharField(allow_null=True)
    via_share_link = serializers.BooleanField()


class CommentListView(JobView):
    """The job's comments, threads in order (`?version=N`: one version's). Posting one needs review:comment;
    two reviewers see each other's comments live on the job's websocket (`comment.created`)."""

    required_scopes = {"GET": "job:read", "POST": "review:comment"}
    error_codes = {"POST": (GenerationErrors.NO_VERSION,)}
    serializer_class = CommentOut
    pagination_class = None

    @extend_schema(parameters=[OpenApiParameter("version", int)], responses=CommentOut(many=True))
    def get(self, request, job_id):
        job = self.job(job_id)
        version = request.query_params.get("version")
        if version is not None and not version.isdigit():
            raise DomainError("`version` is a version number.", fields={"version": ["an integer"]})
        comments = review.comments_of(job, version=int(version) if version else None)
        return Response(CommentOut([review.comment_summary(c) for c in comments], many=True).data)

    @extend_schema(request=CommentIn, responses={201: CommentOut})
    def post(self, request, job_id):
        job = self.job(job_id)
        data = CommentIn(data=request.data)
        data.is_valid(raise_exception=True)
        comment = review.comment_create(job=job, actor=request.actor, **data.validated_data)
        return Response(CommentOut(review.comment_summary(comment)).data, status=status.HTTP_201_CREATED)


class CommentEditIn(StrictSerializer):
    body = serializers.CharField(max_length=review.COMMENT_MAX)


class CommentBaseView(JobView):
    def comment(self, job_id, comment_id) -> Comment:
        job = self.job(job_id)
        return scoped_object(job.comments.select_related("job", "version"), comment_id, what="comment")


class CommentView(CommentBaseView):
    """Edit a comment (its author, within COMMENT_EDIT_WINDOW_S)."""

    required_scopes = {"PATCH": "review:comment"}
    error_codes = {"PATCH": (GenerationErrors.COMMENT_EDIT_CLOSED,)}

    @extend_schema(request=CommentEditIn, responses=CommentOut)
    def patch(self, request, job_id, comment_id):
        comment = self.comment(job_id, comment_id)  # another organization's answers 404 before any validation
        data = CommentEditIn(data=request.data)
        data.is_valid(raise_exception=True)
        comment = review.comment_edit(comment=comment, actor=request.actor, body=data.validated_data["body"])
        return Response(CommentOut(review.comment_summary(comment)).data)


class CommentResolveView(CommentBaseView):
    required_scopes = {"POST": "review:comment"}
    resolved = True

    @extend_schema(request=None, responses=CommentOut)
    def post(self, request, job_id, comment_id):
        comment = review.comment_resolve(comment=self.comment(job_id, comment_id), actor=request.actor,
                                         resolved=self.resolved)
        return Response(CommentOut(review.comment_summary(comment)).data)


class CommentReopenView(CommentResolveView):
    resolved = False


# --- decisions and reviewers ---------------------------------------------------------------------------


class DecisionIn(StrictSerializer):
    version = serializers.IntegerField(required=False, min_value=1, help_text="Must be the current version")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class RequestChangesView(JobView):
    """Ask for changes to the current version: the job returns to editing (`changes_requested`)."""

    required_scopes = {"POST": "job:approve"}
    error_codes = {"POST": (GenerationErrors.NOT_AWAITING_APPROVAL, GenerationErrors.VERSION_NOT_CURRENT,
                            GenerationErrors.NOT_A_REVIEWER, GenerationErrors.NO_VERSION)}

    @extend_schema(request=DecisionIn, responses=JobOut)
    def post(self, request, job_id):
        job = self.job(job_id)
        data = DecisionIn(data=request.data)
        data.is_valid(raise_exception=True)
        return self.respond(services.job_request_changes(job=job, actor=request.actor, **data.validated_data))


class ReviewersIn(StrictSerializer):
    reviewers = serializers.ListField(child=serializers.EmailField(), max_length=50)


class ReviewOut(serializers.Serializer):
    rule = serializers.ChoiceField(choices=review.APPROVAL_RULES)
    reviewers = serializers.ListField(child=serializers.EmailField())
    current_version = serializers.IntegerField(allow_null=True)
    approved = serializers.BooleanField(help_text="Whether the current version meets the rule")
    approved_by = serializers.ListField(child=serializers.DictField(), help_text="reviewer and at, per approval")
    waiting_for = serializers.ListField(child=serializers.EmailField())
    changes_requested = serializers.BooleanField()


class ReviewView(JobView):
    """The job's review: its rule, assigned reviewers, and the current version's approvals. PUT assigns the
    reviewers (members whose role may approve)."""

    required_scopes = {"GET": "job:read", "PUT": "job:create"}

    def state(self, job) -> dict:
        current = review.version_current(job)
        return ReviewOut({"rule": review.approval_rule(job), "reviewers": [u.email for u in review.reviewer_users(job)],
                          "current_version": current.number if current else None,
                          **{k: v for k, v in review.approval_state(job, current).items() if k != "rule"}}).data

    @extend_schema(responses=ReviewOut)
    def get(self, request, job_id):
        return Response(self.state(self.job(job_id)))

    @extend_schema(request=ReviewersIn, responses=ReviewOut)
    def put(self, request, job_id):
        job = self.job(job_id)
        data = ReviewersIn(data=request.data)
        data.is_valid(raise_exception=True)
        review.reviewers_set(job=job, emails=data.validated_data["reviewers"], actor=request.actor)
        return Response(self.state(job))


# --- share links ----------------------------------------------------------------------------------------


class ShareLinkIn(StrictSerializer):
    recipient = serializers.CharField(max_length=200, help_text="Who it is for; named when a copy leaks")
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: always the current one")
    passphrase = serializers.CharField(required=False, allow_blank=True, max_length=200, write_only=True)
    expires_in_hours = serializers.FloatField(required=False, min_value=0.001, max_value=24 * 365)
    allow_download = serializers.BooleanField(default=False)
    allow_comments = serializers.BooleanField(default=True)
    visible_watermark = serializers.BooleanField(default=True, help_text='"DRAFT - <recipient>" on the picture')


class ShareLinkOut(serializers.Serializer):
    id = serializers.UUIDField()
    recipient = serializers.CharField()
    version = serializers.IntegerField(allow_null=True, help_text="Empty: always the job's current version")
    state = serializers.ChoiceField(choices=["active", "expired", "revoked"])
    passphrase = serializers.BooleanField(help_text="Whether it asks for one (never the passphrase itself)")
    expires_at = serializers.DateTimeField(allow_null=True)
    allow_download = serializers.BooleanField()
    allow_comments = serializers.BooleanField()
    visible_watermark = serializers.BooleanField()
    token_prefix = serializers.CharField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    created_by = serializers.EmailField(allow_null=True)


class ShareLinkCreatedOut(ShareLinkOut):
    url = serializers.URLField(help_text="The link with its token: shown only in this answer")


def share_link_out(request, link: ShareLink, token: str | None = None) -> dict:
    out = {"id": str(link.pk), "recipient": link.recipient, "version": link.version.number if link.version else None,
           "state": review.share_link_state(link), "passphrase": bool(link.passphrase_hash),
           "expires_at": link.expires_at, "allow_download": link.allow_download,
           "allow_comments": link.allow_comments, "visible_watermark": link.visible_watermark,
           "token_prefix": link.token_prefix, "revoked_at": link.revoked_at, "created_at": link.created_at,
           "created_by": link.created_by.email if link.created_by else None}
    if token is not None:
        out["url"] = request.build_absolute_uri(reverse("jobs:share-page", args=[token]))
        return ShareLinkCreatedOut(out).data
    return ShareLinkOut(out).data


class ShareLinkListView(JobView):
    """The job's share links. Creating one answers its URL (with the token) once: it is stored hashed."""

    required_scopes = {"GET": "share:manage", "POST": "share:manage"}
    error_codes = {"POST": (GenerationErrors.NO_VERSION,)}
    pagination_class = None

    @extend_schema(responses=ShareLinkOut(many=True))
    def get(self, request, job_id):
        job = self.job(job_id)
        links = job.share_links.select_related("version", "created_by")
        return Response([share_link_out(request, link) for link in links])

    @extend_schema(request=ShareLinkIn, responses={201: ShareLinkCreatedOut})
    def post(self, request, job_id):
        job = self.job(job_id)
        data = ShareLinkIn(data=request.data)
        data.is_valid(raise_exception=True)
        link, token = review.share_link_create(job=job, actor=request.actor, **data.validated_data)
        return Response(share_link_out(request, link, token), status=status.HTTP_201_CREATED)


def access_share_link(actor, link_id) -> ShareLink:
    return scoped_object(ShareLink.objects.select_related("job", "version", "created_by"), link_id, what="share link")


class ShareLinkBaseView(OrganizationAPIView):
    access = staticmethod(access_share_link)
    lookup_url_kwarg = "link_id"


class ShareLinkView(ShareLinkBaseView):
    required_scopes = {"GET": "share:manage"}

    @extend_schema(responses=ShareLinkOut)
    def get(self, request, link_id):
        return Response(share_link_out(request, self.get_object()))


class ShareLinkRevokeView(ShareLinkBaseView):
    """Revoke the link: from now on it answers 410."""

    required_scopes = {"POST": "share:manage"}

    @extend_schema(request=None, responses=ShareLinkOut)
    def post(self, request, link_id):
        return Response(share_link_out(request, review.share_link_revoke(link=self.get_object(),
                                                                         actor=request.actor)))


class ShareAccessOut(serializers.ModelSerializer):
    class Meta:
        model = ShareAccess
        fields = ["id", "action", "ip", "user_agent", "created_at"]


class ShareAccessListView(ShareLinkBaseView):
    """Every view, download, comment and wrong passphrase through the link, newest first."""

    required_scopes = {"GET": "share:manage"}
    serializer_class = ShareAccessOut

    def get_queryset(self):
        return self.get_object().accesses.order_by("-id")

    @extend_schema(responses=ShareAccessOut(many=True))
    def get(self, request, link_id):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ShareAccessOut(page, many=True).data)


# --- notifications and tracing -----------------------------------------------------------------------------


class NotificationOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="review.awaiting, review.outcome, comment.created, comment.mention")
    message = serializers.CharField()
    job = serializers.UUIDField(allow_null=True)
    read = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class NotificationListView(OrganizationAPIView):
    """The signed-in member's notifications, newest first; POST marks them all read."""

    required_scopes = {"GET": "job:read", "POST": "job:read"}
    pagination_class = None

    @extend_schema(responses=NotificationOut(many=True))
    def get(self, request):
        if request.actor.user is None:
            raise NotFound("Notifications are a member's, not an API key's.")
        return Response(NotificationOut([{"id": n.id, "kind": n.kind, "message": n.message, "job": n.job_id,
                                          "read": n.read_at is not None, "created_at": n.created_at}
                                         for n in review.notifications_for(request.actor.user)], many=True).data)

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        if request.actor.user is None:
            raise NotFound("Notifications are a member's, not an API key's.")
        return Response({"read": review.notifications_read(request.actor.user)})


class TraceView(OrganizationAPIView):
    """Verify as the owning studio: the public answer of POST /api/v1/verify, plus, when the file is a copy
    of your own content that a share link served, the link and its recipient (`recipient`). The public
    verification never names a recipient."""

    required_scopes = {"POST": "share:manage"}
    error_codes = {"POST": (KernelErrors.PAYLOAD_TOO_LARGE, KernelErrors.UNREADABLE_FILE,
                            KernelErrors.MEDIA_TOO_LARGE, KernelErrors.VERIFY_BUSY, KernelErrors.MEDIA_TIMEOUT)}
    parser_classes = [JSONParser, parsers.MultiPartParser]

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}}}, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.VERIFY_MAX_BYTES:
            raise DomainError("The file is too large.", code=KernelErrors.PAYLOAD_TOO_LARGE)
        work = Path(tempfile.mkdtemp(prefix="trace-"))
        try:
            path = upload_to_file(request, work)
            answer, recipient = verification.verify_for_owner(path, organization_id=request.organization.pk)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if recipient is not None:
            link = ShareLink.objects.filter(pk=recipient.reference).select_related("job", "version").first() \
                if recipient.reference else None
            answer["recipient"] = {"mark_id": recipient.mark_id, "recipient": recipient.recipient,
                                   "confidence": recipient.confidence,
                                   "share_link": share_link_out(request, link) if link else None,
                                   "job": str(link.job_id) if link else None}
        else:
            answer["recipient"] = None
        return Response(answer)
