"""The small interfaces every provider implements, one per kind of stage.

A stage calls its provider with plain data and a `StageContext`; the provider returns a `Result`
holding the output (a dict for text stages, a file path for media stages) with its cost and usage.
Providers raise `ProviderError` for a failure worth retrying elsewhere, and `ProviderRefused` when
the input itself is unacceptable (retrying would not help).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from config.error_codes import ErrorCode
from generation.error_codes import GenerationErrors


class ProviderError(Exception):
    """The provider failed (network, quota, out of memory, bad output); another try may succeed.

    `code` is stable (it reaches job and step errors); `upstream_status` is the endpoint's HTTP status
    when it answered one. The message is ours: an endpoint's answer body never goes into it, since the
    endpoint is a URL a tenant chose and its answer could be anything (an internal page, a secret)."""

    code = GenerationErrors.PROVIDER_ERROR

    def __init__(self, message: str = "", *, code: ErrorCode | None = None, upstream_status: int | None = None):
        super().__init__(message)
        if code:
            self.code = code
        self.upstream_status = upstream_status


class ProviderRefused(ProviderError):
    """The input is unacceptable (for example a moderation refusal); do not retry."""

    code = GenerationErrors.PROVIDER_REFUSED


@dataclass
class Result:
    value: Any
    cost: Decimal = Decimal("0")
    usage: dict = field(default_factory=dict)  # tokens, seconds of GPU, model name ...


@dataclass
class StageContext:
    """What a provider may know about the job it works for."""

    organization_id: int
    job_id: str
    options: dict  # duration_s, aspect_ratio, resolution, shots, voice
    prompts: dict  # per-stage prompt additions from the template
    work_dir: Path  # scratch space, removed after the step
    settings: dict = field(default_factory=dict)  # this provider's per-organization settings (secrets decrypted)
    is_cancelled: Callable[[], bool] = lambda: False  # long loops check this and stop early

    @property
    def size(self) -> tuple[int, int]:
        return frame_size(self.options.get("resolution", "720p"), self.options.get("aspect_ratio", "16:9"))


RESOLUTION_HEIGHTS = {"480p": 480, "720p": 720, "1080p": 1080}


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height), even numbers, the short side equal to the resolution's lines."""
    lines = RESOLUTION_HEIGHTS[resolution]
    w, h = (int(part) for part in aspect_ratio.split(":"))
    if w >= h:
        return (round(lines * w / h / 2) * 2, lines)
    return (lines, round(lines * h / w / 2) * 2)


class TextProvider(Protocol):
    """style, script and storyboard; each returns a dict valid against projects/schemas.py."""

    name: ClassVar[str]
    queue: ClassVar[str]  # "cpu", "llm" or "gpu"

    def style(self, *, topic: str, catalogue: dict, ctx: StageContext) -> Result: ...

    def script(self, *, topic: str, style: dict, duration_s: float, shots: int, ctx: StageContext) -> Result: ...

    def storyboard(self, *, script: dict, style: dict, shots: int, duration_s: float, ctx: StageContext) -> Result: ...


# shot[REFERENCE_ASSET]: a path on the worker's disk to the studio's product or character image the frame builds
# on (generation.references). A provider that uses it says so with Result.usage["reference_used"] = True.
REFERENCE_ASSET = "reference_asset"


class ImageProvider(Protocol):
    """The first frame of one shot, written as a PNG of exactly ctx.size to `out`."""

    name: ClassVar[str]
    queue: ClassVar[str]

    def frame(self, *, shot: dict, style: dict, out: Path, ctx: StageContext) -> Result: ...


# A recurring character (the template's `recurring_character`), for a video provider whose class says
# `makes_characters = True`: shot[MAKE_CHARACTER] is True on the first shot, whose provider makes a character
# from the clip and returns it as Result.usage["character"] = {"id", "name", ...}; the later shots get that
# {"id", "name"} as shot[RECURRING_CHARACTER], and their clips feature it.
MAKE_CHARACTER = "make_character"
RECURRING_CHARACTER = "recurring_character"


class VideoProvider(Protocol):
    """One shot's clip from its first frame, an H.264 MP4 of ctx.size at `fps`, the shot's duration."""

    name: ClassVar[str]
    queue: ClassVar[str]

    def clip(self, *, shot: dict, style: dict, frame: Path, fps: int, out: Path, ctx: StageContext) -> Result: ...


class VoiceProvider(Protocol):
    """Narration of `text` as a WAV at `out`; Result.value is None when no speech engine exists."""

    name: ClassVar[str]
    queue: ClassVar[str]

    def narrate(self, *, text: str, voice: str, out: Path, ctx: StageContext) -> Result: ...


def setting_bounded(settings: dict, name: str, default, bounds: dict[str, tuple[float, float, type]]):
    """A provider's numeric setting, clamped into its (low, high, type) of `bounds`: the API refused values out
    of range when they were saved, and this keeps an older or hand-edited value harmless; `default` when the
    setting is unset or unreadable."""
    low, high, kind = bounds[name]
    value = settings.get(name)
    if value is None or isinstance(value, bool):
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return default
    if isinstance(number, float) and not math.isfinite(number):
        return default
    return min(max(number, kind(low)), kind(high))
