"""The `transformers` text provider (workers with a local model): style, script and storyboard from a causal
language model on the worker's disk, as JSON checked against the stage's schema, repaired when it is nearly
right, asked again once with the problem, and otherwise the offline planner's answer (marked) or an error.

torch and transformers are imported on first use, so this module imports in a web process without them.

Settings read from `ctx.settings` (the organization's `transformers` settings):

    model_path      a directory holding a causal LM and its tokenizer (save_pretrained), under LOCAL_MODELS_DIR
                    (checked when the settings are saved). Loaded with local_files_only (nothing is ever
                    downloaded), trust_remote_code off and safetensors weights only (no pickle)
    device          "cuda", "cuda:1", "cpu" ...; default cuda when available, else cpu
    dtype           "float16", "bfloat16" or "float32"; default bfloat16 on a GPU that has it (else float16),
                    float32 on cpu
    max_new_tokens  tokens one answer may take, 1 to 32,768; default 1024 (the model's context caps it)
    temperature     0 to 2; 0 (default) is greedy decoding; above 0, sampling seeded by `seed`
    top_p           0.01 to 1, with sampling; default 1
    seed            0 to 2**63-1; default: derived from the prompt, so the same input gives the same answer
    on_invalid      what happens when the answer is still invalid after the second request: "offline"
                    (default: the offline planner's answer for the same input, usage["fallback"] = "offline")
                    or "error" (ProviderError provider_invalid_output, so the template's next provider runs;
                    with greedy decoding the step's own retries would repeat the same answer)
    price_per_second  cost of a second of this worker's time, for Result.cost; default 0

A model stays loaded per (path, device, dtype) for the life of the worker process.
Errors carry a stable code: provider_misconfigured (no model_path, a bad setting, a prompt longer than the
model's context), provider_model_missing (no loadable model there), provider_unavailable (no torch or
transformers on this worker, or the device is not there), provider_invalid_output (with on_invalid "error").
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, ClassVar

from generation.error_codes import GenerationErrors
from generation.providers import prompts
from generation.providers.base import ProviderError, Result, StageContext, setting_bounded
from generation.providers.offline.text import OfflineText
from projects import schemas

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 1024
ON_INVALID = ("offline", "error")
STAGE_SCHEMAS = {"style": schemas.STYLE, "script": schemas.SCRIPT, "storyboard": schemas.STORYBOARD}
# (minimum, maximum, type) of each numeric setting; see the module's docstring.
SETTING_BOUNDS: dict[str, tuple[float, float, type]] = {
    "max_new_tokens": (1, 32768, int),
    "temperature": (0, 2, float),
    "top_p": (0.01, 1, float),
    "seed": (0, 2 ** 63 - 1, int),
    "price_per_second": (0, 1000, float),
}
DTYPES = {"float16": "float16", "fp16": "float16", "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float32": "float32", "fp32": "float32"}
_SETTING_TEXTS = {"model_path": "A local model directory under LOCAL_MODELS_DIR; never downloaded",
                  "device": "cuda, cuda:1, cpu ...; default cuda when available"}
_SETTING_HELP = {"max_new_tokens": "Tokens one answer may take", "temperature": "0 is greedy decoding",
                 "top_p": "Nucleus sampling, with temperature above 0", "seed": "Sampling seed",
                 "price_per_second": "Cost of a second of the worker's time"}
# What the settings API checks and the API schema shows (generation/provider_settings.py).
SETTINGS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        **{name: {"type": "string", "maxLength": 2000, "description": text} for name, text in _SETTING_TEXTS.items()},
        "dtype": {"enum": list(DTYPES)},
        **{name: {"type": "integer" if kind is int else "number", "minimum": low, "maximum": high,
                  "description": _SETTING_HELP[name]} for name, (low, high, kind) in SETTING_BOUNDS.items()},
        "on_invalid": {"enum": list(ON_INVALID), "description": "offline (default) or error, when the answer "
                                                                "is still invalid after a second request"},
    },
}
# The stop check decodes the answer so far; every few tokens is enough (a closing brace is one token).
STOP_CHECK_EVERY = 4
MAX_ANSWER_IN_RETRY = 8000
_FENCED = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.DOTALL)
_FENCE_OPEN = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*)$", re.DOTALL)


class TransformersText:
    """TextProvider over a local causal LM; each stage is one generation, plus at most one more when the answer
    is not valid JSON for the stage's schema (the problem goes back to the model in the prompt)."""

    name: ClassVar[str] = "transformers"
    queue: ClassVar[str] = "gpu"

    def style(self, *, topic: str, catalogue: dict, ctx: StageContext) -> Result:
        names = prompts.catalogue_names(catalogue)
        entries = {name: {"tags": entry.get("tags", []), "mood": entry.get("mood", "")}
                   for name, entry in (catalogue or {}).items() if name in names}  # short: a small context
        user, check = prompts.style_request(topic=topic, names=names,
                                            catalogue_json=json.dumps(entries, ensure_ascii=False))
        return self._complete(stage="style", role="art director", user=user, ctx=ctx, check=check,
                              fallback=lambda: OfflineText().style(topic=topic, catalogue=catalogue, ctx=ctx))

    def script(self, *, topic: str, style: dict, duration_s: float, shots: int, ctx: StageContext) -> Result:
        user = prompts.script_request(topic=topic, style=style, duration_s=duration_s, shots=shots)
        return self._complete(stage="script", role="screenwriter", user=user, ctx=ctx, fallback=lambda: OfflineText(
            ).script(topic=topic, style=style, duration_s=duration_s, shots=shots, ctx=ctx))

    def storyboard(self, *, script: dict, style: dict, shots: int, duration_s: float, ctx: StageContext) -> Result:
        user, check = prompts.storyboard_request(script=script, style=style, shots=shots, duration_s=duration_s)
        result = self._complete(stage="storyboard", role="storyboard artist", user=user, ctx=ctx, check=check,
                                fallback=lambda: OfflineText().storyboard(script=script, style=style, shots=shots,
                                                                          duration_s=duration_s, ctx=ctx))
        if not result.usage.get("fallback"):
            result.value = prompts.storyboard_normalise(result.value, duration_s)
        return result

    def _complete(self, *, stage: str, role: str, user: str, ctx: StageContext, fallback: Callable[[], Result],
                  check: Callable[[dict], str | None] | None = None) -> Result:
        settings = ctx.settings
        on_invalid = settings.get("on_invalid") or "offline"
        if on_invalid not in ON_INVALID:
            raise ProviderError(f"transformers: on_invalid must be one of {', '.join(ON_INVALID)}",
                                code=GenerationErrors.PROVIDER_MISCONFIGURED)
        loaded = _model_for(settings)
        schema = STAGE_SCHEMAS[stage]
        system = (f"You are the {role} of a studio that makes short videos. Reply with a single JSON object and "
                  "nothing else (no prose, no markdown fences). It must satisfy this JSON Schema:\n"
                  f"{json.dumps(schema, separators=(',', ':'))}")
        if (ctx.prompts or {}).get(stage):
            system += f"\n\nStudio instructions for this step: {ctx.prompts[stage]}"
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        usage: dict[str, Any] = {"model": loaded.path, "device": loaded.device, "dtype": loaded.dtype,
                                 "prompt_tokens": 0, "completion_tokens": 0, "rounds": 0, "seconds": 0.0}
        problem = ""
        for round_ in (1, 2):
            answer = answer_generate(loaded, messages, settings, ctx)
            usage["rounds"] = round_
            usage["prompt_tokens"] += answer.prompt_tokens
            usage["completion_tokens"] += answer.completion_tokens
            usage["seconds"] = round(usage["seconds"] + answer.seconds, 3)
            usage.update(chat_template=answer.chat_template, sampling=answer.sampling, seed=answer.seed)
            data, repairs, problem = answer_check(answer.text, schema, stage, check)
            if answer.cut_off and problem:
                problem += f" (the answer was cut off at max_new_tokens={answer.max_new_tokens}; be more concise)"
            if problem is None:
                return Result(value=data, cost=_cost(usage, settings), usage={**usage, "repairs": repairs})
            log.info("transformers %s: invalid answer (round %d): %s", stage, round_, problem)
            messages = retry_messages(messages, answer.text, problem)
        if on_invalid == "error":
            exc = ProviderError(f"transformers {stage}: invalid output twice; last problem: {problem}"[:500],
                                code=GenerationErrors.PROVIDER_INVALID_OUTPUT)
            exc.usage, exc.cost = dict(usage), _cost(usage, settings)
            raise exc
        offline = fallback()
        usage.update(fallback="offline", fallback_reason=problem[:500], offline=offline.usage)
        return Result(value=offline.value, cost=_cost(usage, settings) + offline.cost, usage=usage)


def retry_messages(messages: list[dict], answer: str, problem: str) -> list[dict]:
    """The conversation of the second request: the first answer, then what is wrong with it."""
    return [*messages, {"role": "assistant", "content": answer[:MAX_ANSWER_IN_RETRY]},
            {"role": "user", "content": f"That reply is not valid: {problem}. Reply again with only the corrected "
                                        "JSON object."}]


# --- Reading an answer -----------------------------------------------------------------------------------


class ReplyUnreadable(ValueError):
    """No JSON object could be read from the answer, even repaired; the message says why (it goes back to the
    model in the second request)."""


def reply_json(text: str) -> tuple[Any, list[str]]:
    """The JSON object in a model's answer, and the repairs it took: "code_fence" (```json ... ``` around it),
    "surrounding_text" (prose before or after it), "trailing_commas" (`[1, 2,]`, `{"a": 1,}`).

    Raises ReplyUnreadable when there is no object, it never closes (cut off), or it is not JSON even then."""
    repairs: list[str] = []
    prose = False
    # A fence whose end is missing is common too: generation stops at the object's closing brace (_stopping).
    fenced = _FENCED.search(text) or _FENCE_OPEN.search(text)
    if fenced and "{" in fenced.group(1):
        prose = bool((text[:fenced.start()] + text[fenced.end():]).strip())
        text, repairs = fenced.group(1), ["code_fence"]
    start = text.find("{")
    if start < 0:
        raise ReplyUnreadable("no JSON object in the reply")
    end = json_object_end(text, start)
    if end is None:
        raise ReplyUnreadable("the JSON object never closes")
    if prose or text[:start].strip() or text[end:].strip():
        repairs.append("surrounding_text")
    candidate = text[start:end]
    try:
        return json.loads(candidate), repairs
    except json.JSONDecodeError:
        pass
    fixed = trailing_commas_remove(candidate)
    try:
        data = json.loads(fixed)
    except json.JSONDecodeError as exc:
        raise ReplyUnreadable(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return data, [*repairs, "trailing_commas"]


def json_outside_strings(text: str, start: int = 0):
    """(index, char) of every character of `text` from `start` that is not inside a JSON string (the quotes
    themselves and what escapes hide are left out)."""
    in_string, escaped = False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            yield index, char


def json_object_end(text: str, start: int) -> int | None:
    """The index just past the brace that closes the object opening at text[start], or None when it never
    closes. Braces and brackets inside strings do not count."""
    depth = 0
    for index, char in json_outside_strings(text, start):
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def trailing_commas_remove(text: str) -> str:
    """`text` without the commas that only whitespace separates from a closing brace or bracket (outside
    strings): the commonest way a model's JSON is almost right."""
    dropped = {index for index, char in json_outside_strings(text)
               if char == "," and text[index + 1:].lstrip()[:1] in ("}", "]")}
    return "".join(char for index, char in enumerate(text) if index not in dropped)


def answer_check(text: str, schema: dict, stage: str, check) -> tuple[Any, list[str], str | None]:
    """(data, repairs, problem): problem is None when the answer, repaired, is valid for the stage."""
    try:
        data, repairs = reply_json(text)
    except ReplyUnreadable as exc:
        return None, [], str(exc)
    try:
        schemas.validate(data, schema, stage)
    except schemas.SchemaError as exc:
        return None, repairs, str(exc)
    return data, repairs, check(data) if check else None


# --- Generating -------------------------------------------------------------------------------------------


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    max_new_tokens: int
    cut_off: bool
    seconds: float
    chat_template: bool
    sampling: str  # "greedy" or "seeded"
    seed: int | None


def prompt_build(tokenizer, messages: list[dict]) -> tuple[str, bool]:
    """(prompt, templated): the tokenizer's chat template when it has one, else plain role-labelled turns."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
        except Exception as exc:  # some templates (Gemma's) refuse a system turn: fold it into the first user turn
            log.info("transformers: chat template refused the messages (%s); folding the system turn", exc)
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            rest = [dict(m) for m in messages if m["role"] != "system"]
            if rest:
                rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
            return tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True), True
    turns = [f"{message['role'].capitalize()}: {message['content']}" for message in messages]
    return "\n\n".join([*turns, "Assistant:"]), False


def answer_generate(loaded: LoadedModel, messages: list[dict], settings: dict, ctx: StageContext) -> Answer:
    torch = _torch()
    transformers = _transformers()
    tokenizer, model = loaded.tokenizer, loaded.model
    prompt, templated = prompt_build(tokenizer, messages)
    # A chat template writes its own begin-of-text token; a plain prompt gets the tokenizer's.
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=not templated)
    input_ids = encoded["input_ids"].to(loaded.device)
    attention_mask = encoded.get("attention_mask")
    attention_mask = attention_mask.to(loaded.device) if attention_mask is not None else None
    prompt_tokens = int(input_ids.shape[1])
    max_new = setting_number(settings, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    context = _context_length(model)
    if context:
        if prompt_tokens >= context:
            raise ProviderError(f"transformers: the prompt ({prompt_tokens} tokens) does not fit the model's "
                                f"context of {context} tokens", code=GenerationErrors.PROVIDER_MISCONFIGURED)
        max_new = min(max_new, context - prompt_tokens)
    temperature = setting_number(settings, "temperature", 0.0)
    sampling = temperature > 0
    seed = None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    options: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": sampling, "pad_token_id": pad}
    if tokenizer.eos_token_id is not None:
        options["eos_token_id"] = tokenizer.eos_token_id
    if sampling:
        seed = setting_number(settings, "seed", None)
        if seed is None:
            seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") >> 1
        options.update(temperature=temperature, top_p=setting_number(settings, "top_p", 1.0), top_k=0)
    else:
        options.update(temperature=None, top_p=None, top_k=None)  # the model's sampling defaults do not apply
    config = transformers.GenerationConfig(**options)
    stopping = transformers.StoppingCriteriaList([_stopping(tokenizer, prompt_tokens, ctx)])
    started = time.monotonic()
    try:
        with loaded.lock, torch.inference_mode():
            if sampling:
                torch.manual_seed(seed)  # the global generators, under the model's lock: one call at a time
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                    stopping_criteria=stopping)
    except Exception as exc:
        if _is_out_of_memory(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise ProviderError(f"transformers: out of memory on {loaded.device} ({prompt_tokens} prompt tokens, "
                                f"max_new_tokens={max_new})") from exc
        raise ProviderError(f"transformers: generation failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    if ctx.is_cancelled():
        raise ProviderError("transformers: cancelled")
    new = output[0, prompt_tokens:]
    text = tokenizer.decode(new, skip_special_tokens=True)
    completion_tokens = int(new.shape[0])
    return Answer(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, max_new_tokens=max_new,
                  cut_off=completion_tokens >= max_new, seconds=time.monotonic() - started,
                  chat_template=templated, sampling="seeded" if sampling else "greedy", seed=seed)


def _stopping(tokenizer, prompt_tokens: int, ctx: StageContext):
    """Stops once the answer holds a complete JSON object (what follows would be cut anyway), or the job
    was cancelled."""
    torch = _torch()
    transformers = _transformers()

    class JsonDone(transformers.StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = ctx.is_cancelled()
            produced = input_ids.shape[1] - prompt_tokens
            if not done and produced and produced % STOP_CHECK_EVERY == 0:
                text = tokenizer.decode(input_ids[0, prompt_tokens:], skip_special_tokens=True)
                start = text.find("{")
                done = start >= 0 and json_object_end(text, start) is not None
            return torch.full((input_ids.shape[0],), bool(done), dtype=torch.bool, device=input_ids.device)

    return JsonDone()


# --- Loading ---------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    path: str
    device: str
    dtype: str
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time per model


_MODELS: dict[tuple[str, str, str], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def model_load(path: str, device: str, dtype: str) -> LoadedModel:
    """The model at `path` on `device`, loaded on the first call of this process and kept."""
    key = (path, device, dtype)
    with _MODELS_LOCK:
        if key not in _MODELS:
            model, tokenizer = _from_pretrained(path, dtype)
            try:
                model.to(device)
            except Exception as exc:  # e.g. "cuda" on a worker without one
                raise ProviderError(f"transformers: cannot move the model to {device}: {type(exc).__name__}: "
                                    f"{str(exc)[:200]}", code=GenerationErrors.PROVIDER_UNAVAILABLE) from exc
            model.eval()
            _MODELS[key] = LoadedModel(model=model, tokenizer=tokenizer, path=path, device=device, dtype=dtype)
        return _MODELS[key]


def model_cache_clear() -> None:
    with _MODELS_LOCK:
        _MODELS.clear()


def _from_pretrained(path: str, dtype: str):
    """Load from disk only; the one place that touches transformers' loaders."""
    torch = _torch()
    transformers = _transformers()
    target = os.path.expanduser(path)
    if (os.path.isabs(target) or target.startswith(".") or os.sep in target) and not os.path.isdir(target):
        raise ProviderError(f"transformers: no model at {path} (models are never downloaded)",
                            code=GenerationErrors.PROVIDER_MODEL_MISSING)
    transformers.utils.logging.disable_progress_bar()  # a bar per load is noise in a worker's log
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(target, local_files_only=True, trust_remote_code=False)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            target, local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError) as exc:
        raise ProviderError(f"transformers: cannot load a causal language model from {path}: {type(exc).__name__}: "
                            f"{str(exc)[:300]}", code=GenerationErrors.PROVIDER_MODEL_MISSING) from exc
    return model, tokenizer


def _model_for(settings: dict) -> LoadedModel:
    path = settings.get("model_path")
    if not path or not isinstance(path, str):
        raise ProviderError("transformers: no model_path configured", code=GenerationErrors.PROVIDER_MISCONFIGURED)
    torch = _torch()
    device = str(settings.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if settings.get("dtype"):
        dtype = DTYPES.get(str(settings["dtype"]))
        if dtype is None:
            raise ProviderError(f"transformers: unknown dtype '{settings['dtype']}'",
                                code=GenerationErrors.PROVIDER_MISCONFIGURED)
    elif device.startswith("cpu"):
        dtype = "float32"
    else:
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
    return model_load(path, device, dtype)


def _context_length(model) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = _torch()
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


# --- Settings ----------------------------------------------------------------------------------------------


def setting_number(settings: dict, name: str, default):
    """A numeric setting clamped into SETTING_BOUNDS, or the default (generation.providers.base.setting_bounded)."""
    return setting_bounded(settings, name, default, SETTING_BOUNDS)


def settings_problems(settings: dict) -> dict[str, list[str]]:
    """What is wrong with a set of transformers settings, by setting name (empty when nothing is)."""
    problems: dict[str, list[str]] = {}
    for name, (low, high, kind) in SETTING_BOUNDS.items():
        value = settings.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                kind is int and not float(value).is_integer()):
            problems[name] = [f"must be {'a whole number' if kind is int else 'a number'} from {low:g} to {high:g}"]
        elif not (math.isfinite(value) and low <= value <= high):
            problems[name] = [f"must be from {low:g} to {high:g}"]
    for name in ("model_path", "device"):
        value = settings.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 2000):
            problems[name] = ["must be a string of at most 2000 characters"]
    if settings.get("dtype") is not None and settings["dtype"] not in DTYPES:
        problems["dtype"] = [f"must be one of {', '.join(DTYPES)}"]
    if settings.get("on_invalid") is not None and settings["on_invalid"] not in ON_INVALID:
        problems["on_invalid"] = [f"must be one of {', '.join(ON_INVALID)}"]
    for name in sorted(set(settings) - set(SETTINGS_SCHEMA["properties"])):
        problems[name] = ["is not a setting of this provider"]
    return problems


def _cost(usage: dict, settings: dict) -> Decimal:
    price = setting_number(settings, "price_per_second", 0.0)
    return Decimal(str(price)) * Decimal(str(usage.get("seconds", 0)))


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ProviderError("transformers: torch is not installed on this worker (requirements/gpu.txt)",
                            code=GenerationErrors.PROVIDER_UNAVAILABLE) from exc
    return torch


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise ProviderError("transformers: the transformers package is not installed on this worker "
                            "(requirements/gpu.txt)", code=GenerationErrors.PROVIDER_UNAVAILABLE) from exc
    return transformers
