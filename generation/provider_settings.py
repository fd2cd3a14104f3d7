"""An organization's settings for one provider, checked before they are saved: endpoint URLs through the
outbound guard, numbers within their provider's documented bounds."""
from __future__ import annotations

from config.errors import DomainError
from config.outbound import OutboundUrlNotAllowed, outbound_url_check
from generation.error_codes import GenerationErrors


class ProviderSettingsInvalid(DomainError):
    code = GenerationErrors.INVALID_PROVIDER_SETTINGS


def _url_settings(settings: dict) -> list[str]:
    """The settings naming an endpoint: `base_url`, and any other `*_url` a provider may read."""
    return [name for name in settings if name == "base_url" or name.endswith("_url")]


def provider_settings_clean(*, provider: str, settings: dict) -> dict:
    """`settings` when they may be saved for `provider`. Raises OutboundUrlNotAllowed (code
    url_not_allowed) for an endpoint URL the platform would refuse to connect to, ProviderSettingsInvalid
    for a value out of its bounds; either names the setting in `fields`."""
    for name in _url_settings(settings):
        value = settings[name]
        if value in (None, ""):
            continue  # unset: the provider's default endpoint
        if not isinstance(value, str):
            raise ProviderSettingsInvalid(f"{name} must be a URL.", fields={name: ["must be a URL"]})
        try:
            outbound_url_check(value, what=name)
        except OutboundUrlNotAllowed as exc:
            exc.fields = {name: [exc.message]}
            raise
    if provider == "openai":
        from generation.providers.openai.text import settings_problems

        problems = settings_problems(settings)
        if problems:
            summary = "; ".join(f"{name} {', '.join(messages)}" for name, messages in problems.items())
            raise ProviderSettingsInvalid(f"Invalid openai settings: {summary}.", fields=problems)
    return settings
