"""Projects: a studio's unit of work. Access follows the member's organization role."""
import uuid

from django.conf import settings as django_settings
from django.db import models
from django.utils import timezone

from config.tenancy import TenantModel


class Project(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, max_length=5000)
    created_by = models.ForeignKey(django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="project_name_unique_in_org")]

    def __str__(self) -> str:
        return self.name


class Template(TenantModel):
    """A named, versioned generation preset. Public templates form the shared library."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, max_length=2000)
    is_public = models.BooleanField(default=False, db_index=True, help_text="Listed in every studio's library")
    current_version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="template_name_unique_in_org")]

    def __str__(self) -> str:
        return f"{self.name} v{self.current_version}"


class TemplateVersion(TenantModel):
    """One immutable version of a template's settings; editing a template adds a version."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    settings = models.JSONField(default=dict)  # see projects.templates.TEMPLATE_SETTINGS
    # Published in the public library: this version was its template's current one while the template
    # was public. Other organizations read only these, never a version made while it was private.
    is_public = models.BooleanField(default=False, help_text="Published in the public library")
    created_by = models.ForeignKey(django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["template_id", "-version"]
        constraints = [models.UniqueConstraint(fields=["template", "version"], name="template_version_unique")]

    def __str__(self) -> str:
        return f"{self.template_id} v{self.version}"
