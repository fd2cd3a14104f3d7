"""An organization's provider credentials: save (settings checked, the key stored encrypted), delete, and
test the connection; used by the API (generation/api/policy.py) and the portal (generation/portal/providers.py)."""
from __future__ import annotations

from pathlib import Path

from django.db import transaction

from accounts.audit import Actor, audit_record
from accounts.crypto import secret_encrypt
from accounts.models import Organization
from config.errors import NotFound
from generation.error_codes import GenerationErrors
from generation.models import ProviderCredential
from generation.provider_settings import MODEL_PATH_SETTINGS, provider_settings_clean, provider_settings_read
from generation.providers import PROVIDER_QUEUES
from generation.providers.openai.client import connection_test


def provider_names() -> list[str]:
    return list(PROVIDER_QUEUES)


def provider_credential_get(provider: str) -> ProviderCredential | None:
    """The active organization's credential for `provider` (NotFound for a provider that does not exist)."""
    if provider not in PROVIDER_QUEUES:
        raise NotFound("No such provider.")
    return ProviderCredential.objects.filter(provider=provider).first()


@transaction.atomic
def provider_credential_save(*, organization: Organization, provider: str, settings: dict, actor: Actor,
                             api_key: str | None = None) -> tuple[ProviderCredential, bool]:
    """Set the provider's settings (checked, typed; ProviderSettingsInvalid names the field) and, when given,
    its key (encrypted). Returns (credential, created)."""
    provider_credential_get(provider)
    cleaned = provider_settings_clean(provider=provider, settings=settings)
    credential, created = ProviderCredential.objects.get_or_create(provider=provider,
                                                                   defaults={"organization": organization})
    credential.settings = cleaned
    if api_key is not None:
        credential.secret_encrypted = secret_encrypt(api_key)
    credential.save()
    audit_record(actor=actor, action="provider_credential.set", target=credential,
                 after={"settings": credential.settings, "api_key_changed": api_key is not None})
    return credential, created


def provider_credential_delete(*, credential: ProviderCredential, actor: Actor) -> None:
    audit_record(actor=actor, action="provider_credential.delete", target=credential)
    credential.delete()


def provider_connection_test(*, organization_id: int, provider: str) -> dict:
    """Whether the provider can work with the saved settings, from this process: {"ok", "detail"[, "code"]}.
    openai: one request to the endpoint (through the outbound guard); a local-model provider: its model
    folders exist here (a web process may not be a GPU worker, so a job is the full proof)."""
    provider_credential_get(provider)
    settings = provider_settings_read(organization_id=organization_id, provider=provider)
    if provider == "openai":
        return connection_test(settings)
    if provider in MODEL_PATH_SETTINGS:
        paths = {name: settings.get(name) for name in MODEL_PATH_SETTINGS[provider] if settings.get(name)}
        if not paths:
            return {"ok": False, "code": GenerationErrors.PROVIDER_MISCONFIGURED, "detail": "no model path is set"}
        missing = [name for name, path in paths.items() if not Path(path).is_dir()]
        if missing:
            return {"ok": False, "code": GenerationErrors.PROVIDER_MODEL_MISSING,
                    "detail": f"not a folder on this machine: {', '.join(missing)}"}
        return {"ok": True, "detail": "the model folders exist on this machine"}
    return {"ok": True, "detail": "built in: nothing to connect to"}
