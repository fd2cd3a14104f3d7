"""Webhook endpoints: subscriptions (the signing secret is shown once, on creation) and each
webhook's delivery log. All need the `webhooks:manage` scope."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from config.json_input import StrictSerializer
from generation import webhooks
from generation.error_codes import GenerationErrors
from generation.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent


class WebhookOut(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices))
    created_by = serializers.EmailField(source="created_by.email", default=None, allow_null=True)

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "is_active", "created_by", "created_at"]


class WebhookCreatedOut(WebhookOut):
    secret = serializers.SerializerMethodField(help_text="Signing secret; shown only in this answer.")

    class Meta(WebhookOut.Meta):
        fields = [*WebhookOut.Meta.fields, "secret"]

    def get_secret(self, _webhook) -> str:
        return self.context["secret"]


class WebhookIn(StrictSerializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices), min_length=1,
                                   max_length=len(WebhookEvent.values))
    is_active = serializers.BooleanField(required=False)


class WebhookDeliveryOut(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "event", "status", "attempts", "last_status_code", "last_error", "next_attempt_at",
                  "created_at", "delivered_at"]


class DeliveryFilterIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)


SCOPE = "webhooks:manage"


class WebhookListView(mixins.ListModelMixin, OrganizationAPIView):
    """The organization's webhooks. Creating one answers its signing secret, once."""

    required_scopes = {"GET": SCOPE, "POST": SCOPE}
    error_codes = {"POST": (GenerationErrors.INVALID_EVENTS, GenerationErrors.WEBHOOK_URL_NOT_ALLOWED,
                            GenerationErrors.WEBHOOK_LIMIT)}
    serializer_class = WebhookOut

    def get_queryset(self):
        return webhooks.webhook_list()

    def get(self, request):
        return self.list(request)

    @extend_schema(request=WebhookIn, responses={201: WebhookCreatedOut})
    def post(self, request):
        data = WebhookIn(data=request.data)
        data.is_valid(raise_exception=True)
        webhook, secret = webhooks.webhook_create(
            organization=request.organization, actor=request.actor, **data.validated_data
        )
        return Response(WebhookCreatedOut(webhook, context={"secret": secret}).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(OrganizationAPIView):
    """One webhook: read it, change its URL, events or activity, or delete it."""

    required_scopes = {"GET": SCOPE, "PATCH": SCOPE, "DELETE": SCOPE}
    serializer_class = WebhookOut
    lookup_url_kwarg = "webhook_id"
    access = staticmethod(webhooks.access_webhook)

    def get_queryset(self):
        return webhooks.webhook_list()

    def get(self, request, webhook_id):
        return Response(WebhookOut(self.get_object()).data)

    @extend_schema(request=WebhookIn(partial=True), responses=WebhookOut)
    def patch(self, request, webhook_id):
        webhook = self.get_object()
        data = WebhookIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        webhook = webhooks.webhook_update(webhook=webhook, actor=request.actor, **data.validated_data)
        return Response(WebhookOut(webhook).data)

    @extend_schema(description="Delete the webhook, its pending deliveries and its delivery log.")
    def delete(self, request, webhook_id):
        webhooks.webhook_delete(webhook=self.get_object(), actor=request.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(mixins.ListModelMixin, OrganizationAPIView):
    """The delivery log of one webhook, newest first."""

    required_scopes = {"GET": SCOPE}
    serializer_class = WebhookDeliveryOut

    def get_queryset(self):
        webhook = webhooks.access_webhook(self.request.actor, self.kwargs["webhook_id"])
        filters = DeliveryFilterIn(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return webhooks.webhook_delivery_list(webhook=webhook, status=filters.validated_data.get("status", ""))

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=DeliveryStatus.values)])
    def get(self, request, webhook_id):
        return self.list(request)
