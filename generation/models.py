"""Jobs, their steps, and the content-addressed artifacts the steps produce.

A job is a small build graph persisted in the database:

    style -> script -> storyboard -> frame[i] -> clip[i] -> compose -> review -> protect -> register

One `Step` row per (job, stage, shot). A step's input digest hashes the stage, its provider, its
parameters and the content hashes of what it consumes; an `Artifact` with that digest in the same
organization is reused instead of recomputed. The queue carries only step ids; these rows are the
source of truth.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from config.tenancy import TenantModel


class JobStatus(models.TextChoices):
    PENDING = "pending"
    STYLE_DETECTION = "style_detection"
    STORY_GENERATION = "story_generation"
    STORYBOARD_BREAKDOWN = "storyboard_breakdown"
    IMAGE_GENERATION = "image_generation"
    VIDEO_GENERATION = "video_generation"
    COMPOSING = "composing"
    REVIEWING = "reviewing"
    AWAITING_APPROVAL = "awaiting_approval"
    CHANGES_REQUESTED = "changes_requested"
    PROTECTING = "protecting"
    REGISTERING = "registering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRYING = "retrying"


TERMINAL_JOB_STATUSES = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


class Stage(models.TextChoices):
    STYLE = "style"
    SCRIPT = "script"
    STORYBOARD = "storyboard"
    FRAME = "frame"
    CLIP = "clip"
    COMPOSE = "compose"
    REVIEW = "review"
    PROTECT = "protect"
    REGISTER = "register"


class StepStatus(models.TextChoices):
    BLOCKED = "blocked"  # waiting for its inputs
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Artifact(TenantModel):
    """A stage's output, addressed by the input digest that produced it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    digest = models.CharField(max_length=64, help_text="Input digest of the step that produced it.")
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the data or file.")
    kind = models.CharField(max_length=16)  # json, image, video, audio
    data = models.JSONField(null=True, blank=True)
    file = models.FileField(upload_to="artifacts/%Y/%m/", max_length=300, blank=True)
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "digest"], name="artifact_digest_unique")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.digest[:12]}"


class Job(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_by_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    topic = models.TextField(max_length=2000)
    style = models.CharField(max_length=32, blank=True, help_text="Chosen style; empty means detect it.")
    options = models.JSONField(default=dict)
    template = models.ForeignKey("projects.TemplateVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    template_snapshot = models.JSONField(default=dict, help_text="The template version as the job used it.")
    status = models.CharField(max_length=24, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    priority = models.PositiveSmallIntegerField(default=5, help_text="0-9, higher runs first")
    idempotency_key = models.CharField(max_length=100, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, help_text="Of the request that created it")
    estimated_cost = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("0"))
    cost = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("0"))
    error = models.JSONField(null=True, blank=True)
    output = models.JSONField(default=dict, blank=True, help_text="video and thumbnail artifact ids, metadata")
    shot_edits = models.JSONField(default=dict, blank=True, help_text="Edits of storyboard shots by number")
    pending_changes = models.JSONField(default=list, blank=True, help_text="Shot edits and regenerations since "
                                       "the last version, for the next version's change list")
    review = models.JSONField(default=list, blank=True, help_text="Automatic review checks")
    rights_hold = models.JSONField(default=dict, blank=True, help_text="Possible infringement found before "
                                   "registering: the matches, and when an operator cleared them")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "status", "-created_at"], name="job_org_status"),
                   # The jobs list without a status filter: its newest page without sorting every job.
                   models.Index(fields=["organization", "-created_at"], name="job_org_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="job_idempotency_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.topic[:40]} ({self.status})"


class Step(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps")
    stage = models.CharField(max_length=16, choices=Stage.choices)
    shot = models.PositiveSmallIntegerField(default=0, help_text="1-based shot number; 0 for whole-job stages")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in the graph, for display")
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.BLOCKED)
    queue = models.CharField(max_length=16, default="cpu")
    priority = models.PositiveSmallIntegerField(default=5)
    attempts = models.PositiveSmallIntegerField(default=0)
    provider = models.CharField(max_length=32, blank=True, help_text="The provider that produced the output")
    provider_index = models.PositiveSmallIntegerField(default=0, help_text="Position in the fallback list")
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    available_at = models.DateTimeField(null=True, blank=True, help_text="Not claimed before (retry backoff)")
    input_digest = models.CharField(max_length=64, blank=True)
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reused = models.BooleanField(default=False)
    regeneration = models.PositiveSmallIntegerField(default=0, help_text="Bumped to force a new output")
    cost = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("0"))
    usage = models.JSONField(default=dict, blank=True)
    error = models.JSONField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0, help_text="Completed executions (provider calls that finished)")
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    provider_ms = models.PositiveIntegerField(default=0)
    total_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["job_id", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "stage", "shot"], name="one_step_per_stage_shot")]
        indexes = [
            models.Index(fields=["queue", "status", "priority"], name="step_claim"),
            models.Index(fields=["status", "lease_expires_at"], name="step_lease"),
            models.Index(fields=["started_at"], name="step_started"),
        ]

    def __str__(self) -> str:
        return f"{self.stage}{'[' + str(self.shot) + ']' if self.shot else ''} ({self.status})"


class JobEvent(TenantModel):
    """Every event of a job, in order: what websockets stream and webhooks send. Kept, so a client
    that reconnects resumes after the last id it saw."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "id"], name="jobevent_job_id")]


class GenerationPolicy(TenantModel):
    """One per organization: budgets, content policy and default providers."""

    monthly_budget = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                         help_text="Spend limit per calendar month (UTC); empty: no limit")
    user_daily_budget = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                            help_text="Spend limit per member per day (UTC); empty: no limit")
    blocked_terms = models.JSONField(default=list, blank=True, help_text="Words or phrases refused in topics, "
                                     "scripts and storyboards (case-insensitive, whole words)")
    moderation_provider = models.CharField(max_length=32, blank=True, help_text="e.g. 'openai'; empty: none")
    providers = models.JSONField(default=dict, blank=True,
                                 help_text='Default provider order per kind, e.g. {"text": ["openai", "offline"]}')
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization"], name="one_policy_per_org")]


class ProviderCredential(TenantModel):
    """An organization's settings for one provider; the secret part is stored encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=32)
    settings = models.JSONField(default=dict, blank=True, help_text="base_url, model, prices ... (not secret)")
    secret_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "provider"], name="one_credential_per_provider")]


class WebhookEvent(models.TextChoices):
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    CONTENT_REGISTERED = "content.registered"


class Webhook(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    secret_encrypted = models.TextField(editable=False)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


# --- review and delivery: versions, comments, decisions, share links -------------------------------


class JobVersion(TenantModel):
    """A composed output of a job, numbered from 1 and kept: every compose that made another video (a shot
    edited or regenerated), and every restore of an earlier version (a new number, the same files)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+",
                                 help_text="The composed video; its protected copy is the version's content")
    changes = models.JSONField(default=list, blank=True,
                               help_text="What changed since the previous version: shot, change, by")
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    shot_edits = models.JSONField(default=dict, blank=True, help_text="The job's shot edits as this version had them")
    regenerations = models.JSONField(default=dict, blank=True, help_text="Frame and clip regeneration counters")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="one_version_number_per_job")]

    def __str__(self) -> str:
        return f"v{self.number}"


class JobReviewer(TenantModel):
    """A member assigned to review a job: with a template's approval rule `all`, each must approve."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="reviewers")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "user"], name="one_assignment_per_reviewer")]


class ReviewOutcome(models.TextChoices):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"


class ReviewDecision(TenantModel):
    """One reviewer's outcome for one version; the latest per reviewer and version counts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="decisions")
    version = models.ForeignKey(JobVersion, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    reviewer_name = models.CharField(max_length=200, blank=True, help_text="Kept if the user goes")
    outcome = models.CharField(max_length=20, choices=ReviewOutcome.choices)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]


class ShareLink(TenantModel):
    """A link for someone without an account to one version of one job (or its current version). The
    token is shown once and stored hashed; `mark_id` is the forensic watermark of the copies it serves."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="share_links")
    version = models.ForeignKey(JobVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                help_text="Empty: the job's current version")
    recipient = models.CharField(max_length=200, help_text="Who it is for, e.g. a client's name")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=12, editable=False)
    mark_id = models.CharField(max_length=16, unique=True, editable=False,
                               help_text="Carried by the forensic watermark of every copy it serves")
    passphrase_hash = models.CharField(max_length=200, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    allow_download = models.BooleanField(default=False)
    allow_comments = models.BooleanField(default=True)
    visible_watermark = models.BooleanField(default=True, help_text="'DRAFT - <recipient>' drawn on the picture")
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.recipient} ({self.token_prefix}…)"


class Comment(TenantModel):
    """A comment on a version, pinned to a frame (or a range of frames), optionally to a shot and a drawn
    region; a reply has a parent. By a member, or by a share link's guest (name and email, no account)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="comments")
    version = models.ForeignKey(JobVersion, on_delete=models.CASCADE, related_name="comments")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    author_name = models.CharField(max_length=200, blank=True)
    author_email = models.EmailField(blank=True)
    share_link = models.ForeignKey(ShareLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField(max_length=4000)
    frame = models.PositiveIntegerField(null=True, blank=True, help_text="At the job's fps, from 0")
    frame_end = models.PositiveIntegerField(null=True, blank=True)
    shot = models.PositiveSmallIntegerField(null=True, blank=True)
    region = models.JSONField(null=True, blank=True, help_text="Normalized rectangle or freehand points")
    mentions = models.JSONField(default=list, blank=True, help_text="Emails of the members mentioned")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["job", "created_at"], name="comment_job_created")]


class ShareCopy(TenantModel):
    """The file a share link serves for one version: the protected video with the link's forensic mark
    (and its visible watermark when asked), made once per link and version."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    link = models.ForeignKey(ShareLink, on_delete=models.CASCADE, related_name="copies")
    version = models.ForeignKey(JobVersion, on_delete=models.CASCADE, related_name="+")
    file = models.FileField(upload_to="shares/%Y/%m/", max_length=300)
    sha256 = models.CharField(max_length=64)
    seconds = models.FloatField(default=0, help_text="What making it took")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["link", "version"], name="one_copy_per_link_version")]


class ShareAction(models.TextChoices):
    VIEW = "view"
    DOWNLOAD = "download"
    COMMENT = "comment"
    PASSPHRASE_FAILED = "passphrase_failed"


class ShareAccess(TenantModel):
    """Every view, download and comment through a link, and every wrong passphrase."""

    id = models.BigAutoField(primary_key=True)
    link = models.ForeignKey(ShareLink, on_delete=models.CASCADE, related_name="accesses")
    action = models.CharField(max_length=20, choices=ShareAction.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["link", "-id"], name="shareaccess_link")]


class Notification(TenantModel):
    """A message for one member in the portal (and by email): a version awaits their review, a comment or
    an outcome on a job they produced."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32)
    message = models.CharField(max_length=300)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_unread")]
