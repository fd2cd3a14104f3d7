"""The openai text provider against a real loopback HTTP server (generation/tests/openai_stub.py)."""
from __future__ import annotations

import socket
import time
from decimal import Decimal

import pytest

from generation.providers.base import ProviderError, ProviderRefused, StageContext
from generation.providers.openai import text as openai_provider
from generation.providers.openai.text import OpenAIText, estimate_cost, moderate, retry_after_seconds
from generation.tests.openai_stub import (
    CHAT_PATH,
    MODERATION_PATH,
    OpenAIStub,
    chat_reply,
    error_reply,
    moderation_reply,
    slow_reply,
)

STYLE_OK = {"name": "documentary", "tags": ["calm", "natural"], "visual_description": "Soft daylight, handheld",
            "mood": "curious", "palette": ["#112233", "#445566", "#778899"]}
SCRIPT_OK = {"title": "Bees", "synopsis": "How bees make honey.", "scenes": [
    {"description": "A hive at dawn", "narration": "Every morning...", "duration_s": 6,
     "visual_notes": "macro", "audio_notes": "hum"},
    {"description": "Honeycomb", "narration": "Wax cells...", "duration_s": 6, "visual_notes": "", "audio_notes": ""},
]}


def shot(number: int, duration_s: float) -> dict:
    return {"number": number, "description": f"Shot {number}", "dialogue": "", "camera_movement": "static",
            "shot_type": "wide", "duration_s": duration_s, "composition": "centred", "lighting": "soft"}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment must not swallow loopback requests.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def stub(settings):
    # The stub listens on the loopback, which the outbound guard refuses unless told otherwise.
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True
    with OpenAIStub() as server:
        yield server


@pytest.fixture
def make_ctx(stub, tmp_path):
    def make(organization_id: int = 1, **settings) -> StageContext:
        base = {"api_key": f"sk-org{organization_id}", "base_url": stub.base_url, "model": "stub-model-x",
                "timeout_s": 5, "backoff_s": 0.001}
        return StageContext(organization_id=organization_id, job_id=f"job-{organization_id}",
                            options={"duration_s": 12, "shots": 2}, prompts={}, work_dir=tmp_path,
                            settings={**base, **settings})
    return make


# JSON validation


def test_valid_reply_passes_and_request_carries_model_key_and_json_mode(stub, make_ctx):
    stub.push_chat(chat_reply(STYLE_OK))

    result = OpenAIText().style(topic="bees", catalogue={"documentary": {}, "nature": {}}, ctx=make_ctx())

    assert result.value == STYLE_OK
    assert result.usage == {"model": "stub-model-x", "prompt_tokens": 100, "completion_tokens": 50, "attempts": 1}
    [request] = stub.requests
    assert request.path == CHAT_PATH
    assert request.headers["authorization"] == "Bearer sk-org1"
    assert request.body["model"] == "stub-model-x"
    assert request.body["response_format"] == {"type": "json_object"}
    assert "bees" in request.body["messages"][-1]["content"]


def test_each_organization_sends_its_own_key(stub, make_ctx):
    stub.push_chat(chat_reply(STYLE_OK), chat_reply(STYLE_OK))

    OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(1))
    OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(2, model="other-model"))

    assert [r.headers["authorization"] for r in stub.requests] == ["Bearer sk-org1", "Bearer sk-org2"]
    assert [r.body["model"] for r in stub.requests] == ["stub-model-x", "other-model"]


def test_workers_own_api_key_is_never_used_for_a_tenant(stub, make_ctx, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-environment")
    stub.push_chat(chat_reply(STYLE_OK))

    OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(api_key=""))

    assert stub.requests[0].headers["authorization"] == "Bearer unused"


def test_missing_key_for_openai_itself_fails_before_any_request(make_ctx):
    with pytest.raises(ProviderError, match="no api_key"):
        OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(api_key="", base_url=None))


def test_invalid_json_then_valid_succeeds_after_two_calls(stub, make_ctx):
    stub.push_chat(chat_reply('{"title": "Bees", "synopsis": '), chat_reply(SCRIPT_OK))

    result = OpenAIText().script(topic="bees", style=STYLE_OK, duration_s=12, shots=2, ctx=make_ctx())

    assert result.value == SCRIPT_OK
    assert len(stub.requests) == 2
    retry_messages = stub.requests[1].body["messages"]
    assert retry_messages[-2] == {"role": "assistant", "content": '{"title": "Bees", "synopsis": '}
    assert "not valid JSON" in retry_messages[-1]["content"]
    assert result.usage == {"model": "stub-model-x", "prompt_tokens": 200, "completion_tokens": 100, "attempts": 2}


def test_markdown_fenced_json_is_accepted(stub, make_ctx):
    stub.push_chat(chat_reply('```json\n{"title": "Bees", "synopsis": "s", "scenes": '
                              '[{"description": "d", "narration": "n", "duration_s": 3, '
                              '"visual_notes": "", "audio_notes": ""}]}\n```'))

    result = OpenAIText().script(topic="bees", style=STYLE_OK, duration_s=3, shots=1, ctx=make_ctx())

    assert result.value["title"] == "Bees"
    assert len(stub.requests) == 1


def test_schema_invalid_twice_raises_with_the_spend(stub, make_ctx):
    bad = {**STYLE_OK, "palette": ["red"]}
    stub.push_chat(chat_reply(bad), chat_reply(bad))
    ctx = make_ctx(prices={"input_per_1k": "0.001", "output_per_1k": "0.002"})

    with pytest.raises(ProviderError, match="invalid output twice.*palette") as caught:
        OpenAIText().style(topic="bees", catalogue={}, ctx=ctx)

    assert len(stub.requests) == 2
    assert "palette" in stub.requests[1].body["messages"][-1]["content"]
    assert caught.value.usage["attempts"] == 2
    assert caught.value.cost == Decimal("0.0004")  # 200 x 0.001/1k + 100 x 0.002/1k


def test_style_outside_the_catalogue_is_sent_back(stub, make_ctx):
    stub.push_chat(chat_reply({**STYLE_OK, "name": "scifi"}), chat_reply(STYLE_OK))

    result = OpenAIText().style(topic="bees", catalogue={"documentary": {}, "nature": {}}, ctx=make_ctx())

    assert result.value["name"] == "documentary"
    assert "not in the catalogue" in stub.requests[1].body["messages"][-1]["content"]


def test_storyboard_needs_the_requested_shot_count_then_is_normalised(stub, make_ctx):
    stub.push_chat(chat_reply({"shots": [shot(1, 4)]}),
                   chat_reply({"shots": [shot(7, 4), shot(9, 2)]}))

    result = OpenAIText().storyboard(script=SCRIPT_OK, style=STYLE_OK, shots=2, duration_s=12, ctx=make_ctx())

    assert "expected exactly 2 shots" in stub.requests[1].body["messages"][-1]["content"]
    assert [s["number"] for s in result.value["shots"]] == [1, 2]
    assert [s["duration_s"] for s in result.value["shots"]] == [8.0, 4.0]  # scaled to the 12 s asked for


def test_json_schema_mode_sends_the_stage_schema(stub, make_ctx):
    stub.push_chat(chat_reply(STYLE_OK))

    OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(response_format="json_schema"))

    response_format = stub.requests[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["required"] == openai_provider.schemas.STYLE["required"]


def test_template_prompt_reaches_the_system_message(stub, make_ctx):
    stub.push_chat(chat_reply(STYLE_OK))
    ctx = make_ctx()
    ctx.prompts = {"style": "Always prefer warm colours."}

    OpenAIText().style(topic="bees", catalogue={}, ctx=ctx)

    assert "Always prefer warm colours." in stub.requests[0].body["messages"][0]["content"]


def test_model_refusal_is_not_retried(stub, make_ctx):
    stub.push_chat(error_reply(400, "unsafe", code="content_policy_violation"))

    with pytest.raises(ProviderRefused):
        OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx())
    assert len(stub.requests) == 1


# Retries


def test_429_honours_retry_after_then_succeeds(stub, make_ctx):
    stub.push_chat(error_reply(429, "slow down", retry_after="0.3"), chat_reply(STYLE_OK))

    started = time.monotonic()
    result = OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx())
    elapsed = time.monotonic() - started

    assert result.value == STYLE_OK
    assert result.usage["attempts"] == 2
    assert len(stub.requests) == 2
    assert elapsed >= 0.3  # the server's wait, not the 1 ms backoff


def test_5xx_is_retried_with_backoff_then_succeeds(stub, make_ctx):
    stub.push_chat(error_reply(500), error_reply(503), chat_reply(STYLE_OK))

    started = time.monotonic()
    result = OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(backoff_s=0.05))
    elapsed = time.monotonic() - started

    assert result.usage["attempts"] == 3
    assert len(stub.requests) == 3
    assert elapsed >= 0.05 + 0.1  # 0.05 then 0.1: exponential


def test_persistent_5xx_gives_up_after_max_attempts(stub, make_ctx):
    stub.push_chat(*[error_reply(502)] * 5)

    with pytest.raises(ProviderError, match="HTTP 502; gave up after 4 attempts") as caught:
        OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx())
    assert len(stub.requests) == 4
    assert caught.value.usage["attempts"] == 4


def test_timeout_is_retried_then_fails_within_bounded_time(stub, make_ctx):
    stub.push_chat(*[slow_reply(5, chat_reply(STYLE_OK))] * 3)

    started = time.monotonic()
    with pytest.raises(ProviderError, match="timed out; gave up after 3 attempts"):
        OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(timeout_s=0.3, max_attempts=3))
    elapsed = time.monotonic() - started

    assert len(stub.requests) == 3
    assert 0.9 <= elapsed < 3.0  # three 0.3 s timeouts and tiny backoffs, never the server's 5 s


def test_client_errors_are_not_retried(stub, make_ctx):
    stub.push_chat(error_reply(401, "bad key"))

    with pytest.raises(ProviderError, match="HTTP 401"):
        OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx())
    assert len(stub.requests) == 1


def test_retry_after_beyond_max_backoff_fails_over_at_once(stub, make_ctx):
    stub.push_chat(error_reply(429, retry_after="120"))

    started = time.monotonic()
    with pytest.raises(ProviderError, match="asks to wait 120s"):
        OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx(max_backoff_s=10))
    assert time.monotonic() - started < 2
    assert len(stub.requests) == 1


def test_cancelled_job_stops_retrying(stub, make_ctx):
    stub.push_chat(error_reply(500), error_reply(500))
    ctx = make_ctx()
    ctx.is_cancelled = lambda: True

    with pytest.raises(ProviderError, match="cancelled"):
        OpenAIText().style(topic="bees", catalogue={}, ctx=ctx)
    assert len(stub.requests) == 1


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None


# Cost


def test_cost_is_tokens_times_prices(stub, make_ctx):
    stub.push_chat(chat_reply(STYLE_OK, prompt_tokens=1200, completion_tokens=800))
    ctx = make_ctx(prices={"input_per_1k": "0.0005", "output_per_1k": 0.0015})

    result = OpenAIText().style(topic="bees", catalogue={}, ctx=ctx)

    assert result.cost == Decimal("0.0018")  # 1.2 x 0.0005 + 0.8 x 0.0015
    assert isinstance(result.cost, Decimal)
    assert (result.usage["prompt_tokens"], result.usage["completion_tokens"]) == (1200, 800)


def test_cost_is_zero_without_prices(stub, make_ctx):
    stub.push_chat(chat_reply(STYLE_OK))

    assert OpenAIText().style(topic="bees", catalogue={}, ctx=make_ctx()).cost == Decimal("0")


def test_estimate_grows_with_shots_and_duration():
    prices = {"prices": {"input_per_1k": "0.0005", "output_per_1k": "0.0015"}}

    small = estimate_cost("storyboard", 10, 2, prices)
    assert small > 0
    assert estimate_cost("storyboard", 60, 12, prices) > small
    assert estimate_cost("script", 60, 4, prices) > estimate_cost("script", 10, 4, prices)
    assert estimate_cost("all", 10, 2, prices) >= small + estimate_cost("style", 10, 2, prices)
    assert estimate_cost("all", 30, 5, {}) == Decimal("0")
    assert estimate_cost("style", 30, 5, prices) == estimate_cost("style", 30, 5, prices).quantize(Decimal("0.0001"))
    with pytest.raises(ValueError):
        estimate_cost("clip", 10, 2, prices)


# Moderation


def test_moderation_unflagged(stub, make_ctx):
    stub.push_moderation(moderation_reply())

    assert moderate("a film about bees", make_ctx(moderation_model="mod-x")) == (False, "")
    [request] = stub.requests_to(MODERATION_PATH)
    assert request.body == {"input": "a film about bees", "model": "mod-x"}
    assert request.headers["authorization"] == "Bearer sk-org1"


def test_moderation_flagged_names_the_categories(stub, make_ctx):
    stub.push_moderation(moderation_reply("violence", "hate/threatening"))

    assert moderate("something awful", make_ctx()) == (True, "hate/threatening, violence")


def test_moderation_of_empty_text_asks_nothing(stub, make_ctx):
    assert moderate("   ", make_ctx()) == (False, "")
    assert stub.requests == []


def test_moderation_transport_failure_raises(make_ctx):
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(ProviderError, match="connection failed"):
        moderate("text", make_ctx(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2))


def test_moderation_server_errors_are_retried_then_raise(stub, make_ctx):
    stub.push_moderation(error_reply(500), error_reply(500))

    with pytest.raises(ProviderError, match="gave up after 2 attempts"):
        moderate("text", make_ctx(max_attempts=2))
    assert len(stub.requests_to(MODERATION_PATH)) == 2
