"""What every `openai` provider kind shares: the settings (their bounds and typed schema), the SDK client
built through the outbound guard, and the retry loop (429 with Retry-After, 5xx, timeouts) with its codes.

Text (text.py), image (image.py), video (video.py) and voice (voice.py) read one organization credential,
`openai`; SETTINGS_SCHEMA lists its settings (the API's schema shows it, and the settings API checks against
it). Errors carry a stable code (ProviderError.code) and the endpoint's HTTP status, never its answer's body:
the body is logged here, truncated, and nothing more of it travels.
"""
from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from decimal import Decimal
from typing import Any, Callable

import jsonschema
import openai

from config.error_codes import KernelErrors
from config.outbound import OutboundUrlNotAllowed, outbound_http_client, outbound_url_check
from generation.error_codes import GenerationErrors
from generation.providers.base import ProviderError, ProviderRefused, StageContext, setting_bounded

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 30.0

# (minimum, maximum, type) of each numeric setting; see SETTINGS_SCHEMA for what each does.
SETTING_BOUNDS: dict[str, tuple[float, float, type]] = {
    "timeout_s": (0.1, 600, float),
    "max_attempts": (1, 10, int),
    "backoff_s": (0, 60, float),
    "max_backoff_s": (0, 600, float),
    "temperature": (0, 2, float),
    "max_tokens": (1, 1_000_000, int),
    "seed": (-(2 ** 63), 2 ** 63 - 1, int),
    "video_poll_s": (0.01, 60, float),
    "video_deadline_s": (1, 7200, float),
}
PRICE_MAX = Decimal("1000")
# Prices, currency per unit: tokens (text), images, seconds of video, recurring characters, characters of speech.
PRICE_KEYS = {
    "input_per_1k": "per 1,000 prompt tokens (text)",
    "output_per_1k": "per 1,000 completion tokens (text)",
    "per_image": "per generated or edited image",
    "per_video_second": "per second of video the endpoint renders (4, 8 or 12 a clip)",
    "per_character": "per recurring character made from a clip (videos.create_character, once a job)",
    "per_speech_character": "per character of narration spoken",
}
RESPONSE_FORMATS = ("json_object", "json_schema", "none")
SPEECH_FORMATS = ("wav", "mp3", "flac", "aac", "opus", "pcm")
IMAGE_QUALITIES = ("auto", "low", "medium", "high")
MAX_LOGGED_BODY = 500
_TEXT_SETTING_MAX = 2000

# 408 and 409 are what the SDK's own retry treats as transient too; other 4xx are our configuration or
# request at fault, and repeating them only burns quota.
RETRYABLE_STATUSES = {408, 409, 429}
# The codes an endpoint answers a content-policy refusal with (chat, images, videos, speech).
REFUSAL_CODES = {"content_policy_violation", "content_filter", "moderation_blocked"}


def _number(low, high, kind, description: str) -> dict:
    return {"type": "integer" if kind is int else "number", "minimum": low, "maximum": high,
            "description": description}


def _text(description: str) -> dict:
    return {"type": "string", "maxLength": _TEXT_SETTING_MAX, "description": description}


_PRICE = {"anyOf": [{"type": "string", "pattern": r"^[0-9]{1,4}(\.[0-9]{1,12})?$"},
                    {"type": "number", "minimum": 0, "maximum": float(PRICE_MAX)}]}

# The `openai` credential's settings as a JSON Schema (also the OpenAPI component OpenAISettings): what the
# settings API accepts, so what it answers always matches the schema it publishes.
SETTINGS_SCHEMA: dict = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "base_url": _text("Endpoint, e.g. http://vllm:8000/v1; default https://api.openai.com/v1. Passes the "
                          "outbound guard when saved and on every connection; redirects are not followed"),
        "model": _text("Chat model (text stages); default gpt-4o-mini"),
        "moderation_model": _text("Moderation model; default omni-moderation-latest"),
        "image_model": _text("Image model (first frames); default gpt-image-1"),
        "image_quality": {"type": "string", "enum": list(IMAGE_QUALITIES), "description": "Image quality"},
        "video_model": _text("Video model (clips); default sora-2"),
        "speech_model": _text("Speech model (narration); default gpt-4o-mini-tts"),
        "voice": _text("Voice used when the job's voice names none of the endpoint's; default alloy"),
        "speech_format": {"type": "string", "enum": list(SPEECH_FORMATS),
                          "description": "Audio asked of the endpoint; anything but wav is decoded to WAV"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS),
                            "description": "JSON mode of the text stages; default json_object"},
        "timeout_s": _number(*SETTING_BOUNDS["timeout_s"], "Per-request timeout, seconds; default 60"),
        "max_attempts": _number(*SETTING_BOUNDS["max_attempts"],
                                "Requests per call before giving up (429, 5xx, timeouts); default 4"),
        "backoff_s": _number(*SETTING_BOUNDS["backoff_s"], "First retry delay, doubled each retry; default 1"),
        "max_backoff_s": _number(*SETTING_BOUNDS["max_backoff_s"],
                                 "Longest single wait; a longer Retry-After fails at once; default 30"),
        "temperature": _number(*SETTING_BOUNDS["temperature"], "Passed through when set (text)"),
        "max_tokens": _number(*SETTING_BOUNDS["max_tokens"], "Passed through when set (text)"),
        "seed": _number(*SETTING_BOUNDS["seed"], "Passed through when set (text)"),
        "video_poll_s": _number(*SETTING_BOUNDS["video_poll_s"],
                                "First wait between video status checks, growing 1.5x to 10x; default 2"),
        "video_deadline_s": _number(*SETTING_BOUNDS["video_deadline_s"],
                                    "Longest wait for one clip to render; default 900"),
        "prices": {"type": "object", "additionalProperties": False,
                   "description": "Amounts from 0 to 1000 (a number or a decimal string)",
                   "properties": {key: {**_PRICE, "description": what} for key, what in PRICE_KEYS.items()}},
    },
}


def setting_number(settings: dict, name: str, default):
    """A numeric setting clamped into SETTING_BOUNDS, or the default (generation.providers.base.setting_bounded)."""
    return setting_bounded(settings, name, default, SETTING_BOUNDS)


def price(settings: dict, key: str) -> Decimal:
    """A configured price (PRICE_KEYS) as a Decimal; 0 when unset or unreadable."""
    value = (settings.get("prices") or {}).get(key, 0)
    if isinstance(value, Decimal):
        return value
    try:
        amount = Decimal(str(value or 0))
    except ArithmeticError:
        return Decimal("0")
    return amount if amount.is_finite() and amount >= 0 else Decimal("0")


def settings_problems(settings: dict) -> dict[str, list[str]]:
    """What is wrong with a set of openai settings, by setting name (empty when nothing is): whatever
    SETTINGS_SCHEMA refuses (an unknown setting, a wrong type, a number out of its bounds, an unknown format,
    a price that is no amount). The base URL's address is the caller's (the outbound guard)."""
    problems: dict[str, list[str]] = {}
    if not isinstance(settings, dict):
        return {"settings": ["must be an object"]}
    for error in jsonschema.Draft7Validator(SETTINGS_SCHEMA).iter_errors(settings):
        path = [str(part) for part in error.absolute_path]
        if not path and error.validator == "additionalProperties":
            for name in sorted(set(settings) - set(SETTINGS_SCHEMA["properties"])):
                problems.setdefault(name, []).append("is not an openai setting")
            continue
        name = path[0] if path else "settings"
        problems.setdefault(name, []).append(_schema_message(error, path))
    for name, (low, high, kind) in SETTING_BOUNDS.items():
        value = settings.get(name)  # the schema's maximum is a float: 2**63-1 must not slip through
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in problems and (
                not math.isfinite(value) or not low <= value <= high):
            problems[name] = [f"must be from {low:g} to {high:g}"]
    prices = settings.get("prices")
    if isinstance(prices, dict) and "prices" not in problems:
        for key, value in prices.items():  # a decimal string's size is beyond what the schema can bound
            if isinstance(value, str) and Decimal(value) > PRICE_MAX:
                problems.setdefault("prices", []).append(f"{key} must be an amount from 0 to {PRICE_MAX}")
    return problems


def _schema_message(error: jsonschema.ValidationError, path: list[str]) -> str:
    where = "/".join(path[1:])
    prefix = f"{where} " if where else ""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator in ("minimum", "maximum", "type") and schema.get("type") in ("integer", "number"):
        whole = "a whole number" if schema["type"] == "integer" else "a number"
        bounds = SETTING_BOUNDS.get(path[0] if path else "")
        return f"{prefix}must be {whole}" + (f" from {bounds[0]:g} to {bounds[1]:g}" if bounds else "")
    if error.validator == "enum":
        return f"{prefix}must be one of {', '.join(map(str, error.validator_value))}"
    if path and path[0] == "prices":
        if error.validator == "additionalProperties" and not where:
            return f"may only name {', '.join(PRICE_KEYS)}"
        return f"{prefix}must be an amount from 0 to {PRICE_MAX}"
    if error.validator == "maxLength" or (error.validator == "type" and schema.get("type") == "string"):
        return f"{prefix}must be a string of at most {_TEXT_SETTING_MAX} characters"
    return f"{prefix}is invalid ({error.validator})"


def openai_client(settings: dict) -> openai.OpenAI:
    """The SDK's client for these settings: the base URL vetted by the outbound guard now and at every
    connection (the vetting transport), no SDK retries (ours count and log them), the tenant's key only."""
    base_url = settings.get("base_url") or DEFAULT_BASE_URL
    api_key = settings.get("api_key")
    if not api_key and base_url.rstrip("/") == DEFAULT_BASE_URL:
        raise ProviderError("openai: no api_key configured for api.openai.com",
                            code=GenerationErrors.PROVIDER_MISCONFIGURED)
    try:
        outbound_url_check(base_url, what="base_url")  # the URL's form; each connection vets its address again
    except OutboundUrlNotAllowed as exc:
        raise ProviderError(f"openai: {exc.message}", code=KernelErrors.URL_NOT_ALLOWED) from None
    timeout = setting_number(settings, "timeout_s", DEFAULT_TIMEOUT_S)
    # Always pass a key: left empty, the SDK would read OPENAI_API_KEY from the worker's environment, which
    # must never stand in for a tenant's own key. Self-hosted servers accept any value.
    return openai.OpenAI(api_key=api_key or "unused", base_url=base_url, timeout=timeout, max_retries=0,
                         http_client=outbound_http_client(timeout=timeout, what="base_url"))


def call_with_retries(call: Callable[[], Any], *, settings: dict, ctx: StageContext | None,
                      what: str) -> tuple[Any, int]:
    """Run one SDK request, retrying 408/409/429/5xx, timeouts and connection errors; (response, attempts).

    Waits backoff_s * 2**n (plus up to 25% jitter), or the server's Retry-After when it sends one.
    Raises ProviderRefused for a content-policy refusal, ProviderError otherwise (with .attempts set).
    A refusal of the outbound guard and a redirect are not retried: the next try would meet the same."""
    max_attempts = setting_number(settings, "max_attempts", DEFAULT_MAX_ATTEMPTS)
    backoff_s = setting_number(settings, "backoff_s", DEFAULT_BACKOFF_S)
    max_backoff_s = setting_number(settings, "max_backoff_s", DEFAULT_MAX_BACKOFF_S)
    attempt = 0
    while True:
        attempt += 1
        retry_after = None
        status = None
        try:
            return call(), attempt
        except OutboundUrlNotAllowed as exc:  # raised by the vetting transport, at connect time
            raise attempted(ProviderError(f"{what}: {exc.message}",
                                          code=KernelErrors.URL_NOT_ALLOWED), attempt) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            _log_answer(what, exc)
            if exc.code in REFUSAL_CODES:
                raise attempted(ProviderRefused(f"{what}: refused by the endpoint (content policy, HTTP {status})",
                                                upstream_status=status), attempt) from None
            if 300 <= status < 400:
                raise attempted(ProviderError(f"{what}: HTTP {status}: the endpoint answered a redirect, which "
                                              "is not followed; set base_url to the final address",
                                              code=GenerationErrors.PROVIDER_REDIRECT, upstream_status=status),
                                attempt) from None
            if status not in RETRYABLE_STATUSES and status < 500:
                raise attempted(ProviderError(f"{what}: HTTP {status}: the endpoint refused the request",
                                              code=GenerationErrors.PROVIDER_HTTP_ERROR, upstream_status=status),
                                attempt) from None
            retry_after = retry_after_seconds(exc.response.headers)
            failure: Exception | None = None  # not chained: the SDK's error carries the answer's body
            reason, code = f"HTTP {status}", GenerationErrors.PROVIDER_HTTP_ERROR
        except openai.APITimeoutError as exc:  # before APIConnectionError, its parent
            failure, reason, code = exc, "timed out", GenerationErrors.PROVIDER_TIMEOUT
        except openai.APIConnectionError as exc:
            # Only the cause's type (ConnectError, ...): its text may quote what the server sent (a broken
            # status line) or name internal addresses.
            cause = exc.__cause__ or exc
            reason = f"connection failed ({type(cause).__name__})"
            failure, code = exc, GenerationErrors.PROVIDER_UNREACHABLE
        except openai.OpenAIError as exc:  # e.g. a reply the SDK cannot decode
            log.warning("%s: unreadable answer: %s", what, str(exc)[:MAX_LOGGED_BODY])
            raise attempted(ProviderError(f"{what}: the endpoint's answer could not be read",
                                          code=GenerationErrors.PROVIDER_BAD_ANSWER), attempt) from None

        if attempt >= max_attempts:
            raise attempted(ProviderError(f"{what}: {reason}; gave up after {attempt} attempts", code=code,
                                          upstream_status=status), attempt) from failure
        if retry_after is not None and retry_after > max_backoff_s:
            raise attempted(ProviderError(f"{what}: {reason}; the server asks to wait {retry_after:g}s, more "
                                          f"than max_backoff_s={max_backoff_s:g}", code=code,
                                          upstream_status=status), attempt) from failure
        if ctx is not None and ctx.is_cancelled():
            raise attempted(ProviderError(f"{what}: cancelled while retrying ({reason})", code=code,
                                          upstream_status=status), attempt) from failure
        delay = retry_after if retry_after is not None else backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4)
        delay = min(delay, max_backoff_s)
        log.warning("%s: %s (attempt %d of %d); retrying in %.2fs", what, reason, attempt, max_attempts, delay)
        time.sleep(delay)


def _log_answer(what: str, exc: openai.APIStatusError) -> None:
    """The endpoint's error answer, for operators only: truncated, and never copied into an error."""
    try:
        body = exc.response.text
    except Exception:  # a streamed answer already closed: nothing to show
        body = ""
    log.info("%s: HTTP %s from the endpoint: %s", what, exc.status_code, body[:MAX_LOGGED_BODY])


def retry_after_seconds(headers) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def attempted(exc: ProviderError, attempts: int) -> ProviderError:
    """`exc` with the number of requests it took (usage accounting)."""
    exc.attempts = attempts
    return exc


# What videos.create takes as `seconds`.
VIDEO_SECONDS = (4, 8, 12)


def api_seconds(duration_s: float) -> int:
    """The allowed clip length nearest the shot's duration; a tie takes the longer (slowing a render down
    stretches its motion less than cutting loses it)."""
    return min(VIDEO_SECONDS, key=lambda s: (abs(s - duration_s), -s))


# Narration is spoken at about 2.5 words a second, about 6 characters a word with its space.
SPEECH_CHARACTERS_PER_SECOND = 15
MEDIA_KINDS = ("image", "video", "voice")


def estimate_media_cost(kind: str, duration_s: float, shots: int, settings: dict) -> Decimal:
    """Expected cost of a job's `kind` ("image", "video" or "voice") on openai, for budgets: an image per
    shot; per shot the seconds the endpoint renders (its allowed length nearest the shot's even share);
    the narration's characters at SPEECH_CHARACTERS_PER_SECOND. 0 where no prices are configured."""
    if kind not in MEDIA_KINDS:
        raise ValueError(f"no openai media kind '{kind}'; expected one of {MEDIA_KINDS}")
    shots = max(1, int(shots))
    if kind == "image":
        return price(settings, "per_image") * shots
    if kind == "video":
        return price(settings, "per_video_second") * api_seconds(duration_s / shots) * shots
    return price(settings, "per_speech_character") * math.ceil(SPEECH_CHARACTERS_PER_SECOND * duration_s)


def connection_test(settings: dict) -> dict:
    """Whether the endpoint of these settings answers with the key: one `models.list` request (no retries),
    through the outbound guard like every other. {"ok", "detail"} and, when it failed, the error's "code"."""
    try:
        client = openai_client(settings)
        models, _ = call_with_retries(lambda: client.models.list(), settings={**settings, "max_attempts": 1},
                                      ctx=None, what="openai: connection test")
    except ProviderError as exc:
        return {"ok": False, "code": str(exc.code), "detail": str(exc)}
    names = [model.id for model in models.data][:5]
    return {"ok": True, "detail": f"{len(models.data)} models, e.g. {', '.join(names)}" if names else "no models"}
