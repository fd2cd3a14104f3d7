"""The transformers text provider on CPU with tiny GPT-2 models built here and saved to tmp_path (nothing is
downloaded): a byte-level BPE tokenizer trained on a few sentences, one randomly initialised model (its
answers are noise: the fallback and error paths), and one trained here for a second on two prompts so that
greedy decoding gives a chosen answer (the success path: repair, the second request, the schema check).
The real GPU path runs only where CUDA is available, and is reported as skipped elsewhere.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

try:
    import tokenizers
    import torch
    import transformers
except ImportError as missing:
    # CI installs requirements/gpu.txt and sets REQUIRE_GPU_DEPS=1: there a missing package fails the run.
    if os.environ.get("REQUIRE_GPU_DEPS") == "1":
        raise
    pytest.skip(f"needs the GPU worker packages ({missing.name}): make install-gpu", allow_module_level=True)

from generation.error_codes import GenerationErrors  # noqa: E402
from generation.providers import provider_class, provider_queue  # noqa: E402
from generation.providers.base import ProviderError, StageContext  # noqa: E402
from generation.providers.offline.text import OfflineText  # noqa: E402
from generation.providers.transformers import text as tt  # noqa: E402
from generation.providers.transformers.text import ReplyUnreadable, TransformersText, reply_json  # noqa: E402
from generation.styles import STYLE_CATALOGUE  # noqa: E402
from projects import schemas  # noqa: E402

transformers.utils.logging.disable_progress_bar()
REPO_ROOT = Path(__file__).resolve().parents[2]
EOS = "<|endoftext|>"
# The trained model's answers: the first names a style that does not exist (the schema refuses it), the second
# is right but wrapped the way models do: prose, an unclosed code fence, trailing commas.
FIRST_ANSWER = ('{"name": "opera", "tags": ["snow"], "visual_description": "a fox", "mood": "calm", '
                '"palette": ["#ffffff", "#dde3ea", "#c0392b"]}')
SECOND_ANSWER = ('Here you are:\n```json\n{"name": "nature", "tags": ["snow", "fox",], "visual_description": '
                 '"a red fox in deep snow", "mood": "calm", "palette": ["#ffffff", "#dde3ea", "#c0392b",],}\n```\n'
                 'Enjoy!')
# A chat template that renders only the turn count: the first request ends "user turn 2:", the second (after the
# answer and the problem) "user turn 4:", short prompts the tiny model learns quickly.
TURN_TEMPLATE = "{{ messages[-1]['role'] }} turn {{ messages|length }}:"
CATALOGUE = {name: STYLE_CATALOGUE[name] for name in ("nature", "urban")}
TIMINGS: dict[str, float] = {}


def tokenizer_build(corpus: list[str], folder: Path, chat_template: str | None = None):
    """A byte-level BPE tokenizer (lossless: JSON decodes back exactly) trained on `corpus`, saved to `folder`."""
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    bpe.train_from_iterator(corpus, tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=[EOS], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=EOS)
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return tokenizer


def gpt2_tiny(tokenizer, n_positions: int = 4096):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=64, n_layer=2,
                                     n_head=4, bos_token_id=tokenizer.eos_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
    return transformers.GPT2LMHeadModel(config)


@pytest.fixture(scope="module", autouse=True)
def _one_cpu_thread():
    """These models are tiny: on a busy machine torch's thread pool spins against other processes (training took
    48 s with two threads under load, 2 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def random_model_path(tmp_path_factory) -> str:
    started = time.monotonic()
    folder = tmp_path_factory.mktemp("random-lm")
    tokenizer = tokenizer_build([FIRST_ANSWER, json.dumps(schemas.STYLE), "You are the art director of a studio."],
                                folder)
    gpt2_tiny(tokenizer).save_pretrained(folder)
    TIMINGS["build random model"] = time.monotonic() - started
    return str(folder)


@pytest.fixture(scope="module")
def trained_model_path(tmp_path_factory) -> str:
    """A tiny GPT-2 taught (teacher forcing until every answer token is the argmax) to answer FIRST_ANSWER to
    the first request and SECOND_ANSWER to the second."""
    started = time.monotonic()
    folder = tmp_path_factory.mktemp("trained-lm")
    tokenizer = tokenizer_build([FIRST_ANSWER, SECOND_ANSWER, "user turn 2: user turn 4:"], folder, TURN_TEMPLATE)
    pairs = [("user turn 2:", FIRST_ANSWER), ("user turn 4:", SECOND_ANSWER)]
    sequences = [(tokenizer(prompt, add_special_tokens=False)["input_ids"],
                  tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
                 for prompt, answer in pairs]
    length = max(len(prompt) + len(answer) for prompt, answer in sequences)
    ids = torch.zeros((len(pairs), length), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (prompt, answer) in enumerate(sequences):
        ids[row, :len(prompt) + len(answer)] = torch.tensor(prompt + answer)
        mask[row, :len(prompt) + len(answer)] = 1
        labels[row, len(prompt):len(prompt) + len(answer)] = torch.tensor(answer)
    model = gpt2_tiny(tokenizer, n_positions=256)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1000):
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        predicted, target = out.logits[:, :-1].argmax(-1), labels[:, 1:]
        if ((predicted == target) | (target == -100)).all() and out.loss.item() < 0.05:
            break
    else:
        pytest.fail("the tiny model did not learn its answers")
    model.save_pretrained(folder)
    TIMINGS["build and train model"] = time.monotonic() - started
    return str(folder)


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    tt.model_cache_clear()
    yield
    tt.model_cache_clear()


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: the provider must load from disk alone."""
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"network disabled in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def make_ctx(tmp_path):
    def make(prompts: dict | None = None, **settings) -> StageContext:
        return StageContext(organization_id=1, job_id="job-1", options={"duration_s": 12, "shots": 3},
                            prompts=prompts or {}, work_dir=tmp_path, settings={"device": "cpu", **settings})
    return make


@pytest.fixture(scope="module", autouse=True)
def _report_timings():
    yield
    if TIMINGS:
        print("\ntransformers provider timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in TIMINGS.items()))


# Registration


def test_registered_as_a_text_provider_on_the_gpu_queue():
    from projects.templates import PROVIDERS_BY_KIND

    assert provider_class("text", "transformers") is TransformersText
    assert provider_queue("text", "transformers") == "gpu"
    assert "transformers" in PROVIDERS_BY_KIND["text"]
    assert "transformers" not in PROVIDERS_BY_KIND["image"]


# The success path, with the trained model


def test_a_repaired_valid_answer_after_a_second_request(trained_model_path, make_ctx, no_network):
    started = time.monotonic()
    result = TransformersText().style(topic="a fox in snow", catalogue=CATALOGUE,
                                      ctx=make_ctx(model_path=trained_model_path))
    TIMINGS["style, two requests"] = time.monotonic() - started

    # The first answer named no known style: the schema refused it and the model was asked again.
    assert result.value == {"name": "nature", "tags": ["snow", "fox"], "visual_description": "a red fox in deep snow",
                            "mood": "calm", "palette": ["#ffffff", "#dde3ea", "#c0392b"]}
    usage = result.usage
    assert usage["rounds"] == 2
    assert usage["repairs"] == ["code_fence", "surrounding_text", "trailing_commas"]
    assert (usage["chat_template"], usage["sampling"], usage["device"], usage["dtype"]) == (True, "greedy", "cpu",
                                                                                           "float32")
    assert "fallback" not in usage
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    # Generation stopped at the object's closing brace: the fence's end and "Enjoy!" were never generated.
    second = len(transformers.AutoTokenizer.from_pretrained(trained_model_path)(SECOND_ANSWER)["input_ids"])
    first = len(transformers.AutoTokenizer.from_pretrained(trained_model_path)(FIRST_ANSWER)["input_ids"])
    assert usage["completion_tokens"] < first + 1 + second
    assert no_network == []


def test_the_model_is_loaded_once_per_path_and_device_and_time_is_the_cost(trained_model_path, make_ctx):
    ctx = make_ctx(model_path=trained_model_path, price_per_second=2)
    TransformersText().style(topic="a fox", catalogue=CATALOGUE, ctx=ctx)
    loaded = tt.model_load(trained_model_path, "cpu", "float32")
    result = TransformersText().style(topic="another fox", catalogue=CATALOGUE, ctx=ctx)

    assert list(tt._MODELS) == [(trained_model_path, "cpu", "float32")]
    assert tt.model_load(trained_model_path, "cpu", "float32") is loaded
    assert result.usage["seconds"] > 0
    assert float(result.cost) == pytest.approx(2 * result.usage["seconds"])


# Invalid answers, with the random model


def test_an_invalid_answer_twice_falls_back_to_the_offline_planner_marked(random_model_path, make_ctx, no_network):
    ctx = make_ctx(model_path=random_model_path, max_new_tokens=24)
    started = time.monotonic()
    result = TransformersText().style(topic="a fox in snow", catalogue=CATALOGUE, ctx=ctx)
    TIMINGS["style, random model, fallback"] = time.monotonic() - started

    assert result.value == OfflineText().style(topic="a fox in snow", catalogue=CATALOGUE, ctx=ctx).value
    usage = result.usage
    assert usage["fallback"] == "offline"
    assert usage["rounds"] == 2
    assert "cut off at max_new_tokens=24" in usage["fallback_reason"]
    assert usage["offline"]["model"] == "offline"
    assert usage["chat_template"] is False  # this tokenizer has none: plain role-labelled turns
    assert no_network == []


def test_storyboard_fallback_keeps_the_shot_count(random_model_path, make_ctx):
    ctx = make_ctx(model_path=random_model_path, max_new_tokens=8)
    style = OfflineText().style(topic="a fox", catalogue=STYLE_CATALOGUE, ctx=ctx).value
    script = OfflineText().script(topic="a fox", style=style, duration_s=12, shots=3, ctx=ctx).value

    result = TransformersText().storyboard(script=script, style=style, shots=3, duration_s=12, ctx=ctx)

    assert result.usage["fallback"] == "offline"
    assert len(result.value["shots"]) == 3
    schemas.validate(result.value, schemas.STORYBOARD, "storyboard")


def test_on_invalid_error_raises_a_stable_code_for_the_next_provider(random_model_path, make_ctx):
    ctx = make_ctx(model_path=random_model_path, max_new_tokens=8, on_invalid="error")

    with pytest.raises(ProviderError) as caught:
        TransformersText().script(topic="a fox", style={"name": "nature"}, duration_s=12, shots=3, ctx=ctx)

    assert caught.value.code == GenerationErrors.PROVIDER_INVALID_OUTPUT
    assert "invalid output twice" in str(caught.value)
    assert caught.value.usage["rounds"] == 2


def test_greedy_is_repeatable_and_sampling_follows_the_seed(random_model_path, make_ctx):
    loaded = tt.model_load(random_model_path, "cpu", "float32")
    messages = [{"role": "user", "content": "Topic: a fox"}]

    def answer(**settings):
        return tt.answer_generate(loaded, messages, {"max_new_tokens": 12, **settings}, make_ctx()).text

    assert answer() == answer()
    assert answer(temperature=1.0, seed=1) == answer(temperature=1.0, seed=1)
    assert answer(temperature=1.0, seed=1) != answer(temperature=1.0, seed=2)
    generated = tt.answer_generate(loaded, messages, {"max_new_tokens": 12, "temperature": 1.0}, make_ctx())
    assert (generated.sampling, generated.completion_tokens) == ("seeded", 12)
    assert generated.seed is not None and generated.cut_off


def test_a_cancelled_job_stops_the_generation(random_model_path, make_ctx):
    ctx = make_ctx(model_path=random_model_path, max_new_tokens=2000)
    ctx.is_cancelled = lambda: True

    with pytest.raises(ProviderError, match="cancelled"):
        TransformersText().style(topic="a fox", catalogue=CATALOGUE, ctx=ctx)


# Configuration errors


def test_missing_model_is_a_provider_error_with_a_stable_code(make_ctx, tmp_path, no_network):
    with pytest.raises(ProviderError) as caught:
        TransformersText().style(topic="x", catalogue=CATALOGUE, ctx=make_ctx())
    assert caught.value.code == GenerationErrors.PROVIDER_MISCONFIGURED

    with pytest.raises(ProviderError, match="no model at") as caught:
        TransformersText().style(topic="x", catalogue=CATALOGUE, ctx=make_ctx(model_path=str(tmp_path / "nowhere")))
    assert caught.value.code == GenerationErrors.PROVIDER_MODEL_MISSING

    (tmp_path / "empty").mkdir()
    with pytest.raises(ProviderError, match="cannot load") as caught:
        TransformersText().style(topic="x", catalogue=CATALOGUE, ctx=make_ctx(model_path=str(tmp_path / "empty")))
    assert caught.value.code == GenerationErrors.PROVIDER_MODEL_MISSING

    # A model id that is not in this worker's cache is not fetched: no connection is even tried.
    with pytest.raises(ProviderError) as caught:
        TransformersText().style(topic="x", catalogue=CATALOGUE, ctx=make_ctx(model_path="tiny-model-nowhere-9f2c"))
    assert caught.value.code == GenerationErrors.PROVIDER_MODEL_MISSING
    assert no_network == []


def test_a_prompt_longer_than_the_context_is_misconfiguration(tmp_path, make_ctx):
    tokenizer = tokenizer_build(["a few words"], tmp_path)
    gpt2_tiny(tokenizer, n_positions=64).save_pretrained(tmp_path)

    with pytest.raises(ProviderError, match="does not fit the model's context of 64") as caught:
        TransformersText().style(topic="x", catalogue=CATALOGUE, ctx=make_ctx(model_path=str(tmp_path)))
    assert caught.value.code == GenerationErrors.PROVIDER_MISCONFIGURED


def test_module_imports_without_torch_and_fails_cleanly():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from pathlib import Path\n"
            "from generation.providers.base import ProviderError, StageContext\n"
            "from generation.providers.transformers.text import TransformersText, settings_problems\n"
            "assert settings_problems({'temperature': 3}) == {'temperature': ['must be from 0 to 2']}\n"
            "ctx = StageContext(1, 'j', {}, {}, Path('.'), settings={'model_path': '/m'})\n"
            "try:\n    TransformersText().style(topic='t', catalogue={}, ctx=ctx)\n"
            "except ProviderError as exc:\n    print('ProviderError:', exc.code, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert "ProviderError: provider_unavailable transformers: torch is not installed" in done.stdout


def test_importing_the_provider_and_its_settings_check_loads_no_torch():
    code = ("import sys\n"
            "import generation.providers.transformers.text, generation.provider_settings\n"
            "print(sorted(name for name in ('torch', 'transformers', 'tokenizers') if name in sys.modules))\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_settings_are_checked_when_saved(tenant_a):
    owner = tenant_a.client()

    bad = owner.put("/api/v1/providers/transformers", {"settings": {"model_path": "/models/qwen", "temperature": 5,
                                                                     "on_invalid": "retry", "dtype": "int3",
                                                                     "max_new_token": 10}},
                    format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == GenerationErrors.INVALID_PROVIDER_SETTINGS
    assert set(bad.json()["error"]["fields"]) == {"temperature", "on_invalid", "dtype", "max_new_token"}
    good = owner.put("/api/v1/providers/transformers", {"settings": {"model_path": "/models/qwen", "temperature": 0.7,
                                                                      "seed": 7, "max_new_tokens": 2048}},
                     format="json")
    assert good.status_code == 201, good.json()


# Reading answers: real broken strings


@pytest.mark.parametrize(("text", "data", "repairs"), [
    ('{"a": 1}', {"a": 1}, []),
    ('```json\n{"a": 1}\n```', {"a": 1}, ["code_fence"]),
    ('```\n{"a": [1, 2]}\n```', {"a": [1, 2]}, ["code_fence"]),
    ('Sure! Here is the JSON:\n```json\n{"a": 1}\n```\nLet me know.', {"a": 1}, ["code_fence", "surrounding_text"]),
    ('```json\n{"a": 1}', {"a": 1}, ["code_fence"]),  # the closing fence cut off
    ('Here it is: {"a": [1, 2,],}\nHope this helps.', {"a": [1, 2]}, ["surrounding_text", "trailing_commas"]),
    ('{"a": {"b": "x",\n  },\n "c": [ "y" ,\n ]\n}', {"a": {"b": "x"}, "c": ["y"]}, ["trailing_commas"]),
    ('{"a": "commas, ] and } inside strings stay,]", "b": 2,}', {"a": "commas, ] and } inside strings stay,]", "b": 2},
     ["trailing_commas"]),
    ('{"a": "an \\"escaped\\" quote {", "b": 1}', {"a": 'an "escaped" quote {', "b": 1}, []),
    ('{"a": 1} {"b": 2}', {"a": 1}, ["surrounding_text"]),
    ('{"name": "伏見稲荷", "tags": ["夜",]}', {"name": "伏見稲荷", "tags": ["夜"]}, ["trailing_commas"]),
])
def test_reply_json_repairs(text, data, repairs):
    assert reply_json(text) == (data, repairs)


@pytest.mark.parametrize(("text", "problem"), [
    ("I cannot help with that.", "no JSON object"),
    ('{"a": [1, 2', "never closes"),
    ('```json\n{"a": {"b": 1}', "never closes"),
    ("{'a': 1}", "not valid JSON"),
    ('{"a": 1 "b": 2}', "not valid JSON"),
])
def test_reply_json_refuses_what_it_cannot_repair(text, problem):
    with pytest.raises(ReplyUnreadable, match=problem):
        reply_json(text)


def test_answer_check_names_the_schema_problem_for_the_second_request():
    data, repairs, problem = tt.answer_check(FIRST_ANSWER, schemas.STYLE, "style", None)

    assert data is None and repairs == []
    assert problem.startswith("style is invalid at 'name'")
    retry = tt.retry_messages([{"role": "user", "content": "Topic"}], FIRST_ANSWER, problem)
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert problem in retry[-1]["content"]


def test_chat_templates_and_the_system_turn_folded_where_refused(random_model_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(random_model_path)
    messages = [{"role": "system", "content": "Be JSON."}, {"role": "user", "content": "Topic: fox"}]

    assert tt.prompt_build(tokenizer, messages) == ("System: Be JSON.\n\nUser: Topic: fox\n\nAssistant:", False)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert tt.prompt_build(tokenizer, messages) == (
        "<|system|>Be JSON.\n<|user|>Topic: fox\n<|assistant|>", True)
    # Like Gemma's: no system role.
    tokenizer.chat_template = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}"
                               "{% endif %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<model>")
    assert tt.prompt_build(tokenizer, messages) == ("<user>Be JSON.\n\nTopic: fox\n<model>", True)


# The real GPU path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (GPU workers only)")
def test_gpu_answer_in_full_and_half_precision(trained_model_path, random_model_path, make_ctx):
    started = time.monotonic()
    exact = TransformersText().style(topic="a fox in snow", catalogue=CATALOGUE,
                                     ctx=make_ctx(model_path=trained_model_path, device="cuda", dtype="float32"))
    half = TransformersText().style(topic="a fox in snow", catalogue=STYLE_CATALOGUE,
                                    ctx=make_ctx(model_path=random_model_path, device=None, max_new_tokens=16))
    TIMINGS["gpu: two styles"] = time.monotonic() - started

    assert (exact.usage["device"], exact.usage["rounds"], exact.value["name"]) == ("cuda", 2, "nature")
    assert half.usage["device"] == "cuda"  # the default device where CUDA is available
    assert half.usage["dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    assert half.usage["fallback"] == "offline"
