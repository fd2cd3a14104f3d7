"""A protected output or uploaded asset: its public content id and the evidence attached to it."""
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from config.tenancy import TenantModel


class ContentKind(models.TextChoices):
    VIDEO = "video"
    IMAGE = "image"
    AUDIO = "audio"  # an uploaded music track: signed and registered, with no watermark or fingerprints


class ContentSource(models.TextChoices):
    GENERATED = "generated"
    UPLOAD = "upload"


class Content(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    content_id = models.CharField(max_length=16, unique=True, help_text="Short public id carried in the watermark")
    kind = models.CharField(max_length=8, choices=ContentKind.choices)
    source = models.CharField(max_length=12, choices=ContentSource.choices)
    job = models.ForeignKey("generation.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    title = models.CharField(max_length=200, blank=True, help_text="Private; never shown on public pages")
    original = models.FileField(upload_to="rights/originals/%Y/%m/", max_length=300, blank=True)
    protected = models.FileField(upload_to="rights/protected/%Y/%m/", max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True, help_text="Of the protected file")
    original_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    mime_type = models.CharField(max_length=64, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    duration_s = models.FloatField(default=0)
    watermark = models.JSONField(default=dict, blank=True)
    c2pa = models.JSONField(default=dict, blank=True)
    fingerprint_count = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # An uploaded asset that matched another organization's content: {"matches": [...], "held_at"}, then
    # {"cleared_at", "cleared_by", "note"} when an operator releases it or {"rejected_at", ...} when one
    # rejects it. A generated content's hold lives on its job (Job.rights_hold), which gates the pipeline.
    rights_hold = models.JSONField(default=dict, blank=True, help_text=(
        "Possible infringement found on upload: the matches, and an operator's release or rejection"))
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.content_id


class RecipientMark(TenantModel):
    """A forensic watermark id given to one recipient of the organization's content (a share link): a
    leaked copy carrying it tells the owning organization, and only it, whom the copy was made for."""

    mark_id = models.CharField(max_length=16, unique=True, help_text="Carried in the copies' luma plane")
    recipient = models.CharField(max_length=200, help_text="Private; shown only to the owning organization")
    reference = models.CharField(max_length=64, blank=True, help_text="What gave it out, e.g. a share link id")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.mark_id} ({self.recipient})"
