"""Input and output shapes of the accounts endpoints."""
from __future__ import annotations

from rest_framework import serializers

from accounts.models import ApiKey, AuditEntry, Invitation, Membership, Organization
from accounts.roles import SCOPES, Role
from config.json_input import StrictSerializer


class OrganizationOut(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "public_name", "created_at"]


class OrganizationIn(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False)
    public_name = serializers.CharField(max_length=120, required=False)


class MemberOut(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.full_name")

    class Meta:
        model = Membership
        fields = ["id", "email", "full_name", "role", "created_at"]


class MemberIn(StrictSerializer):
    required_on_patch = True  # PATCH /members/<id> changes the role, the one thing it can change
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationOut(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", default=None, allow_null=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "invited_by", "created_at", "expires_at", "accepted_at"]


class InvitationIn(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationAcceptIn(StrictSerializer):
    token = serializers.CharField(max_length=100)
    password = serializers.CharField(max_length=128, required=False, write_only=True)
    full_name = serializers.CharField(max_length=150, required=False, default="")


class ApiKeyOut(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", default=None, allow_null=True)
    display = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ["id", "name", "display", "prefix", "last_four", "scopes", "created_by", "created_at",
                  "last_used_at", "revoked_at"]

    def get_display(self, key: ApiKey) -> str:
        return f"{key.prefix}_…{key.last_four}"


class ApiKeyCreatedOut(ApiKeyOut):
    key = serializers.SerializerMethodField(help_text="The key itself. Shown this once; store it now.")

    class Meta(ApiKeyOut.Meta):
        fields = [*ApiKeyOut.Meta.fields, "key"]

    def get_key(self, key: ApiKey) -> str:
        return self.context["plain_key"]


class ApiKeyIn(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=sorted(SCOPES)), min_length=1,
                                   max_length=len(SCOPES))


class AuditEntryOut(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_email")
    api_key = serializers.CharField(source="api_key.prefix", default=None, allow_null=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "action", "actor", "api_key", "ip_address", "target_type", "target_id",
                  "target_repr", "before", "after"]


class AuditFilterIn(serializers.Serializer):
    action = serializers.CharField(max_length=64, required=False, help_text="Exact action, or a prefix ending in '.'")
    actor = serializers.EmailField(required=False)
    target_type = serializers.CharField(max_length=64, required=False)
    target_id = serializers.CharField(max_length=64, required=False)
    api_key = serializers.UUIDField(required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
