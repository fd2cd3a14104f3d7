"""The `openai` text provider: style, script and storyboard from any OpenAI-compatible endpoint (OpenAI,
vLLM, Ollama, DeepSeek) through the official SDK, as validated JSON, with our own retries and cost accounting.

Also `moderate` (the endpoint's moderation classifier) and `estimate_cost` (an up-front figure for budgets).

Settings read from `ctx.settings` (the organization's `openai` credential, secrets decrypted):

    api_key          bearer key; may be empty for a self-hosted server that needs none
    base_url         e.g. "http://vllm:8000/v1"; default https://api.openai.com/v1
    model            chat model name; default "gpt-4o-mini"
    timeout_s        per-request timeout in seconds; default 60
    max_attempts     requests per call before giving up (429, 5xx, timeouts, connection errors); default 4
    backoff_s        first retry delay, doubled each retry (with up to 25% jitter); default 1.0
    max_backoff_s    longest single wait; a Retry-After above it fails at once (another provider may serve
                     the step sooner than waiting); default 30
    response_format  "json_object" (default), "json_schema" (the stage's schema, non-strict) or "none"
                     (for servers without JSON mode: the prompt alone asks for JSON)
    temperature, max_tokens, seed   passed through when set
    prices           {"input_per_1k": "0.00015", "output_per_1k": "0.0006"} (currency per 1,000 tokens)
    moderation_model default "omni-moderation-latest"
"""
from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import time
from decimal import ROUND_CEILING, Decimal
from typing import Any, Callable, ClassVar

import openai

from generation import schemas
from generation.providers.base import ProviderError, ProviderRefused, Result, StageContext

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 30.0

# 408 and 409 are what the SDK's own retry treats as transient too; other 4xx are our configuration or
# request at fault, and repeating them only burns quota.
RETRYABLE_STATUSES = {408, 409, 429}
REFUSAL_CODES = {"content_policy_violation", "content_filter"}
TEXT_STAGES = ("style", "script", "storyboard")
STAGE_SCHEMAS = {"style": schemas.STYLE, "script": schemas.SCRIPT, "storyboard": schemas.STORYBOARD}
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


class OpenAIText:
    """TextProvider over the chat completions endpoint; each stage is one request, plus at most one more
    when the reply is not valid JSON for the stage's schema (the validation error is sent back to the model)."""

    name: ClassVar[str] = "openai"
    queue: ClassVar[str] = "llm"

    def style(self, *, topic: str, catalogue: dict, ctx: StageContext) -> Result:
        names = _catalogue_names(catalogue)
        user = (f"Topic: {topic}\n\nChoose the visual style that fits this topic best. Use one of these style "
                f"names exactly: {', '.join(names or schemas.STYLE_NAMES)}.\n"
                f"Style catalogue: {json.dumps(catalogue, ensure_ascii=False, default=str)}\n"
                "Give 3 to 8 palette colours as #rrggbb and a visual description an image model can follow.")

        def check(data: dict) -> str | None:
            if names and data["name"] not in names:
                return f"style name '{data['name']}' is not in the catalogue; use one of: {', '.join(names)}"
            return None

        return self._complete(stage="style", role="art director", user=user, ctx=ctx, check=check)

    def script(self, *, topic: str, style: dict, duration_s: float, shots: int, ctx: StageContext) -> Result:
        user = (f"Topic: {topic}\nStyle: {json.dumps(style, ensure_ascii=False)}\n\n"
                f"Write the script of a {duration_s:g}-second video in about {shots} scenes. Scene durations "
                f"(duration_s, seconds) must add up to {duration_s:g}. Narration is spoken at about 2.5 words "
                "per second, so keep each scene's narration within its duration.")
        return self._complete(stage="script", role="screenwriter", user=user, ctx=ctx)

    def storyboard(self, *, script: dict, style: dict, shots: int, duration_s: float, ctx: StageContext) -> Result:
        user = (f"Script: {json.dumps(script, ensure_ascii=False)}\nStyle: {json.dumps(style, ensure_ascii=False)}\n\n"
                f"Break the script into exactly {shots} shots numbered 1 to {shots}, whose durations (duration_s, "
                f"seconds, at least 0.5 each) add up to {duration_s:g}. Each description is the shot's first frame "
                "as an image model should draw it. camera_movement is one of "
                f"{', '.join(schemas.CAMERA_MOVEMENTS)}; shot_type is one of {', '.join(schemas.SHOT_TYPES)}.")

        def check(data: dict) -> str | None:
            if len(data["shots"]) != shots:
                return f"expected exactly {shots} shots, got {len(data['shots'])}"
            return None

        result = self._complete(stage="storyboard", role="storyboard artist", user=user, ctx=ctx, check=check)
        result.value = _normalise_storyboard(result.value, duration_s)
        return result

    def _complete(self, *, stage: str, role: str, user: str, ctx: StageContext,
                  check: Callable[[dict], str | None] | None = None) -> Result:
        settings = ctx.settings
        schema = STAGE_SCHEMAS[stage]
        model = settings.get("model") or DEFAULT_MODEL
        system = (f"You are the {role} of a studio that makes short videos. Reply with a single JSON object and "
                  "nothing else (no prose, no markdown fences). It must satisfy this JSON Schema:\n"
                  f"{json.dumps(schema, separators=(',', ':'))}")
        if (ctx.prompts or {}).get(stage):
            system += f"\n\nStudio instructions for this step: {ctx.prompts[stage]}"
        messages: list[dict] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        usage = {"model": model, "prompt_tokens": 0, "completion_tokens": 0, "attempts": 0}
        request = _request_options(settings, stage, schema)

        try:
            with _client(settings) as client:
                for round_ in (1, 2):
                    try:
                        response, attempts = call_with_retries(
                            lambda: client.chat.completions.create(model=model, messages=messages, **request),
                            settings=settings, ctx=ctx, what=f"openai {stage}")
                    except ProviderError as exc:
                        usage["attempts"] += getattr(exc, "attempts", 0)
                        raise
                    usage["attempts"] += attempts
                    if response.usage is not None:
                        usage["prompt_tokens"] += response.usage.prompt_tokens or 0
                        usage["completion_tokens"] += response.usage.completion_tokens or 0
                    text, data, problem = _parse_reply(response, schema, stage, check)
                    if problem is None:
                        return Result(value=data, cost=cost_of(usage, settings), usage=usage)
                    log.info("openai %s: invalid reply (round %d): %s", stage, round_, problem)
                    messages = [*messages, {"role": "assistant", "content": text[:8000]},
                                {"role": "user", "content": f"That reply is not valid: {problem}. Reply again "
                                                            "with only the corrected JSON object."}]
            raise ProviderError(f"openai {stage}: invalid output twice; last problem: {problem}")
        except ProviderError as exc:
            # Failed calls are billed too: the error carries what was spent, for budgets.
            exc.usage = dict(usage)
            exc.cost = cost_of(usage, settings)
            raise


def moderate(text: str, ctx: StageContext) -> tuple[bool, str]:
    """(flagged, reason): reason names the flagged categories, comma-separated, or is "" when not flagged.

    Raises ProviderError when the endpoint cannot be reached or keeps failing (same retries as the stages)."""
    if not text.strip():
        return False, ""
    settings = ctx.settings
    model = settings.get("moderation_model") or DEFAULT_MODERATION_MODEL
    with _client(settings) as client:
        response, _ = call_with_retries(lambda: client.moderations.create(input=text, model=model),
                                        settings=settings, ctx=ctx, what="openai moderation")
    flagged = any(result.flagged for result in response.results)
    if not flagged:
        return False, ""
    categories = sorted({name for result in response.results if result.flagged
                         for name, hit in _as_dict(result.categories).items() if hit is True})
    return True, ", ".join(categories) or "flagged"


def call_with_retries(call: Callable[[], Any], *, settings: dict, ctx: StageContext | None,
                      what: str) -> tuple[Any, int]:
    """Run one SDK request, retrying 408/409/429/5xx, timeouts and connection errors; (response, attempts).

    Waits backoff_s * 2**n (plus up to 25% jitter), or the server's Retry-After when it sends one.
    Raises ProviderRefused for a content-policy refusal, ProviderError otherwise (with .attempts set)."""
    max_attempts = max(1, int(settings.get("max_attempts", DEFAULT_MAX_ATTEMPTS)))
    backoff_s = float(settings.get("backoff_s", DEFAULT_BACKOFF_S))
    max_backoff_s = float(settings.get("max_backoff_s", DEFAULT_MAX_BACKOFF_S))
    attempt = 0
    while True:
        attempt += 1
        retry_after = None
        try:
            return call(), attempt
        except openai.APIStatusError as exc:
            if exc.code in REFUSAL_CODES:
                raise _attempted(ProviderRefused(f"{what}: refused by the endpoint: {exc.message}"), attempt) from exc
            if exc.status_code not in RETRYABLE_STATUSES and exc.status_code < 500:
                raise _attempted(ProviderError(f"{what}: HTTP {exc.status_code}: {exc.message}"), attempt) from exc
            retry_after = retry_after_seconds(exc.response.headers)
            failure: Exception = exc
            reason = f"HTTP {exc.status_code}"
        except openai.APITimeoutError as exc:  # before APIConnectionError, its parent
            failure, reason = exc, "timed out"
        except openai.APIConnectionError as exc:
            failure, reason = exc, f"connection failed ({exc.__cause__ or exc})"
        except openai.OpenAIError as exc:  # e.g. a reply the SDK cannot decode
            raise _attempted(ProviderError(f"{what}: {exc}"), attempt) from exc

        if attempt >= max_attempts:
            raise _attempted(ProviderError(f"{what}: {reason}; gave up after {attempt} attempts"), attempt) from failure
        if retry_after is not None and retry_after > max_backoff_s:
            raise _attempted(ProviderError(f"{what}: {reason}; the server asks to wait {retry_after:g}s, more "
                                           f"than max_backoff_s={max_backoff_s:g}"), attempt) from failure
        if ctx is not None and ctx.is_cancelled():
            raise _attempted(ProviderError(f"{what}: cancelled while retrying ({reason})"), attempt) from failure
        delay = retry_after if retry_after is not None else backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4)
        delay = min(delay, max_backoff_s)
        log.warning("%s: %s (attempt %d of %d); retrying in %.2fs", what, reason, attempt, max_attempts, delay)
        time.sleep(delay)


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


def cost_of(usage: dict, settings: dict) -> Decimal:
    """Tokens x prices (per 1,000 tokens); 0 where no prices are configured."""
    prices = settings.get("prices") or {}
    per_in = _decimal(prices.get("input_per_1k", 0))
    per_out = _decimal(prices.get("output_per_1k", 0))
    return (per_in * usage["prompt_tokens"] + per_out * usage["completion_tokens"]) / 1000


# Up-front estimate, per stage: (prompt tokens, completion tokens) = fixed + per_shot * shots + per_second *
# duration_s. The fixed prompt part is the instructions plus the stage's schema (~600 tokens), and for the
# style the catalogue (~1,400 tokens for generation/styles.py); the script grows with narration (~2.5 spoken
# words a second, ~1.4 tokens a word) and the storyboard re-reads the script. ESTIMATE_MARGIN covers an
# occasional second request and longer-than-usual replies.
ESTIMATE_TOKENS = {
    #             prompt: fixed, per shot, per second   completion: fixed, per shot, per second
    "style": ((2000, 0, 0), (250, 0, 0)),
    "script": ((1000, 0, 0), (150, 60, 3.5)),
    "storyboard": ((1300, 60, 3.5), (50, 160, 0)),
}
ESTIMATE_MARGIN = Decimal("1.25")


def estimate_cost(stage: str, duration_s: float, shots: int, settings: dict) -> Decimal:
    """Expected cost of one text stage ("style", "script", "storyboard", or "all" for the three), rounded up
    to 4 decimal places; 0 where no prices are configured."""
    stages = TEXT_STAGES if stage == "all" else (stage,)
    total = Decimal("0")
    for name in stages:
        if name not in ESTIMATE_TOKENS:
            raise ValueError(f"the openai provider runs no '{name}' stage; expected one of {TEXT_STAGES} or 'all'")
        (p0, p_shot, p_sec), (c0, c_shot, c_sec) = ESTIMATE_TOKENS[name]
        usage = {"prompt_tokens": math.ceil(p0 + p_shot * shots + p_sec * duration_s),
                 "completion_tokens": math.ceil(c0 + c_shot * shots + c_sec * duration_s)}
        total += cost_of(usage, settings)
    return (total * ESTIMATE_MARGIN).quantize(Decimal("0.0001"), rounding=ROUND_CEILING)


def _client(settings: dict) -> openai.OpenAI:
    base_url = settings.get("base_url") or DEFAULT_BASE_URL
    api_key = settings.get("api_key")
    if not api_key and base_url.rstrip("/") == DEFAULT_BASE_URL:
        raise ProviderError("openai: no api_key configured for api.openai.com")
    # Always pass a key: left empty, the SDK would read OPENAI_API_KEY from the worker's environment, which
    # must never stand in for a tenant's own key. Self-hosted servers accept any value.
    return openai.OpenAI(api_key=api_key or "unused", base_url=base_url,
                         timeout=float(settings.get("timeout_s", DEFAULT_TIMEOUT_S)), max_retries=0)


def _request_options(settings: dict, stage: str, schema: dict) -> dict:
    options: dict[str, Any] = {}
    mode = settings.get("response_format", "json_object")
    if mode == "json_object":
        options["response_format"] = {"type": "json_object"}
    elif mode == "json_schema":
        # Not strict: strict mode demands additionalProperties=false and every property required.
        options["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": stage, "schema": schema, "strict": False}}
    elif mode != "none":
        raise ProviderError(f"openai: unknown response_format setting '{mode}'")
    for key in ("temperature", "max_tokens", "seed"):
        if settings.get(key) is not None:
            options[key] = settings[key]
    return options


def _parse_reply(response, schema: dict, stage: str, check) -> tuple[str, Any, str | None]:
    """(raw text, data, problem); problem is None when the data is valid."""
    if not response.choices:
        return "", None, "the reply had no choices"
    choice = response.choices[0]
    message = choice.message
    if getattr(message, "refusal", None):
        raise ProviderRefused(f"openai {stage}: the model refused: {message.refusal}")
    if choice.finish_reason == "content_filter":
        raise ProviderRefused(f"openai {stage}: the reply was withheld by the content filter")
    text = message.content or ""
    if choice.finish_reason == "length":
        return text, None, "the reply was cut off at the token limit; be more concise"
    fenced = _FENCE.match(text)
    try:
        data = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError as exc:
        return text, None, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    try:
        schemas.validate(data, schema, stage)
    except schemas.SchemaError as exc:
        return text, None, str(exc)
    problem = check(data) if check else None
    return text, data, problem


def _normalise_storyboard(data: dict, duration_s: float) -> dict:
    """Number shots 1..n and scale their durations to add up to duration_s (models are loose with both)."""
    shots = data["shots"]
    for number, shot in enumerate(shots, start=1):
        shot["number"] = number
    total = sum(shot["duration_s"] for shot in shots)
    if duration_s > 0 and total > 0 and abs(total - duration_s) > 0.01 * duration_s:
        factor = duration_s / total
        for shot in shots:
            shot["duration_s"] = min(120.0, max(0.5, round(shot["duration_s"] * factor, 2)))
    return data


def _catalogue_names(catalogue) -> list[str]:
    if isinstance(catalogue, dict):
        names = list(catalogue)
    elif isinstance(catalogue, (list, tuple)):
        names = [item.get("name") if isinstance(item, dict) else item for item in catalogue]
    else:
        names = []
    return [name for name in names if name in schemas.STYLE_NAMES]


def _as_dict(model) -> dict:
    if isinstance(model, dict):
        return model
    if hasattr(model, "to_dict"):
        return model.to_dict()
    return dict(getattr(model, "__dict__", {}))


def _decimal(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


def _attempted(exc: ProviderError, attempts: int) -> ProviderError:
    exc.attempts = attempts
    return exc
