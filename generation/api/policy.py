"""An organization's generation settings: budgets, content policy, default providers, and provider
credentials (the secret part write-only and stored encrypted)."""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from accounts.audit import audit_record, changed, snapshot
from config.errors import NotFound
from config.json_input import StrictModelSerializer, StrictSerializer
from generation.budgets import spend_summary
from generation.models import GenerationPolicy, ProviderCredential
from generation.provider_credentials import (
    provider_connection_test,
    provider_credential_delete,
    provider_credential_get,
    provider_credential_save,
)
from generation.provider_settings import provider_settings_schema
from generation.providers import KINDS, PROVIDER_QUEUES, provider_names

POLICY_FIELDS = ["monthly_budget", "user_daily_budget", "blocked_terms", "moderation_provider", "providers"]


@extend_schema_field({
    "type": "object", "additionalProperties": False,
    "properties": {kind: {"type": "array", "maxItems": 3, "items": {"type": "string", "enum": provider_names(kind)}}
                   for kind in KINDS},
})
class ProvidersByKindField(serializers.DictField):
    """Per kind of stage, provider names in fallback order; the schema names the kinds and providers
    that validate_providers accepts."""


class PolicySerializer(StrictModelSerializer):
    monthly_budget = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"),
                                              allow_null=True, required=False)
    user_daily_budget = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"),
                                                 allow_null=True, required=False)
    blocked_terms = serializers.ListField(child=serializers.CharField(max_length=100), max_length=500,
                                          required=False)
    moderation_provider = serializers.ChoiceField(choices=["", "openai"], required=False)
    providers = ProvidersByKindField(child=serializers.ListField(child=serializers.CharField(), max_length=3),
                                     required=False)

    class Meta:
        model = GenerationPolicy
        fields = POLICY_FIELDS

    def validate_providers(self, value):
        for kind, names in value.items():
            if kind not in KINDS:
                raise serializers.ValidationError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
            unknown = [name for name in names if name not in provider_names(kind)]
            if unknown:
                raise serializers.ValidationError(f"no {kind} provider named {', '.join(unknown)}")
        return value


class GenerationPolicyView(OrganizationAPIView):
    required_scopes = {"GET": "billing:read", "PATCH": "org:manage"}
    serializer_class = PolicySerializer

    def policy(self, request) -> GenerationPolicy:
        return GenerationPolicy.objects.filter().first() or GenerationPolicy(organization=request.organization)

    def get(self, request):
        return Response({**PolicySerializer(self.policy(request)).data,
                         "spend": spend_summary(organization=request.organization, user=None)})

    @transaction.atomic
    def patch(self, request):
        policy = self.policy(request)
        before = snapshot(policy, POLICY_FIELDS) if policy.pk else {}
        data = PolicySerializer(policy, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        policy = data.save(organization=request.organization)
        old, new = changed(before, snapshot(policy, POLICY_FIELDS))
        audit_record(actor=request.actor, action="generation_policy.update", target=policy, before=old, after=new)
        return Response(PolicySerializer(policy).data)


@extend_schema_field(provider_settings_schema(list(PROVIDER_QUEUES)))
class ProviderSettingsField(serializers.DictField):
    """A provider's settings; the schema gives each provider's, typed (generation/provider_settings.py)."""


class CredentialIn(StrictSerializer):
    settings = ProviderSettingsField(
        required=False, default=dict,
        help_text="The provider's settings. An endpoint URL (base_url) must pass the outbound guard and numbers "
                  "stay within the provider's bounds; otherwise 400 naming the setting in `fields`")
    api_key = serializers.CharField(required=False, write_only=True, max_length=500, allow_blank=True,
                                    help_text="Stored encrypted; never returned")

    def validate_settings(self, value):
        if "api_key" in value:
            raise serializers.ValidationError("put the key in `api_key`, not in settings")
        if len(str(value)) > 4000:
            raise serializers.ValidationError("too large")
        return value


class ProviderCredentialView(OrganizationAPIView):
    """`GET`/`PUT`/`DELETE /providers/<name>`: an organization's settings for one provider."""

    required_scopes = {"GET": "org:read", "PUT": "org:manage", "DELETE": "org:manage"}
    serializer_class = CredentialIn

    def _out(self, credential: ProviderCredential) -> dict:
        return {"provider": credential.provider, "settings": credential.settings,
                "has_api_key": bool(credential.secret_encrypted), "updated_at": credential.updated_at}

    def _configured(self, provider: str) -> ProviderCredential:
        credential = provider_credential_get(provider)
        if credential is None:
            raise NotFound("This provider is not configured.")
        return credential

    def get(self, request, provider):
        return Response(self._out(self._configured(provider)))

    def put(self, request, provider):
        data = CredentialIn(data=request.data)
        data.is_valid(raise_exception=True)
        credential, created = provider_credential_save(
            organization=request.organization, provider=provider, settings=data.validated_data["settings"],
            api_key=data.validated_data.get("api_key"), actor=request.actor)
        return Response(self._out(credential), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def delete(self, request, provider):
        provider_credential_delete(credential=self._configured(provider), actor=request.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConnectionTestOut(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()
    code = serializers.CharField(required=False, help_text="Why it failed (a provider error code).")


class ProviderConnectionTestView(OrganizationAPIView):
    """`POST /providers/<name>/test`: try the saved settings now (openai: one request to the endpoint,
    through the outbound guard; a local-model provider: its model folders exist on this machine)."""

    required_scopes = {"POST": "org:manage"}

    @extend_schema(request=None, responses=ConnectionTestOut)
    def post(self, request, provider):
        return Response(provider_connection_test(organization_id=request.organization.pk, provider=provider))
