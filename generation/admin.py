"""Operators' view of jobs and their steps, with retry and cancel."""
from django import forms
from django.contrib import admin, messages

from accounts.admin import AuditedAdmin, operator
from config.errors import DomainError
from generation import services
from generation.models import (
    Comment,
    GenerationPolicy,
    Job,
    JobEvent,
    JobVersion,
    ProviderCredential,
    ShareAccess,
    ShareLink,
    Step,
    Webhook,
    WebhookDelivery,
)
from generation.provider_settings import provider_settings_clean


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    can_delete = False
    fields = ["stage", "shot", "status", "queue", "provider", "attempts", "runs", "reused", "cost", "provider_ms",
              "total_ms", "lease_owner", "lease_expires_at", "error"]
    readonly_fields = fields
    ordering = ["position"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(AuditedAdmin):
    list_display = ["id", "organization", "project", "topic_short", "status", "progress", "cost", "created_at"]
    list_filter = ["status", "organization", "steps__queue"]
    search_fields = ["id", "topic", "organization__slug", "project__name"]
    list_select_related = ["organization", "project"]
    date_hierarchy = "created_at"
    readonly_fields = ["organization", "project", "created_by", "created_by_key", "topic", "style", "options",
                       "template", "template_snapshot", "status", "progress", "progress_message", "idempotency_key",
                       "request_hash", "estimated_cost", "cost", "error", "output", "shot_edits", "review",
                       "rights_hold",
                       "approved_by", "approved_at", "created_at", "started_at", "finished_at"]
    fields = ["priority", *readonly_fields]
    inlines = [StepInline]
    actions = ["retry", "cancel", "release_rights_hold"]

    @admin.display(description="topic")
    def topic_short(self, job):
        return job.topic[:60]

    def _each(self, request, queryset, service, verb):
        done = 0
        for job in queryset:
            try:
                service(job=job, actor=operator(request))
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{job.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)

    @admin.action(description="Retry the selected failed or cancelled jobs")
    def retry(self, request, queryset):
        self._each(request, queryset, services.job_retry, "Retried")

    @admin.action(description="Release the infringement hold: register the selected jobs' content anyway")
    def release_rights_hold(self, request, queryset):
        self._each(request, queryset, services.job_rights_release, "Released")

    @admin.action(description="Cancel the selected jobs")
    def cancel(self, request, queryset):
        self._each(request, queryset, services.job_cancel, "Cancelled")


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ["job", "stage", "shot", "status", "queue", "provider", "attempts", "runs", "lease_owner",
                    "lease_expires_at"]
    list_filter = ["status", "queue", "stage", "organization"]
    search_fields = ["job__id"]
    list_select_related = ["job"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "type", "created_at"]
    list_filter = ["type"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(GenerationPolicy)
class GenerationPolicyAdmin(AuditedAdmin):
    list_display = ["organization", "monthly_budget", "user_daily_budget", "moderation_provider"]


class ProviderCredentialForm(forms.ModelForm):
    """Operators' edits pass the same checks as the settings API (the outbound guard, the bounds)."""

    class Meta:
        model = ProviderCredential
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        settings = cleaned.get("settings")
        if isinstance(settings, dict):
            try:
                provider_settings_clean(provider=cleaned.get("provider") or self.instance.provider, settings=settings)
            except DomainError as exc:
                raise forms.ValidationError({"settings": exc.message}) from None
        return cleaned


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(AuditedAdmin):
    form = ProviderCredentialForm
    list_display = ["organization", "provider", "updated_at"]
    readonly_fields = ["organization"]


@admin.register(Webhook)
class WebhookAdmin(AuditedAdmin):
    list_display = ["organization", "url", "is_active", "created_at"]
    list_filter = ["is_active"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["webhook", "event", "status", "attempts", "last_status_code", "created_at", "delivered_at"]
    list_filter = ["status", "event"]

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(AuditedAdmin):
    """Review records are made through the portal and the API; operators read them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JobVersion)
class JobVersionAdmin(ReadOnlyAdmin):
    list_display = ["job", "number", "organization", "restored_from", "created_by", "created_at"]
    list_select_related = ["job", "organization", "created_by"]
    search_fields = ["job__id", "organization__slug"]


@admin.register(Comment)
class CommentAdmin(ReadOnlyAdmin):
    list_display = ["job", "version", "author_name", "frame", "shot", "resolved_at", "created_at"]
    list_select_related = ["job", "version"]
    search_fields = ["job__id", "author_name", "author_email"]


class ShareAccessInline(admin.TabularInline):
    model = ShareAccess
    extra = 0
    can_delete = False
    fields = readonly_fields = ["action", "ip", "user_agent", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ShareLink)
class ShareLinkAdmin(AuditedAdmin):
    """The token and passphrase are stored hashed and never shown; an operator can revoke a link."""

    list_display = ["recipient", "job", "organization", "token_prefix", "expires_at", "revoked_at", "created_at"]
    list_select_related = ["job", "organization"]
    search_fields = ["recipient", "token_prefix", "mark_id", "job__id"]
    readonly_fields = ["organization", "job", "version", "recipient", "token_prefix", "mark_id", "expires_at",
                       "allow_download", "allow_comments", "visible_watermark", "created_by", "created_at"]
    fields = ["revoked_at", *readonly_fields]
    inlines = [ShareAccessInline]

    def has_add_permission(self, request):
        return False
