"""An organization's settings for one provider, checked before they are saved: endpoint URLs through the
outbound guard, every setting against its provider's typed schema (PROVIDER_SETTINGS_SCHEMAS, which the API
schema publishes), numbers within their provider's documented bounds."""
from __future__ import annotations

import os

import jsonschema

from config.errors import DomainError
from config.outbound import OutboundUrlNotAllowed, outbound_url_check
from generation.error_codes import GenerationErrors
from generation.providers.openai.client import SETTINGS_SCHEMA as OPENAI_SETTINGS_SCHEMA
from generation.providers.openai.client import settings_problems as openai_settings_problems
from generation.providers.transformers.text import SETTINGS_SCHEMA as TRANSFORMERS_SETTINGS_SCHEMA
from generation.providers.transformers.text import settings_problems as transformers_settings_problems

_AMOUNT = {"anyOf": [{"type": "string", "pattern": r"^[0-9]{1,6}(\.[0-9]{1,12})?$"},
                     {"type": "number", "minimum": 0}]}
# generation/providers/diffusers/media.py reads these; it may read more (a pipeline's own keyword
# arguments), so other keys stay allowed.
DIFFUSERS_SETTINGS_SCHEMA = {
    "type": "object", "additionalProperties": True,
    "properties": {
        **{name: {"type": "string", "maxLength": 2000} for name in (
            "image_model_path", "video_model_path", "device", "dtype", "preset", "negative_prompt")},
        **{name: {"type": "integer", "minimum": 0} for name in (
            "steps", "max_side", "size_multiple", "crf", "num_frames", "motion_bucket_id", "decode_chunk_size")},
        **{name: {"type": "number"} for name in (
            "oom_scale", "guidance_scale", "model_fps", "noise_aug_strength", "min_guidance_scale",
            "max_guidance_scale")},
        "price_per_second": {**_AMOUNT, "description": "Cost of a second of the worker's time"},
    },
}
# The offline provider reads no settings.
OFFLINE_SETTINGS_SCHEMA = {"type": "object", "additionalProperties": False, "properties": {}}
PROVIDER_SETTINGS_SCHEMAS = {"openai": OPENAI_SETTINGS_SCHEMA, "diffusers": DIFFUSERS_SETTINGS_SCHEMA,
                             "offline": OFFLINE_SETTINGS_SCHEMA}
SCHEMA_TITLES = {"openai": "OpenAISettings", "diffusers": "DiffusersSettings", "offline": "OfflineSettings"}
PROVIDER_SETTINGS_SCHEMAS["transformers"] = TRANSFORMERS_SETTINGS_SCHEMA
SCHEMA_TITLES["transformers"] = "TransformersSettings"


def provider_settings_schema(providers) -> dict:
    """The settings object of any of `providers`, for the API schema: one of the providers' typed schemas
    (the path's provider decides which applies); a provider without one here takes any object."""
    members = [{"title": SCHEMA_TITLES[name], **PROVIDER_SETTINGS_SCHEMAS[name]}
               for name in providers if name in PROVIDER_SETTINGS_SCHEMAS]
    untyped = [name for name in providers if name not in PROVIDER_SETTINGS_SCHEMAS]
    if untyped:
        members.append({"title": "OtherProviderSettings", "type": "object", "additionalProperties": True,
                        "description": f"Settings of {', '.join(untyped)}, checked by the provider"})
    return {"anyOf": members, "description": "The provider's settings: " + "; ".join(
        [f"{SCHEMA_TITLES[name]} for {name}" for name in providers if name in PROVIDER_SETTINGS_SCHEMAS]
        + (["OtherProviderSettings for the others"] if untyped else []))}


def _schema_problems(schema: dict, settings: dict) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for error in jsonschema.Draft7Validator(schema).iter_errors(settings):
        if not error.absolute_path and error.validator == "additionalProperties":
            for name in sorted(set(settings) - set(schema["properties"])):
                problems.setdefault(name, []).append("is not a setting of this provider")
            continue
        name = str(error.absolute_path[0]) if error.absolute_path else "settings"
        problems.setdefault(name, []).append(f"is invalid: {error.message[:200]}")
    return problems


class ProviderSettingsInvalid(DomainError):
    code = GenerationErrors.INVALID_PROVIDER_SETTINGS


def provider_settings_read(*, organization_id: int, provider: str) -> dict:
    """The organization's stored settings for `provider`, its secret decrypted as `api_key` ({} when none);
    inside the organization's tenant scope (a step's). The models are imported here, not at the top:
    this module's settings checks import without Django's app registry."""
    from accounts.crypto import secret_decrypt
    from generation.models import ProviderCredential

    credential = ProviderCredential.objects.filter(organization_id=organization_id, provider=provider).first()
    if credential is None:
        return {}
    values = dict(credential.settings)
    if credential.secret_encrypted:
        values["api_key"] = secret_decrypt(credential.secret_encrypted)
    return values


def _url_settings(settings: dict) -> list[str]:
    """The settings naming an endpoint: `base_url`, and any other `*_url` a provider may read."""
    return [name for name in settings if name == "base_url" or name.endswith("_url")]


MODEL_PATH_SETTINGS = {"diffusers": ("image_model_path", "video_model_path"), "transformers": ("model_path",)}


def model_path_problem(value) -> str | None:
    """Why `value` may not be a local model's path: it must be an absolute folder path under
    LOCAL_MODELS_DIR (normalised first, so `..` cannot leave it). None when it may."""
    from django.conf import settings as django_settings

    root = os.path.normpath(str(django_settings.LOCAL_MODELS_DIR))
    if not isinstance(value, str) or not value.startswith("/"):
        return f"must be an absolute path of a folder under {root}"
    path = os.path.normpath(value)
    if os.path.commonpath([root, path]) != root or path == root:
        return f"must be a folder under {root} (LOCAL_MODELS_DIR)"
    return None


def provider_settings_clean(*, provider: str, settings: dict) -> dict:
    """`settings` when they may be saved for `provider`. Raises OutboundUrlNotAllowed (code
    url_not_allowed) for an endpoint URL the platform would refuse to connect to, ProviderSettingsInvalid
    for a value out of its bounds or a model path outside LOCAL_MODELS_DIR; either names the setting in
    `fields`."""
    for name in MODEL_PATH_SETTINGS.get(provider, ()):
        if settings.get(name) not in (None, "") and (problem := model_path_problem(settings[name])):
            raise ProviderSettingsInvalid(f"{name} {problem}.", fields={name: [problem]})
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
    problems = {}
    if provider == "openai":
        problems = openai_settings_problems(settings)
    elif provider == "transformers":  # its bounds, with messages that name them
        problems = transformers_settings_problems(settings)
    elif provider in PROVIDER_SETTINGS_SCHEMAS:
        problems = _schema_problems(PROVIDER_SETTINGS_SCHEMAS[provider], settings)
    if problems:
        summary = "; ".join(f"{name} {', '.join(messages)}" for name, messages in problems.items())
        raise ProviderSettingsInvalid(f"Invalid {provider} settings: {summary}.", fields=problems)
    return settings
