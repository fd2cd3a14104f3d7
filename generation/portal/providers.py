"""Portal page of the organization's providers, on the team pages: each provider's settings and whether it
has a key, a form to change them (owners: `org:manage`, as the API), and a connection test. Saving goes
through generation.provider_credentials like the API, so the same checks and the outbound guard apply;
the key is write-only (stored encrypted, never shown). config/urls.py serves it in the `accounts` namespace."""
from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.portal.base import form_submit, portal_actor
from accounts.portal.views import TeamPage
from generation.models import ProviderCredential
from generation.provider_credentials import (
    provider_connection_test,
    provider_credential_delete,
    provider_credential_get,
    provider_credential_save,
    provider_names,
)
from generation.provider_settings import PROVIDER_SETTINGS_SCHEMAS

PROVIDER_LABELS = {
    "offline": gettext_lazy("Offline (built in: no GPU, no key)"),
    "openai": gettext_lazy("OpenAI or a server that speaks its API (text, image, video, voice)"),
    "diffusers": gettext_lazy("diffusers, local models on GPU workers (image, video)"),
    "transformers": gettext_lazy("transformers, a local model on GPU workers (text)"),
}


class ProviderForm(forms.Form):
    settings = forms.CharField(label=gettext_lazy("Settings (JSON)"), required=False,
                               widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "mono"}),
                               help_text=gettext_lazy("An object of the provider's settings; the fields it takes are "
                                                      "listed beside the form and in the API docs."))
    api_key = forms.CharField(label=gettext_lazy("API key"), required=False, max_length=500,
                              widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                              help_text=gettext_lazy("Write-only: stored encrypted. Leave empty to keep the saved "
                                                     "key."))

    def clean_settings(self):
        text = self.cleaned_data["settings"].strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError(_("This is not valid JSON.")) from None
        if not isinstance(value, dict):
            raise forms.ValidationError(_("The settings are a JSON object: {…}."))
        return value


def _rows(request, forms_by_name: dict) -> list[dict]:
    credentials = {c.provider: c for c in ProviderCredential.objects.all()}
    rows = []
    for name in provider_names():
        credential = credentials.get(name)
        settings_text = json.dumps(credential.settings, indent=2, ensure_ascii=False) if credential else "{}"
        form = forms_by_name.get(name) or ProviderForm(initial={"settings": settings_text}, auto_id=f"{name}-%s")
        fields = (PROVIDER_SETTINGS_SCHEMAS.get(name) or {}).get("properties") or {}
        rows.append({"name": name, "label": PROVIDER_LABELS.get(name, name), "credential": credential,
                     "has_api_key": bool(credential and credential.secret_encrypted), "form": form,
                     "fields": sorted(fields)})
    return rows


def _page(request, forms_by_name=None, status=200):
    return render(request, "accounts/team_providers.html", {
        "providers": _rows(request, forms_by_name or {}), "can_manage": "org:manage" in request.scopes,
        "tab": "providers"}, status=status)


class ProviderListPage(TeamPage):
    scope = "org:read"

    def get(self, request):
        return _page(request)


class ProviderSavePage(TeamPage):
    scope = "org:manage"

    def post(self, request, provider):
        provider_credential_get(provider)  # an unknown provider: 404
        form = ProviderForm(request.POST, auto_id=f"{provider}-%s")
        form_submit(form, lambda data: provider_credential_save(
            organization=request.organization, provider=provider, settings=data["settings"],
            api_key=data["api_key"] or None, actor=portal_actor(request)))
        if form.is_valid():
            messages.success(request, _("The settings of %(provider)s were saved.") % {"provider": provider})
            return redirect("accounts:team-providers")
        return _page(request, {provider: form}, status=400)


class ProviderTestPage(TeamPage):
    scope = "org:manage"

    def post(self, request, provider):
        result = provider_connection_test(organization_id=request.organization.pk, provider=provider)
        if result["ok"]:
            messages.success(request, _("%(provider)s answers: %(detail)s") % {"provider": provider,
                                                                                "detail": result["detail"]})
        else:
            messages.error(request, _("%(provider)s does not work yet: %(detail)s") % {"provider": provider,
                                                                                        "detail": result["detail"]})
        return redirect("accounts:team-providers")


class ProviderDeletePage(TeamPage):
    scope = "org:manage"

    def post(self, request, provider):
        credential = provider_credential_get(provider)
        if credential is not None:
            provider_credential_delete(credential=credential, actor=portal_actor(request))
            messages.success(request, _("The settings of %(provider)s were removed.") % {"provider": provider})
        return redirect("accounts:team-providers")
