"""Operators' admin for tenants, people, keys and the audit log. Every change is audited."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts import services
from accounts.audit import Actor, audit_record, client_ip, snapshot
from accounts.forms import AdminLoginForm
from accounts.models import ApiKey, AuditEntry, Invitation, Membership, Organization, User


# The admin's sign-in counts failures and locks like the portal's (accounts/services.py login_authenticate).
admin.site.login_form = AdminLoginForm


def operator(request) -> Actor:
    return Actor(user=request.user, ip_address=client_ip(request))


class AuditedAdmin(admin.ModelAdmin):
    """Writes an audit entry, with before and after, for every add, change and delete."""

    def save_model(self, request, obj, form, change):
        before = snapshot(type(obj)._base_manager.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        audit_record(
            actor=operator(request),
            action=f"admin.{obj._meta.model_name}.{'change' if change else 'add'}",
            target=obj,
            before=before,
            after=snapshot(obj),
        )

    def delete_model(self, request, obj):
        audit_record(actor=operator(request), action=f"admin.{obj._meta.model_name}.delete", target=obj,
                     before=snapshot(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(Organization)
class OrganizationAdmin(AuditedAdmin):
    list_display = ["name", "slug", "public_name", "is_suspended", "created_at"]
    list_filter = ["is_suspended", "created_at"]
    search_fields = ["name", "slug", "public_name"]
    readonly_fields = ["suspended_at", "created_at"]
    actions = ["suspend", "reinstate"]

    @admin.action(description="Suspend the selected organizations (their users and keys get 403)")
    def suspend(self, request, queryset):
        for organization in queryset:
            services.organization_set_suspended(organization=organization, suspended=True, actor=operator(request),
                                                reason="suspended by an operator")
        self.message_user(request, f"Suspended {queryset.count()} organization(s).", messages.SUCCESS)

    @admin.action(description="Reinstate the selected organizations")
    def reinstate(self, request, queryset):
        for organization in queryset:
            services.organization_set_suspended(organization=organization, suspended=False, actor=operator(request))
        self.message_user(request, f"Reinstated {queryset.count()} organization(s).", messages.SUCCESS)


@admin.register(User)
class UserAdmin(AuditedAdmin, DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "full_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["full_name"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    readonly_fields = ["last_login", "date_joined"]


class MembershipAddForm(forms.ModelForm):
    # `organization` is not editable on tenant rows (it never changes), so the add form declares it.
    organization = forms.ModelChoiceField(queryset=Organization.objects.all())

    class Meta:
        model = Membership
        fields = ["user", "role"]


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__email", "organization__slug", "organization__name"]
    list_select_related = ["user", "organization"]
    autocomplete_fields = ["user"]

    def get_fields(self, request, obj=None):
        return ["organization", "user", "role"] if obj is None else ["organization", "user", "role", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return ["organization", "user", "created_at"] if obj else []

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs.update(form=MembershipAddForm, fields=MembershipAddForm._meta.fields)
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.organization = form.cleaned_data["organization"]
        super().save_model(request, obj, form, change)


@admin.register(Invitation)
class InvitationAdmin(AuditedAdmin):
    list_display = ["email", "organization", "role", "status", "created_at", "expires_at"]
    list_filter = ["role", "organization"]
    search_fields = ["email", "organization__slug"]
    list_select_related = ["organization"]
    readonly_fields = ["organization", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at",
                       "accepted_by", "revoked_at"]

    def has_add_permission(self, request):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    list_display = ["name", "organization", "prefix", "last_four", "created_by", "created_at", "last_used_at",
                    "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "organization"]
    search_fields = ["name", "prefix", "organization__slug"]
    list_select_related = ["organization", "created_by"]
    readonly_fields = ["organization", "prefix", "last_four", "scopes", "created_by", "created_at", "last_used_at",
                       "last_used_ip", "revoked_at", "revoked_by"]
    fields = ["name", *readonly_fields]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are made by members (API, portal) or `manage.py create_api_key`

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(key=key, actor=operator(request))
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organization", "actor_email", "api_key", "ip_address", "action", "target_type",
                    "target_repr"]
    list_filter = ["action", "target_type", "organization"]
    search_fields = ["actor_email", "action", "target_id", "target_repr"]
    date_hierarchy = "created_at"
    list_select_related = ["organization", "api_key"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
