"""The openai image, video and voice providers against a loopback OpenAI-compatible server run as a separate
process (generation/tests/openai_server.py): media comes back as the server made it, retries and refusals
answer their codes, costs are the configured prices, an edited shot remixes its previous clip."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import wave
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config.media import ffmpeg_exe, probe
from generation.error_codes import GenerationErrors
from generation.providers import provider_class, provider_names
from generation.providers.base import ProviderError, ProviderRefused, StageContext
from generation.providers.openai.client import openai_client, settings_problems
from generation.providers.openai.image import OpenAIImage, api_size
from generation.providers.openai.video import OpenAIVideo, api_seconds, api_video_size, character_name
from generation.providers.openai.voice import OpenAIVoice
from generation.tests.openai_server import QUADRANTS, REMIX_COLOUR, TONE_HZ

# The SDK marks its video methods deprecated (OpenAI's own Sora API has an end date; video.py says why we
# call them anyway).
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
SERVER = Path(__file__).with_name("openai_server.py")
PRICES = {"per_image": "0.04", "per_video_second": "0.1", "per_speech_character": "0.000015"}
STYLE = {"name": "documentary", "visual_description": "Soft daylight", "mood": "calm",
         "palette": ["#112233", "#445566", "#778899"]}


class Server:
    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.base_url, self._root = process, f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}"

    def _call(self, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._root + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def script(self, route: str, *replies: dict) -> None:
        self._call("/_control/script", {"route": route, "replies": list(replies)})

    def requests(self, route: str | None = None) -> list[dict]:
        return [r for r in self._call("/_control/requests") if route is None or r["route"] == route]

    def characters(self) -> dict:
        """Every character the server made: name, made_from (the video uploaded), featured_in (videos naming it)."""
        return self._call("/_control/characters")

    def reset(self) -> None:
        self._call("/_control/reset", {})


@pytest.fixture(scope="module")
def server():
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        yield Server(process, int(line.split()[1]))
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _loopback(server, settings, monkeypatch):
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True  # the server listens on the loopback
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server.reset()


@pytest.fixture
def make_ctx(server, tmp_path):
    def make(options=None, **settings) -> StageContext:
        base = {"api_key": "sk-media", "base_url": server.base_url, "timeout_s": 20, "backoff_s": 0.01,
                "video_poll_s": 0.02, "prices": PRICES}
        return StageContext(organization_id=1, job_id="job-1", prompts={"frame": "Film grain."},
                            options={"resolution": "480p", "aspect_ratio": "16:9", **(options or {})},
                            work_dir=tmp_path, settings={**base, **settings})
    return make


def shot(number=1, duration_s=5.0, **extra) -> dict:
    return {"number": number, "description": "A lighthouse at dusk", "dialogue": "", "camera_movement": "zoom_in",
            "shot_type": "wide", "duration_s": duration_s, "composition": "centred", "lighting": "warm", **extra}


def near(pixel, colour, tolerance=40) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, colour))


def quadrants_png(path: Path, size=(854, 480)) -> Path:
    from generation.tests.openai_server import quadrants_png as make

    path.write_bytes(make(*size))
    return path


def first_frame(video: Path, at_s: float = 0.0) -> Image.Image:
    target = video.with_suffix(f".{int(at_s * 1000)}.png")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-ss", str(at_s), "-i", str(video), "-frames:v", "1",
                    str(target)], check=True, timeout=60)
    return Image.open(target).convert("RGB")


def dominant_hz(path: Path) -> float:
    with wave.open(str(path)) as wav:
        rate, samples = wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


# --- registry and sizes ------------------------------------------------------------------------------


def test_openai_serves_every_kind():
    assert all("openai" in provider_names(kind) for kind in ("text", "image", "video", "voice"))
    assert provider_class("voice", "openai") is OpenAIVoice


def test_sizes_and_seconds_map_to_what_the_api_takes():
    assert api_size((854, 480)) == (1536, 1024) and api_size((1080, 1920)) == (1024, 1536)
    assert api_size((720, 720)) == (1024, 1024)
    assert api_video_size((854, 480)) == (1280, 720) and api_video_size((480, 854)) == (720, 1280)
    assert [api_seconds(s) for s in (0.5, 5.9, 6, 7, 10, 11, 30)] == [4, 4, 8, 8, 12, 12, 12]


# --- image --------------------------------------------------------------------------------------------


def test_frame_is_the_servers_image_fitted_to_the_job_size(server, make_ctx, tmp_path):
    out = tmp_path / "frame.png"
    result = OpenAIImage().frame(shot=shot(), style=STYLE, out=out, ctx=make_ctx(image_model="img-x"))

    image = Image.open(out).convert("RGB")
    assert image.size == (854, 480)
    # The server's four quadrants, cropped from 1536x1024 to 16:9: each quarter keeps its colour.
    for (x, y), colour in zip(((200, 100), (650, 100), (200, 380), (650, 380)), QUADRANTS):
        assert near(image.getpixel((x, y)), colour, 8), ((x, y), image.getpixel((x, y)))
    assert result.cost == Decimal("0.04") and result.usage["method"] == "generate"
    [request] = server.requests("images.generate")
    assert request["authorization"] == "Bearer sk-media"
    body = request["body"]
    assert (body["model"], body["size"], body["n"]) == ("img-x", "1536x1024", 1)
    assert "A lighthouse at dusk" in body["prompt"] and "#445566" in body["prompt"] and "Film grain." in body["prompt"]


def test_a_reference_image_goes_through_images_edit(server, make_ctx, tmp_path):
    reference = tmp_path / "reference.png"
    Image.new("RGB", (640, 360), (10, 100, 200)).save(reference)

    OpenAIImage().frame(shot=shot(reference_image=str(reference)), style=STYLE, out=tmp_path / "f.png",
                        ctx=make_ctx())

    image = Image.open(tmp_path / "f.png").convert("RGB")
    assert image.size == (854, 480) and near(image.getpixel((427, 240)), (245, 155, 55), 6)  # inverted by the server
    [request] = server.requests("images.edit")
    assert request["body"]["image"]["filename"] == "reference.png" and request["body"]["size"] == "1536x1024"
    assert not server.requests("images.generate")


def test_the_studios_product_image_is_the_edit_input_before_a_previous_frame(server, make_ctx, tmp_path):
    product, previous = tmp_path / "asset.png", tmp_path / "reference.png"
    Image.new("RGB", (400, 400), (200, 20, 20)).save(product)
    Image.new("RGB", (640, 360), (10, 100, 200)).save(previous)

    result = OpenAIImage().frame(shot=shot(reference_image=str(previous), reference_asset=str(product)), style=STYLE,
                                 out=tmp_path / "f.png", ctx=make_ctx())

    image = Image.open(tmp_path / "f.png").convert("RGB")
    assert near(image.getpixel((427, 240)), (55, 235, 235), 6)  # the product's red, inverted by the server
    assert result.usage["method"] == "edit" and result.usage["reference_used"]
    assert len(server.requests("images.edit")) == 1 and not server.requests("images.generate")


def test_429_waits_the_retry_after_then_succeeds(server, make_ctx, tmp_path):
    server.script("images.generate", {"status": 429, "headers": {"Retry-After": "0.4"}})
    started = time.monotonic()
    result = OpenAIImage().frame(shot=shot(), style=STYLE, out=tmp_path / "f.png", ctx=make_ctx())
    assert time.monotonic() - started >= 0.4
    assert result.usage["attempts"] == 2 and len(server.requests("images.generate")) == 2


def test_5xx_is_retried_then_gives_up_with_its_code(server, make_ctx, tmp_path):
    server.script("images.generate", *[{"status": 500}] * 3)
    with pytest.raises(ProviderError) as caught:
        OpenAIImage().frame(shot=shot(), style=STYLE, out=tmp_path / "f.png", ctx=make_ctx(max_attempts=3))
    assert caught.value.code == GenerationErrors.PROVIDER_HTTP_ERROR and caught.value.upstream_status == 500
    assert len(server.requests("images.generate")) == 3 and not (tmp_path / "f.png").exists()


def test_a_slow_answer_times_out_with_its_code(server, make_ctx, tmp_path):
    server.script("images.generate", {"delay_s": 1.5}, {"delay_s": 1.5})
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        OpenAIImage().frame(shot=shot(), style=STYLE, out=tmp_path / "f.png",
                            ctx=make_ctx(timeout_s=0.3, max_attempts=2))
    assert caught.value.code == GenerationErrors.PROVIDER_TIMEOUT and time.monotonic() - started < 1.5


def test_a_content_policy_refusal_is_not_retried(server, make_ctx, tmp_path):
    server.script("images.generate", {"status": 400, "code": "content_policy_violation"})
    with pytest.raises(ProviderRefused) as caught:
        OpenAIImage().frame(shot=shot(), style=STYLE, out=tmp_path / "f.png", ctx=make_ctx())
    assert caught.value.code == GenerationErrors.PROVIDER_REFUSED and len(server.requests("images.generate")) == 1


def test_the_outbound_guard_stops_a_private_base_url(server, make_ctx, tmp_path, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ProviderError) as caught:
        OpenAIVoice().narrate(text="Hello", voice="", out=tmp_path / "v.wav", ctx=make_ctx())
    assert caught.value.code == "url_not_allowed" and not server.requests()


# --- video --------------------------------------------------------------------------------------------


def test_clip_is_the_servers_video_conformed_to_size_fps_and_duration(server, make_ctx, tmp_path):
    frame = quadrants_png(tmp_path / "frame.png")
    out = tmp_path / "clip.mp4"

    result = OpenAIVideo().clip(shot=shot(duration_s=5.0), style=STYLE, frame=frame, fps=24, out=out,
                                ctx=make_ctx(video_model="sora-x"))

    info = probe(out)
    assert (info["width"], info["height"], info["video_codec"], info["audio_codec"]) == (854, 480, "h264", None)
    assert abs(info["duration_s"] - 5.0) < 0.05 and round(info["fps"]) == 24
    # The server animated the reference it was sent (the frame at its 1280x720): the quadrants come back,
    # at the start and in the last second (the 4 s render slowed down to the shot's 5 s).
    for at in (0.0, 4.8):
        picture = first_frame(out, at)
        for (x, y), colour in zip(((200, 100), (650, 100), (200, 380), (650, 380)), QUADRANTS):
            assert near(picture.getpixel((x, y)), colour), (at, (x, y), picture.getpixel((x, y)))
    # The box on the top edge still moves in the last second: no frozen tail.
    band = [np.asarray(first_frame(out, at).crop((0, 0, 854, 20)), dtype=float) for at in (4.5, 4.9)]
    assert np.abs(band[0] - band[1]).mean() > 1
    assert result.cost == Decimal("0.4")  # 4 s rendered x 0.1
    assert result.usage["method"] == "create" and result.usage["remote_video_id"].startswith("video_")
    [create] = server.requests("videos.create")
    body = create["body"]
    assert (body["model"], body["seconds"], body["size"]) == ("sora-x", "4", "1280x720")
    assert body["input_reference"]["filename"] == "frame.png" and "Camera movement: zoom in." in body["prompt"]
    assert len(server.requests("videos.retrieve")) >= 1 and len(server.requests("videos.content")) == 1


def test_an_edited_shot_remixes_its_previous_video(server, make_ctx, tmp_path):
    frame = quadrants_png(tmp_path / "frame.png")
    first = OpenAIVideo().clip(shot=shot(duration_s=8), style=STYLE, frame=frame, fps=24, out=tmp_path / "a.mp4",
                               ctx=make_ctx())
    previous = first.usage["remote_video_id"]

    result = OpenAIVideo().clip(shot=shot(duration_s=7.5, description="Closer", previous_remote_video_id=previous),
                                style=STYLE, frame=frame, fps=24, out=tmp_path / "b.mp4", ctx=make_ctx())

    [remix] = server.requests("videos.remix")
    assert remix["path"] == f"/v1/videos/{previous}/remix" and "Closer" in remix["body"]["prompt"]
    assert len(server.requests("videos.create")) == 1  # only the first clip
    assert result.usage["method"] == "remix" and result.usage["remixed_from"] == previous
    assert near(first_frame(tmp_path / "b.mp4").getpixel((427, 240)), REMIX_COLOUR)
    assert abs(probe(tmp_path / "b.mp4")["duration_s"] - 7.5) < 0.05
    assert result.cost == Decimal("0.8")  # the remix renders the source's 8 s


def test_a_remix_of_a_video_the_server_no_longer_has_renders_afresh(server, make_ctx, tmp_path):
    frame = quadrants_png(tmp_path / "frame.png")
    result = OpenAIVideo().clip(shot=shot(previous_remote_video_id="video_gone"), style=STYLE, frame=frame, fps=24,
                                out=tmp_path / "c.mp4", ctx=make_ctx())
    assert result.usage["method"] == "create"
    assert len(server.requests("videos.remix")) == 1 and len(server.requests("videos.create")) == 1


@pytest.mark.parametrize("error_code, raised, code", [
    ("moderation_blocked", ProviderRefused, GenerationErrors.PROVIDER_REFUSED),
    ("internal_error", ProviderError, GenerationErrors.PROVIDER_JOB_FAILED),
])
def test_a_failed_render_answers_its_code(server, make_ctx, tmp_path, error_code, raised, code):
    server.script("videos.create", {"video_status": "failed", "error_code": error_code})
    with pytest.raises(raised) as caught:
        OpenAIVideo().clip(shot=shot(), style=STYLE, frame=quadrants_png(tmp_path / "f.png"), fps=24,
                           out=tmp_path / "c.mp4", ctx=make_ctx())
    assert caught.value.code == code and not server.requests("videos.content")


def test_a_render_past_the_deadline_stops_polling(server, make_ctx, tmp_path):
    server.script("videos.create", {"polls": 10_000})
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        OpenAIVideo().clip(shot=shot(), style=STYLE, frame=quadrants_png(tmp_path / "f.png"), fps=24,
                           out=tmp_path / "c.mp4", ctx=make_ctx(video_deadline_s=1, video_poll_s=0.05))
    elapsed = time.monotonic() - started
    assert caught.value.code == GenerationErrors.PROVIDER_DEADLINE and 1 <= elapsed < 3
    polls = len(server.requests("videos.retrieve"))
    assert 3 <= polls < 20  # backoff: 0.05 s growing 1.5x, not a poll every 50 ms


def test_status_polls_retry_a_429_too(server, make_ctx, tmp_path):
    server.script("videos.retrieve", {"status": 429, "headers": {"Retry-After": "0.1"}})
    result = OpenAIVideo().clip(shot=shot(), style=STYLE, frame=quadrants_png(tmp_path / "f.png"), fps=24,
                                out=tmp_path / "c.mp4", ctx=make_ctx())
    # The 429, then "in_progress", then "completed".
    assert result.usage["method"] == "create" and len(server.requests("videos.retrieve")) == 3


# --- a recurring character ----------------------------------------------------------------------------


def test_the_first_clip_makes_the_character_the_later_clips_feature(server, make_ctx, tmp_path):
    frame = quadrants_png(tmp_path / "frame.png")
    ctx = make_ctx(prices={**PRICES, "per_character": "0.25"})
    first = OpenAIVideo().clip(shot=shot(make_character=True), style=STYLE, frame=frame, fps=24,
                               out=tmp_path / "1.mp4", ctx=ctx)

    made = first.usage["character"]
    [(character_id, character)] = server.characters().items()
    assert made["id"] == character_id and made["name"] == character["name"] == character_name(ctx) == "Character-job1"
    # What was uploaded is the endpoint's own render of that shot, a real MP4 (the server decoded it).
    assert character["made_from"] == first.usage["remote_video_id"] == made["made_from"]
    assert character["featured_in"] == [] and made["attempts"] == 1
    [upload] = server.requests("videos.create_character")
    assert upload["body"]["video"]["filename"] == "character.mp4" and upload["body"]["name"] == made["name"]
    assert "characters[][id]" not in server.requests("videos.create")[0]["body"]
    assert first.cost == Decimal("0.65")  # 4 s rendered x 0.1, and the character's price

    later = [OpenAIVideo().clip(shot=shot(n, recurring_character={"id": made["id"], "name": made["name"]}),
                                style=STYLE, frame=frame, fps=24, out=tmp_path / f"{n}.mp4", ctx=ctx)
             for n in (2, 3)]

    assert len(server.requests("videos.create_character")) == 1
    assert server.characters()[character_id]["featured_in"] == [clip.usage["remote_video_id"] for clip in later]
    for create in server.requests("videos.create")[1:]:
        # The id in the request's characters, the name verbatim in the prompt (the API guide's two halves).
        assert create["body"]["characters[][id]"] == character_id
        assert f"Featuring {made['name']}." in create["body"]["prompt"]
    assert all(clip.usage["character"] == {"id": made["id"], "name": made["name"]} for clip in later)
    assert [clip.cost for clip in later] == [Decimal("0.4")] * 2  # featuring it costs nothing more
    with openai_client(ctx.settings) as client:  # and the endpoint knows it by its id
        assert client.videos.get_character(character_id).name == made["name"]


def test_a_clip_without_the_character_setting_makes_none(server, make_ctx, tmp_path):
    result = OpenAIVideo().clip(shot=shot(), style=STYLE, frame=quadrants_png(tmp_path / "f.png"), fps=24,
                                out=tmp_path / "c.mp4", ctx=make_ctx())
    assert "character" not in result.usage and not server.requests("videos.create_character")
    [create] = server.requests("videos.create")
    assert "characters[][id]" not in create["body"] and "Featuring" not in create["body"]["prompt"]


@pytest.mark.parametrize("replies, raised, code, requests", [
    ([{"status": 500}] * 2, ProviderError, GenerationErrors.PROVIDER_HTTP_ERROR, 2),
    ([{"status": 400, "code": "moderation_blocked"}], ProviderRefused, GenerationErrors.PROVIDER_REFUSED, 1),
])
def test_a_failing_characters_endpoint_answers_its_code(server, make_ctx, tmp_path, replies, raised, code, requests):
    server.script("videos.create_character", *replies)
    with pytest.raises(raised) as caught:
        OpenAIVideo().clip(shot=shot(make_character=True), style=STYLE, frame=quadrants_png(tmp_path / "f.png"),
                           fps=24, out=tmp_path / "c.mp4", ctx=make_ctx(max_attempts=2))
    assert caught.value.code == code and "character" in str(caught.value)
    assert len(server.requests("videos.create_character")) == requests and not server.characters()


def test_the_server_makes_characters_of_mp4s_only(server, make_ctx):
    settings = make_ctx(max_attempts=1).settings
    with openai_client(settings) as client, pytest.raises(Exception) as caught:
        client.videos.create_character(name="x", video=("x.mp4", b"\x00\x00\x00\x18ftypisom-not-a-video", "video/mp4"))
    assert getattr(caught.value, "status_code", None) == 400 and caught.value.code == "invalid_video"
    assert not server.characters()


# --- voice --------------------------------------------------------------------------------------------


def test_narration_is_the_servers_wav_in_the_jobs_voice_and_language(server, make_ctx, tmp_path):
    text = "Every morning the keeper climbs."  # 32 characters
    out = tmp_path / "voice.wav"
    result = OpenAIVoice().narrate(text=text, voice="female", out=out, ctx=make_ctx(options={"language": "fr"}))

    assert result.value == out
    with wave.open(str(out)) as wav:
        assert abs(wav.getnframes() / wav.getframerate() - 32 * 0.08) < 0.01
    assert abs(dominant_hz(out) - TONE_HZ) < 2
    assert result.cost == Decimal("0.000015") * 32 and result.usage["characters"] == 32
    [request] = server.requests("audio.speech")
    body = request["body"]
    assert (body["voice"], body["model"], body["response_format"]) == ("nova", "gpt-4o-mini-tts", "wav")
    assert body["input"] == text and "fr" in body["instructions"]


@pytest.mark.parametrize("audio_format", ["flac", "pcm"])
def test_other_audio_formats_are_decoded_to_wav(server, make_ctx, tmp_path, audio_format):
    out = tmp_path / "voice.wav"
    result = OpenAIVoice().narrate(text="Hello lighthouse", voice="onyx", out=out,
                                   ctx=make_ctx(speech_format=audio_format, voice="echo"))
    assert out.read_bytes()[:4] == b"RIFF" and abs(dominant_hz(out) - TONE_HZ) < 2
    assert abs(result.usage["seconds"] - 16 * 0.08) < 0.05
    assert server.requests("audio.speech")[0]["body"]["voice"] == "onyx"


def test_unknown_voice_takes_the_setting_and_empty_text_asks_nothing(server, make_ctx, tmp_path):
    assert OpenAIVoice().narrate(text="  ", voice="", out=tmp_path / "v.wav", ctx=make_ctx()).value is None
    assert not server.requests()
    server.script("audio.speech", {"status": 503}, {"status": 500})
    result = OpenAIVoice().narrate(text="Hi", voice="narrator", out=tmp_path / "v.wav", ctx=make_ctx(voice="sage"))
    assert result.usage["attempts"] == 3 and server.requests("audio.speech")[-1]["body"]["voice"] == "sage"


# --- settings -----------------------------------------------------------------------------------------


def test_media_settings_are_checked_by_the_schema():
    assert settings_problems({"image_model": "m", "video_poll_s": 1, "video_deadline_s": 60, "speech_format": "mp3",
                              "prices": {**PRICES, "input_per_1k": 0.1}}) == {}
    problems = settings_problems({"video_poll_s": 0, "speech_format": "ogg", "prices": {"per_image": "-1"},
                                  "imagemodel": "x", "video_deadline_s": "60"})
    assert sorted(problems) == ["imagemodel", "prices", "speech_format", "video_deadline_s", "video_poll_s"]
    assert settings_problems({"prices": {"per_video_second": "1000.5"}}) == {
        "prices": ["per_video_second must be an amount from 0 to 1000"]}


def test_the_api_schema_types_the_openai_settings(tenant_a):
    schema = tenant_a.client().get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    settings_field = schema["components"]["schemas"]["CredentialInRequest"]["properties"]["settings"]
    members = {member["title"]: member for member in settings_field["anyOf"]}
    openai_settings = members["OpenAISettings"]
    assert members["OfflineSettings"]["properties"] == {}
    assert openai_settings["additionalProperties"] is False
    assert openai_settings["properties"]["video_deadline_s"]["maximum"] == 7200
    assert set(openai_settings["properties"]["prices"]["properties"]) >= set(PRICES)
    response = tenant_a.client().put("/api/v1/providers/openai", {"settings": {"video_deadline_s": 9000}},
                                     format="json")
    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == ["video_deadline_s"]


# --- a whole job --------------------------------------------------------------------------------------


def test_a_job_with_every_chain_on_openai_completes_and_an_edit_remixes(server, tenant_a, run_commits, settings):
    from accounts.audit import Actor
    from config.tenancy import tenant_scope
    from generation import services
    from generation.models import GenerationPolicy, ProviderCredential, Step
    from generation.tests.test_pipeline import drain, reload, start

    with tenant_scope(tenant_a.organization):
        GenerationPolicy.objects.create(organization=tenant_a.organization, providers={
            kind: ["openai"] for kind in ("text", "image", "video", "voice")})
        ProviderCredential.objects.create(organization=tenant_a.organization, provider="openai", settings={
            "base_url": server.base_url, "timeout_s": 30, "backoff_s": 0.01, "video_poll_s": 0.02,
            "prices": PRICES})
    job = start(tenant_a, run_commits, options={"duration_s": 8, "resolution": "480p", "shots": 2,
                                                "voice": "female"})
    drain(run_commits)
    job = reload(tenant_a, job)
    with tenant_scope(tenant_a.organization):
        errors = [(s.stage, s.shot, s.error) for s in Step.objects.filter(job=job) if s.error]
    assert job.status == "completed", (job.error, errors)
    with tenant_scope(tenant_a.organization):
        steps = {(s.stage, s.shot): s for s in Step.objects.filter(job=job)}
        clip_ids = {n: steps[("clip", n)].artifact.data["remote_video_id"] for n in (1, 2)}
    assert all(steps[(stage, n)].provider == "openai" for stage in ("frame", "clip") for n in (1, 2))
    assert [steps[("frame", n)].cost for n in (1, 2)] == [Decimal("0.04")] * 2
    assert [steps[("clip", n)].cost for n in (1, 2)] == [Decimal("0.4")] * 2  # 4 s shots, 4 s renders
    assert len(server.requests("audio.speech")) == 2 and job.output["metadata"]["audio_codec"]
    assert len(server.requests("videos.create")) == 2 and not server.requests("videos.remix")
    # No recurring character asked for: none made, none named, and the clips kept no character.
    assert not server.requests("videos.create_character") and not server.characters()
    assert all("characters[][id]" not in create["body"] for create in server.requests("videos.create"))
    with tenant_scope(tenant_a.organization):
        assert all("character" not in steps[("clip", n)].artifact.data for n in (1, 2))

    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.shot_edit(job=job, number=2, actor=Actor(user=tenant_a.owner),
                                               changes={"description": "The lamp's brass gears, close"}))
    drain(run_commits)
    assert reload(tenant_a, job).status == "completed"
    [remix] = server.requests("videos.remix")
    assert remix["path"] == f"/v1/videos/{clip_ids[2]}/remix" and "brass gears" in remix["body"]["prompt"]
    [edit] = server.requests("images.edit")  # the edited shot's frame starts from its previous frame
    assert "brass gears" in edit["body"]["prompt"] and len(server.requests("videos.create")) == 2
    with tenant_scope(tenant_a.organization):
        new_clip = Step.objects.get(job=job, stage="clip", shot=2)
        assert new_clip.artifact.data["remote_video_id"] not in clip_ids.values()


def test_a_recurring_character_is_made_once_from_the_first_clip_and_featured_in_every_later_one(
        server, tenant_a, run_commits, settings):
    from accounts.audit import Actor
    from config.tenancy import tenant_scope
    from generation import services
    from generation.models import ProviderCredential, Step
    from generation.tests.test_pipeline import drain, reload, start
    from projects.templates import template_create

    settings.STEP_RETRY_BACKOFF_S = 0
    with tenant_scope(tenant_a.organization):
        ProviderCredential.objects.create(organization=tenant_a.organization, provider="openai", settings={
            "base_url": server.base_url, "timeout_s": 30, "max_attempts": 1, "backoff_s": 0.01,
            "video_poll_s": 0.02, "prices": PRICES})
        template = template_create(
            organization=tenant_a.organization, name="One lead", actor=Actor(user=tenant_a.owner), settings={
                "duration_s": 12, "shots": 3, "resolution": "480p", "voice": "none", "recurring_character": True,
                "providers": {"text": ["offline"], "image": ["offline"], "video": ["openai"], "voice": ["offline"]}})
    # The first clip renders; the next videos.create answers a 500, so that later shot's step fails and is retried.
    server.script("videos.create", {}, {"status": 500})
    job = start(tenant_a, run_commits, options={}, template_id=template.pk)
    drain(run_commits)
    job = reload(tenant_a, job)
    with tenant_scope(tenant_a.organization):
        steps = {s.shot: s for s in Step.objects.filter(job=job, stage="clip").select_related("artifact")}
    assert job.status == "completed", (job.error, [s.error for s in steps.values()])

    [(character_id, character)] = server.characters().items()
    assert len(server.requests("videos.create_character")) == 1
    first = steps[1].artifact.data
    assert first["character"] == {"id": character_id, "name": character["name"]}
    assert character["made_from"] == first["remote_video_id"]  # made from shot 1's own render
    assert steps[1].usage["character"]["id"] == character_id and steps[1].cost == Decimal("0.4")
    # Every later shot's create named it, the failed one and its retry too; the first one's did not.
    creates = server.requests("videos.create")
    assert len(creates) == 4 and "characters[][id]" not in creates[0]["body"]
    assert all(create["body"]["characters[][id]"] == character_id for create in creates[1:])
    assert sorted(character["featured_in"]) == sorted(steps[n].artifact.data["remote_video_id"] for n in (2, 3))
    assert sorted(steps[n].attempts for n in (2, 3)) == [1, 2]  # one of them was retried
    # The later shots waited for the first clip.
    assert all(steps[n].started_at >= steps[1].finished_at for n in (2, 3))

    # A later shot made again refers to the same character; none is made again.
    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.shot_regenerate(job=job, number=3, actor=Actor(user=tenant_a.owner)))
    drain(run_commits)
    assert reload(tenant_a, job).status == "completed"
    assert len(server.requests("videos.create_character")) == 1
    assert len(server.characters()[character_id]["featured_in"]) == 3
    assert server.requests("videos.create")[-1]["body"]["characters[][id]"] == character_id


def test_the_up_front_estimate_follows_the_prices():
    from generation.providers.openai.client import estimate_media_cost

    settings = {"prices": PRICES}
    assert estimate_media_cost("image", 30, 8, settings) == Decimal("0.32")
    assert estimate_media_cost("video", 30, 8, settings) == Decimal("3.2")  # 3.75 s shots render 4 s each
    assert estimate_media_cost("voice", 30, 8, settings) == Decimal("0.000015") * 450
    assert estimate_media_cost("video", 30, 8, {}) == 0


def test_a_voice_that_fails_falls_back_along_the_chain_and_one_voice_speaks_every_line(
        server, tenant_a, run_commits, settings):
    from config.tenancy import tenant_scope
    from generation.models import GenerationPolicy, ProviderCredential, Step
    from generation.tests.test_pipeline import drain, reload, start

    with tenant_scope(tenant_a.organization):
        GenerationPolicy.objects.create(organization=tenant_a.organization, providers={
            "text": ["offline"], "image": ["offline"], "video": ["offline"], "voice": ["openai", "offline"]})
        ProviderCredential.objects.create(organization=tenant_a.organization, provider="openai", settings={
            "base_url": server.base_url, "timeout_s": 30, "max_attempts": 2, "backoff_s": 0.01, "prices": PRICES})
    # The first line speaks; the second gets 500 on both tries: every line is spoken again by the next voice.
    server.script("audio.speech", {}, {"status": 500}, {"status": 500})
    job = start(tenant_a, run_commits, options={"duration_s": 8, "resolution": "480p", "shots": 2})
    drain(run_commits)
    job = reload(tenant_a, job)
    assert job.status == "completed", job.error
    with tenant_scope(tenant_a.organization):
        compose = Step.objects.select_related("artifact").get(job=job, stage="compose")
    data = compose.artifact.data
    assert data["voice_provider"] == "offline" and data["narrated"]
    assert data["voice_fallbacks"] == [{"provider": "openai", "code": "provider_http_error", "upstream_status": 500}]
    assert len(server.requests("audio.speech")) == 3  # line 1, then line 2 twice
    spoken = Decimal(PRICES["per_speech_character"]) * len(server.requests("audio.speech")[0]["body"]["input"])
    assert compose.cost == spoken.quantize(compose.cost)  # the line spoken before the failure is paid for


def test_the_estimate_of_a_job_keeping_a_recurring_character_counts_the_character(tenant_a):
    from accounts.audit import Actor
    from config.tenancy import tenant_scope
    from generation import services
    from generation.models import Job, ProviderCredential
    from projects.templates import template_create, template_for_job

    with tenant_scope(tenant_a.organization):
        ProviderCredential.objects.create(organization=tenant_a.organization, provider="openai", settings={
            "base_url": "https://api.example.test/v1", "prices": {**PRICES, "per_character": "0.5"}})
        templates = {recurring: template_create(
            organization=tenant_a.organization, name=f"Lead {recurring}", actor=Actor(user=tenant_a.owner),
            settings={"duration_s": 12, "shots": 3, "recurring_character": recurring, "voice": "none",
                      "providers": {"text": ["offline"], "image": ["offline"], "video": ["openai"],
                                    "voice": ["offline"]}}) for recurring in (False, True)}

    def estimate(recurring):
        with tenant_scope(tenant_a.organization):
            _version, snapshot = template_for_job(organization=tenant_a.organization,
                                                  template_id=templates[recurring].pk)
            job = Job(organization=tenant_a.organization, options={"duration_s": 12, "shots": 3, "voice": "none"},
                      template_snapshot=snapshot)
            return services.job_estimate(job=job)

    assert estimate(False) == Decimal("1.2")  # three 4 s renders at 0.1 a second
    assert estimate(True) == Decimal("1.7")  # and the one character made from shot 1's clip
