"""Provider registry: (kind, name) -> class. Modules are imported on first use, so a web process
never imports torch, and a missing optional dependency only fails the step that needs it."""
from __future__ import annotations

from importlib import import_module

PROVIDERS: dict[tuple[str, str], str] = {
    ("text", "offline"): "generation.providers.offline.text.OfflineText",
    ("image", "offline"): "generation.providers.offline.image.OfflineImage",
    ("video", "offline"): "generation.providers.offline.video.OfflineVideo",
    ("voice", "offline"): "generation.providers.offline.voice.OfflineVoice",
    ("text", "openai"): "generation.providers.openai.text.OpenAIText",
    ("image", "openai"): "generation.providers.openai.image.OpenAIImage",
    ("video", "openai"): "generation.providers.openai.video.OpenAIVideo",
    ("voice", "openai"): "generation.providers.openai.voice.OpenAIVoice",
    ("image", "diffusers"): "generation.providers.diffusers.media.DiffusersImage",
    ("video", "diffusers"): "generation.providers.diffusers.media.DiffusersVideo",
    ("text", "transformers"): "generation.providers.transformers.text.TransformersText",
}

# Queues of the providers, known without importing them (the web tier routes steps with this).
PROVIDER_QUEUES = {"offline": "cpu", "openai": "llm", "diffusers": "gpu", "transformers": "gpu"}
KINDS = ("text", "image", "video", "voice")


def provider_names(kind: str) -> list[str]:
    return [name for (k, name) in PROVIDERS if k == kind]


def provider_class(kind: str, name: str):
    try:
        path = PROVIDERS[(kind, name)]
    except KeyError:
        raise LookupError(f"no {kind} provider named {name!r}") from None
    module, _, attr = path.rpartition(".")
    return getattr(import_module(module), attr)


def provider_queue(kind: str, name: str) -> str:
    if (kind, name) not in PROVIDERS:
        raise LookupError(f"no {kind} provider named {name!r}")
    return PROVIDER_QUEUES[name]
