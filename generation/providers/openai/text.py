"""The `openai` text provider: style, script and storyboard from any OpenAI-compatible endpoint (OpenAI,
vLLM, Ollama, DeepSeek) through the official SDK, as validated JSON, with our own retries and cost accounting.

Also `moderate` (the endpoint's moderation classifier) and `estimate_cost` (an up-front figure for budgets).

Settings read from `ctx.settings` (the organization's `openai` credential, secrets decrypted):

    api_key          bearer key; may be empty for a self-hosted server that needs none
    base_url         e.g. "http://vllm:8000/v1"; default https://api.openai.com/v1. Goes through the outbound
                     guard (config/outbound.py) when saved and on every connection: a private address needs
                     OUTBOUND_ALLOW_PRIVATE_URLS or OUTBOUND_ALLOWED_NETWORKS; redirects are not followed
    model            chat model name; default "gpt-4o-mini"
    timeout_s        per-request timeout in seconds, 0.1 to 600; default 60
    max_attempts     requests per call before giving up (429, 5xx, timeouts, connection errors), 1 to 10;
                     default 4
    backoff_s        first retry delay, doubled each retry (with up to 25% jitter), 0 to 60; default 1.0
    max_backoff_s    longest single wait, 0 to 600; a Retry-After above it fails at once (another provider
                     may serve the step sooner than waiting); default 30
    response_format  "json_object" (default), "json_schema" (the stage's schema, non-strict) or "none"
                     (for servers without JSON mode: the prompt alone asks for JSON)
    temperature      0 to 2, passed through when set
    max_tokens       1 to 1,000,000, passed through when set
    seed             a 64-bit signed integer, passed through when set
    prices           {"input_per_1k": "0.00015", "output_per_1k": "0.0006"} (currency per 1,000 tokens, 0 to
                     1,000 each)
    moderation_model default "omni-moderation-latest"

client.py holds those bounds (SETTING_BOUNDS) and the whole credential's schema (SETTINGS_SCHEMA, the image,
video and voice kinds' settings too), the SDK client and the retry loop: the settings API refuses a value
outside them (400 naming the setting) and a stored one is clamped into them when read.

Errors carry a stable code (ProviderError.code) and the endpoint's HTTP status, never its answer's body:
the body is logged here, truncated, and nothing more of it travels.
"""
from __future__ import annotations

import json
import logging
import math
import re
from decimal import ROUND_CEILING, Decimal
from typing import Any, Callable, ClassVar

from generation.error_codes import GenerationErrors
from generation.providers import prompts
from generation.providers.base import ProviderError, ProviderRefused, Result, StageContext
from generation.providers.openai.client import (  # noqa: F401  (retry_after_seconds, settings_problems: API)
    SETTING_BOUNDS,
    call_with_retries,
    openai_client,
    price,
    retry_after_seconds,
    setting_number,
    settings_problems,
)
from projects import schemas

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"

TEXT_STAGES = ("style", "script", "storyboard")
STAGE_SCHEMAS = {"style": schemas.STYLE, "script": schemas.SCRIPT, "storyboard": schemas.STORYBOARD}
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


class OpenAIText:
    """TextProvider over the chat completions endpoint; each stage is one request, plus at most one more
    when the reply is not valid JSON for the stage's schema (the validation error is sent back to the model)."""

    name: ClassVar[str] = "openai"
    queue: ClassVar[str] = "llm"

    def style(self, *, topic: str, catalogue: dict, ctx: StageContext) -> Result:
        user, check = prompts.style_request(topic=topic, names=prompts.catalogue_names(catalogue),
                                            catalogue_json=json.dumps(catalogue, ensure_ascii=False, default=str))
        return self._complete(stage="style", role="art director", user=user, ctx=ctx, check=check)

    def script(self, *, topic: str, style: dict, duration_s: float, shots: int, ctx: StageContext) -> Result:
        user = prompts.script_request(topic=topic, style=style, duration_s=duration_s, shots=shots)
        return self._complete(stage="script", role="screenwriter", user=user, ctx=ctx)

    def storyboard(self, *, script: dict, style: dict, shots: int, duration_s: float, ctx: StageContext) -> Result:
        user, check = prompts.storyboard_request(script=script, style=style, shots=shots, duration_s=duration_s)
        result = self._complete(stage="storyboard", role="storyboard artist", user=user, ctx=ctx, check=check)
        result.value = prompts.storyboard_normalise(result.value, duration_s)
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
            with openai_client(settings) as client:
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
            raise ProviderError(f"openai {stage}: invalid output twice; last problem: {problem}",
                                code=GenerationErrors.PROVIDER_INVALID_OUTPUT)
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
    with openai_client(settings) as client:
        response, _ = call_with_retries(lambda: client.moderations.create(input=text, model=model),
                                        settings=settings, ctx=ctx, what="openai moderation")
    flagged = any(result.flagged for result in response.results)
    if not flagged:
        return False, ""
    categories = sorted({name for result in response.results if result.flagged
                         for name, hit in _as_dict(result.categories).items() if hit is True})
    return True, ", ".join(categories) or "flagged"


def cost_of(usage: dict, settings: dict) -> Decimal:
    """Tokens x prices (per 1,000 tokens); 0 where no prices are configured."""
    per_in, per_out = price(settings, "input_per_1k"), price(settings, "output_per_1k")
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
        raise ProviderError(f"openai: unknown response_format setting '{mode}'",
                            code=GenerationErrors.PROVIDER_MISCONFIGURED)
    for key in ("temperature", "max_tokens", "seed"):
        if settings.get(key) is not None:
            options[key] = setting_number(settings, key, None)
    return {key: value for key, value in options.items() if value is not None}


def _parse_reply(response, schema: dict, stage: str, check) -> tuple[str, Any, str | None]:
    """(raw text, data, problem); problem is None when the data is valid."""
    if not response.choices:
        return "", None, "the reply had no choices"
    choice = response.choices[0]
    message = choice.message
    if getattr(message, "refusal", None):
        raise ProviderRefused(f"openai {stage}: the model refused: {str(message.refusal)[:200]}")
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


def _as_dict(model) -> dict:
    if isinstance(model, dict):
        return model
    if hasattr(model, "to_dict"):
        return model.to_dict()
    return dict(getattr(model, "__dict__", {}))
