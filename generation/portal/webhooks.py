"""Portal pages of webhooks, on the team pages: the list with its create form, one webhook with its
delivery log, edit and delete. Like the API (generation/api/webhooks.py) they act through
generation.webhooks and check the same scope (`webhooks:manage`); another organization's webhook
answers 404, like a missing one. config/urls.py serves them in the `accounts` namespace
(`accounts:team-webhooks`, ...), beside the other team pages."""
from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.portal.base import form_submit, page_of, portal_actor
from accounts.portal.views import TeamPage
from generation import webhooks
from generation.models import DeliveryStatus, Webhook, WebhookEvent

EVENT_LABELS = {
    WebhookEvent.JOB_COMPLETED: gettext_lazy("A job completed"),
    WebhookEvent.JOB_FAILED: gettext_lazy("A job failed"),
    WebhookEvent.CONTENT_REGISTERED: gettext_lazy("A content was registered on chain"),
}
DELIVERY_STATUS_LABELS = {
    "pending": gettext_lazy("pending"), "delivered": gettext_lazy("delivered"), "failed": gettext_lazy("failed"),
}


class WebhookForm(forms.Form):
    url = forms.URLField(label=gettext_lazy("Address (URL)"), max_length=500, assume_scheme="https",
                         help_text=gettext_lazy("A public https address. Private and local addresses are refused."))
    events = forms.MultipleChoiceField(
        label=gettext_lazy("Events"), widget=forms.CheckboxSelectMultiple,
        choices=[(event, EVENT_LABELS[event]) for event in WebhookEvent.values],
    )
    is_active = forms.BooleanField(label=gettext_lazy("Active"), required=False, initial=True,
                                   help_text=gettext_lazy("An inactive webhook receives nothing."))


class DeliveryFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=gettext_lazy("Status"), required=False,
        choices=[("", gettext_lazy("All")), (DeliveryStatus.PENDING, gettext_lazy("Pending")),
                 (DeliveryStatus.DELIVERED, gettext_lazy("Delivered")), (DeliveryStatus.FAILED, gettext_lazy("Failed"))],
    )


def _event_labels(webhook: Webhook) -> list:
    return [EVENT_LABELS.get(event, event) for event in webhook.events]


class WebhookListPage(TeamPage):
    scope = "webhooks:manage"

    def page(self, request, *, form=None, created=None, secret=None, status=200):
        hooks = page_of(request, webhooks.webhook_list())
        for hook in hooks:
            hook.event_labels = _event_labels(hook)
        return render(request, "accounts/team_webhooks.html", {
            "webhooks": hooks, "form": form or WebhookForm(auto_id="webhook-%s"),
            "created": created, "secret": secret, "tab": "webhooks",
        }, status=status)

    def get(self, request):
        return self.page(request)

    def post(self, request):
        form = WebhookForm(request.POST, auto_id="webhook-%s")
        created = form_submit(form, lambda data: webhooks.webhook_create(
            organization=request.organization, url=data["url"], events=data["events"], is_active=data["is_active"],
            actor=portal_actor(request)))
        if form.is_valid():
            webhook, secret = created
            # The signing secret is stored encrypted and shown in this answer only.
            return self.page(request, created=webhook, secret=secret)
        return self.page(request, form=form, status=400)


class WebhookDetailPage(TeamPage):
    """One webhook and its delivery log, newest first, filtered by status like the API."""

    scope = "webhooks:manage"

    def get(self, request, webhook_id):
        webhook = webhooks.access_webhook(portal_actor(request), webhook_id)
        webhook.event_labels = _event_labels(webhook)
        filters = DeliveryFilterForm(request.GET)
        status = filters.cleaned_data["status"] if filters.is_valid() else ""
        deliveries = page_of(request, webhooks.webhook_delivery_list(webhook=webhook, status=status))
        for delivery in deliveries:
            delivery.status_label = DELIVERY_STATUS_LABELS.get(delivery.status, delivery.status)
        return render(request, "accounts/team_webhook_detail.html", {
            "webhook": webhook, "deliveries": deliveries, "filters": filters, "status": status, "tab": "webhooks",
            "query": f"&{urlencode({'status': status})}" if status else "",
        })


class WebhookEditPage(TeamPage):
    scope = "webhooks:manage"

    def render_form(self, request, webhook, form, status=200):
        return render(request, "accounts/team_webhook_edit.html",
                      {"webhook": webhook, "form": form, "tab": "webhooks"}, status=status)

    def get(self, request, webhook_id):
        webhook = webhooks.access_webhook(portal_actor(request), webhook_id)
        form = WebhookForm(initial={"url": webhook.url, "events": webhook.events, "is_active": webhook.is_active},
                           auto_id="webhook-%s")
        return self.render_form(request, webhook, form)

    def post(self, request, webhook_id):
        webhook = webhooks.access_webhook(portal_actor(request), webhook_id)
        form = WebhookForm(request.POST, auto_id="webhook-%s")
        form_submit(form, lambda data: webhooks.webhook_update(webhook=webhook, actor=portal_actor(request), **data))
        if form.is_valid():
            messages.success(request, _("The webhook was saved."))
            return redirect("accounts:team-webhook", webhook_id=webhook.pk)
        return self.render_form(request, webhook, form, status=400)


class WebhookDeletePage(TeamPage):
    scope = "webhooks:manage"

    def post(self, request, webhook_id):
        webhook = webhooks.access_webhook(portal_actor(request), webhook_id)
        webhooks.webhook_delete(webhook=webhook, actor=portal_actor(request))
        messages.success(request, _("The webhook and its delivery log were deleted."))
        return redirect("accounts:team-webhooks")
