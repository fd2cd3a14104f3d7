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
