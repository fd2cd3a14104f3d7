"""Operators' view of contents, registrations, batches and the chain, with revocation."""
from django.contrib import admin, messages

from accounts.admin import AuditedAdmin, operator
from config.errors import DomainError
from rights.models import ChainState, Content, Fingerprint, Registration, RegistrationBatch, RegistrationStatus
from rights.registry import chain_status, registration_revoke
from rights.services import asset_hold_reject, asset_hold_release


class RegistrationInline(admin.StackedInline):
    model = Registration
    extra = 0
    can_delete = False
    readonly_fields = ["status", "leaf", "batch", "tx_hash", "block_number", "confirmations", "proof",
                       "revoked_reason", "created_at", "anchored_at"]
    fields = readonly_fields


@admin.register(Content)
class ContentAdmin(AuditedAdmin):
    list_display = ["content_id", "organization", "kind", "source", "fingerprint_count", "created_at"]
    list_filter = ["kind", "source", "organization"]
    search_fields = ["content_id", "sha256", "organization__slug"]
    list_select_related = ["organization"]
    readonly_fields = ["organization", "content_id", "kind", "source", "job", "sha256", "original_sha256",
                       "mime_type", "width", "height", "duration_s", "watermark", "c2pa", "fingerprint_count",
                       "timings", "rights_hold", "created_at", "created_by", "original", "protected"]
    fields = ["title", *readonly_fields]
    inlines = [RegistrationInline]
    actions = ["release_rights_hold", "reject_rights_hold"]

    def _decide(self, request, queryset, service, verb):
        done = 0
        for content in queryset:
            try:
                service(content=content, actor=operator(request))
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{content}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{verb} {done} upload(s).", messages.SUCCESS)

    @admin.action(description="Release the infringement hold: register the selected uploads anyway")
    def release_rights_hold(self, request, queryset):
        self._decide(request, queryset, asset_hold_release, "Released")

    @admin.action(description="Reject the held uploads: never registered, never public")
    def reject_rights_hold(self, request, queryset):
        self._decide(request, queryset, asset_hold_reject, "Rejected")


@admin.register(Registration)
class RegistrationAdmin(AuditedAdmin):
    list_display = ["content", "organization", "status", "batch", "block_number", "confirmations", "created_at"]
    list_filter = ["status", "organization"]
    search_fields = ["content__content_id", "tx_hash", "leaf"]
    list_select_related = ["content", "organization", "batch"]
    readonly_fields = ["organization", "content", "leaf", "status", "batch", "proof", "tx_hash", "block_number",
                       "confirmations", "revoked_reason", "created_at", "anchored_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected registrations (on chain, with the reason 'revoked by operator')")
    def revoke(self, request, queryset):
        done = 0
        for registration in queryset:
            try:
                registration_revoke(registration=registration, reason="revoked by operator", actor=operator(request))
                done += 1
            except Exception as exc:  # the chain may be down: say so, keep going
                self.message_user(request, f"{registration.content}: {exc}", messages.WARNING)
        self.message_user(request, f"Revoked {done} registration(s).", messages.SUCCESS)


@admin.register(RegistrationBatch)
class RegistrationBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "size", "chain_id", "tx_hash", "block_number", "gas_used", "created_at",
                    "confirmed_at"]
    list_filter = ["status", "chain_id"]
    search_fields = ["tx_hash", "merkle_root"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ChainState)
class ChainStateAdmin(admin.ModelAdmin):
    """The signer's nonces, with the chain's live status at the top of the page."""

    list_display = ["chain_id", "signer", "next_nonce", "updated_at"]

    def changelist_view(self, request, extra_context=None):
        status = chain_status()
        backlog = Registration.objects.filter(status=RegistrationStatus.PENDING).count()
        level = messages.SUCCESS if status.get("ok") else messages.ERROR
        problem, last_reset = status.pop("problem", None), status.pop("last_reset", None)
        self.message_user(request, "chain: " + ", ".join(f"{key}={value}" for key, value in status.items())
                          + f"; registrations waiting to be anchored: {backlog}", level)
        if problem:
            self.message_user(request, f"chain problem: {problem}", messages.ERROR)
        if last_reset:
            self.message_user(request, (
                f"last reset of this development chain, recovered at {last_reset['at']}: {last_reset['reason']}; "
                f"{last_reset['batches_lost']} batch(es) lost, {last_reset['registrations_requeued']} registration(s) "
                "anchored again" + (f", registry deployed again at {last_reset['registry_redeployed']}"
                                    if last_reset.get("registry_redeployed") else "")), messages.WARNING)
        return super().changelist_view(request, extra_context)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Fingerprint)
class FingerprintAdmin(admin.ModelAdmin):
    list_display = ["content", "at_s", "phash"]
    list_select_related = ["content"]
    search_fields = ["content__content_id"]

    def has_change_permission(self, request, obj=None):
        return False
