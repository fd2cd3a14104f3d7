"""The offline provider: the planner's outputs, the painted frames and the animated clips (real ffmpeg).

No database: these run the providers on plain data at 480p and short durations to stay fast.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config.media import ffmpeg_exe, probe
from generation.providers.base import ProviderError, ProviderRefused, StageContext
from generation.providers.offline import OfflineImage, OfflineText, OfflineVideo, OfflineVoice, palette_colors
from generation.styles import STYLE_CATALOGUE
from projects import schemas


def make_ctx(tmp_path: Path, resolution: str = "480p", aspect_ratio: str = "16:9", prompts: dict | None = None,
             is_cancelled=lambda: False, organization_id: int = 1) -> StageContext:
    return StageContext(organization_id=organization_id, job_id="job-1", options={"resolution": resolution,
                        "aspect_ratio": aspect_ratio}, prompts=prompts or {}, work_dir=tmp_path,
                        is_cancelled=is_cancelled)


def plan(topic: str, ctx: StageContext, duration_s: float = 12.0, shots: int = 4):
    text = OfflineText()
    style = text.style(topic=topic, catalogue=STYLE_CATALOGUE, ctx=ctx).value
    script = text.script(topic=topic, style=style, duration_s=duration_s, shots=shots, ctx=ctx).value
    board = text.storyboard(script=script, style=style, shots=shots, duration_s=duration_s, ctx=ctx).value
    return style, script, board


def decode_rgb(path: Path) -> np.ndarray:
    """All frames of a clip as an int16 array (frames, height, width, 3)."""
    info = probe(path)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info["height"], info["width"], 3).astype(np.int16)


def mean_difference(a, b) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


# --- the catalogue and the planner -------------------------------------------------------------------

def test_catalogue_has_every_style_valid():
    assert list(STYLE_CATALOGUE) == schemas.STYLE_NAMES
    for name, entry in STYLE_CATALOGUE.items():
        schemas.validate(entry, schemas.STYLE, name)
        assert entry["name"] == name
        assert 3 <= len(entry["palette"]) <= 6


@pytest.mark.parametrize("topic, expected", [
    ("A walk through an ancient forest at dawn", "nature"),
    ("The last spaceship leaves the dying galaxy", "scifi"),
    ("A dragon guards the castle of a lost kingdom", "fantasy"),
    ("Rush hour in the city streets", "urban"),
    ("Launching our new coffee brand", "commercial"),
    ("Grandparents remember the 1950s", "vintage"),
])
def test_style_detection_by_keywords(tmp_path, topic, expected):
    result = OfflineText().style(topic=topic, catalogue=STYLE_CATALOGUE, ctx=make_ctx(tmp_path))
    assert result.value["name"] == expected
    assert result.cost == 0
    schemas.validate(result.value, schemas.STYLE, "style")


def test_style_fallback_is_a_stable_choice(tmp_path):
    ctx = make_ctx(tmp_path)
    first = OfflineText().style(topic="Qwzx blorp frandle", catalogue=STYLE_CATALOGUE, ctx=ctx).value
    again = OfflineText().style(topic="Qwzx blorp frandle", catalogue=STYLE_CATALOGUE, ctx=ctx).value
    assert first == again and first["name"] in schemas.STYLE_NAMES


def test_style_prompt_and_partial_catalogue(tmp_path):
    ctx = make_ctx(tmp_path, prompts={"style": "a retro, nostalgic look"})
    assert OfflineText().style(topic="Our team", catalogue=STYLE_CATALOGUE, ctx=ctx).value["name"] == "vintage"
    partial = {name: STYLE_CATALOGUE[name] for name in ("minimalist", "documentary")}
    chosen = OfflineText().style(topic="Spaceships", catalogue=partial, ctx=make_ctx(tmp_path)).value
    assert chosen["name"] in partial


@pytest.mark.parametrize("duration_s, shots", [(5, 1), (12, 3), (30, 8), (61.3, 12), (4.0, 8), (600, 50)])
def test_plan_validates_and_durations_sum(tmp_path, duration_s, shots):
    style, script, board = plan("A fox in the forest", make_ctx(tmp_path), duration_s, shots)
    schemas.validate(script, schemas.SCRIPT, "script")
    schemas.validate(board, schemas.STORYBOARD, "storyboard")
    assert abs(sum(scene["duration_s"] for scene in script["scenes"]) - duration_s) <= 0.1 * duration_s
    assert abs(sum(scene["duration_s"] for scene in script["scenes"]) - duration_s) < 0.011  # in fact exact
    assert [shot["number"] for shot in board["shots"]] == list(range(1, shots + 1))
    assert abs(sum(shot["duration_s"] for shot in board["shots"]) - duration_s) < 0.011
    assert all(shot["duration_s"] >= 0.5 for shot in board["shots"])
    assert all(scene["narration"] and scene["visual_notes"] for scene in script["scenes"])


def test_storyboard_has_variety(tmp_path):
    _style, _script, board = plan("A spaceship crossing the galaxy", make_ctx(tmp_path), 30, 8)
    shots = board["shots"]
    assert len({shot["camera_movement"] for shot in shots}) >= 5
    assert len({shot["shot_type"] for shot in shots}) >= 3
    assert all(a["camera_movement"] != b["camera_movement"] for a, b in zip(shots, shots[1:]))
    assert shots[0]["shot_type"] == "extreme_wide"
    assert sum(1 for shot in shots if shot["dialogue"]) >= 6  # the narration is spread over the shots


def test_storyboard_from_another_providers_script(tmp_path):
    """A script from another provider (uneven scenes, durations not matching) still gives n shots summing
    to the requested duration."""
    script = {"title": "T", "synopsis": "S", "scenes": [
        {"description": "A quiet harbour.", "narration": "It begins at the harbour, before sunrise.",
         "duration_s": 3, "visual_notes": "", "audio_notes": ""},
        {"description": "Boats leave.", "narration": "One by one the boats leave.", "duration_s": 17,
         "visual_notes": "", "audio_notes": ""},
    ]}
    board = OfflineText().storyboard(script=script, style=STYLE_CATALOGUE["nature"], shots=6, duration_s=24,
                                     ctx=make_ctx(tmp_path)).value
    assert len(board["shots"]) == 6
    assert abs(sum(shot["duration_s"] for shot in board["shots"]) - 24) < 0.011
    assert "harbour" in board["shots"][0]["description"]
    assert "boats" in board["shots"][-1]["description"].lower()


def test_plan_refuses_impossible_requests(tmp_path):
    text, ctx = OfflineText(), make_ctx(tmp_path)
    with pytest.raises(ProviderRefused):
        text.script(topic="x", style=STYLE_CATALOGUE["nature"], duration_s=2, shots=8, ctx=ctx)
    with pytest.raises(ProviderRefused):
        text.storyboard(script={"scenes": []}, style=STYLE_CATALOGUE["nature"], shots=0, duration_s=10, ctx=ctx)


def test_plan_is_deterministic_and_weaves_prompts(tmp_path):
    ctx = make_ctx(tmp_path, prompts={"script": "Keep it hopeful.", "storyboard": "Low camera angles."})
    first, second = plan("A city that never sleeps", ctx, 20, 6), plan("A city that never sleeps", ctx, 20, 6)
    assert first == second
    _style, script, board = first
    assert "Keep it hopeful." in script["synopsis"]
    assert all("Low camera angles." in shot["composition"] for shot in board["shots"])
    other = plan("A city that sleeps", make_ctx(tmp_path), 20, 6)
    assert other[2] != board


# --- frames -------------------------------------------------------------------------------------------

def shot_dict(number: int = 1, movement: str = "static", shot_type: str = "medium", duration_s: float = 1.0,
              description: str = "Medium shot of a fox in the forest at dawn", **extra) -> dict:
    return {"number": number, "description": description, "dialogue": "", "camera_movement": movement,
            "shot_type": shot_type, "duration_s": duration_s, "composition": "", "lighting": "", **extra}


@pytest.mark.parametrize("aspect_ratio, size", [("16:9", (854, 480)), ("9:16", (480, 854)), ("1:1", (480, 480))])
def test_frame_png_has_exact_size(tmp_path, aspect_ratio, size):
    ctx = make_ctx(tmp_path, aspect_ratio=aspect_ratio)
    out = tmp_path / "frame.png"
    result = OfflineImage().frame(shot=shot_dict(), style=STYLE_CATALOGUE["nature"], out=out, ctx=ctx)
    assert result.value == out and result.cost == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == size == ctx.size


def test_frames_are_deterministic_and_differ_by_shot_and_seed(tmp_path):
    ctx, style, image = make_ctx(tmp_path), STYLE_CATALOGUE["scifi"], OfflineImage()
    paths = {}
    for name, shot in {"a": shot_dict(), "a_again": shot_dict(), "seeded": shot_dict(seed=1),
                       "other_shot": shot_dict(number=2, description="Close-up of a robot in the city")}.items():
        paths[name] = image.frame(shot=shot, style=style, out=tmp_path / f"{name}.png", ctx=ctx).value
    digest = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in paths.items()}
    assert digest["a"] == digest["a_again"]
    pixels = {name: np.asarray(Image.open(path).convert("RGB")) for name, path in paths.items()}
    assert mean_difference(pixels["a"], pixels["seeded"]) > 5
    assert mean_difference(pixels["a"], pixels["other_shot"]) > 5


def test_two_organizations_get_their_own_animatic_of_the_same_request(tmp_path):
    """Same topic, options and shot in two studios: different plans, frames and clips (issue 19: identical
    bytes made the second studio's job a copy of the first's); the same studio again: the same bytes."""
    ours, again, theirs = (make_ctx(tmp_path, organization_id=7), make_ctx(tmp_path, organization_id=7),
                           make_ctx(tmp_path, organization_id=8))
    topic = "Lanterns drifting over a mountain lake"
    assert plan(topic, ours) == plan(topic, again)
    assert plan(topic, ours)[2] != plan(topic, theirs)[2]
    style, shot = STYLE_CATALOGUE["nature"], shot_dict(movement="pan_left", duration_s=0.5)
    frames = {name: OfflineImage().frame(shot=shot, style=style, out=tmp_path / f"{name}.png", ctx=ctx).value
              for name, ctx in (("ours", ours), ("again", again), ("theirs", theirs))}
    assert frames["ours"].read_bytes() == frames["again"].read_bytes()
    pixels = {name: np.asarray(Image.open(path).convert("RGB")) for name, path in frames.items()}
    assert mean_difference(pixels["ours"], pixels["theirs"]) > 3
    clips = {name: OfflineVideo().clip(shot=shot, style=style, frame=frames["ours"], fps=24,
                                       out=tmp_path / f"{name}.mp4", ctx=ctx).value
             for name, ctx in (("ours", ours), ("again", again), ("theirs", theirs))}
    assert clips["ours"].read_bytes() == clips["again"].read_bytes() != clips["theirs"].read_bytes()


def test_subject_grows_with_the_shot_type(tmp_path):
    """The subject (drawn in a colour of its own) covers more of the frame as the shot gets closer."""
    style = STYLE_CATALOGUE["animated"]
    palette = palette_colors(style)
    dark = min(palette, key=lambda c: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
    body = np.array([round(a + (b - a) * 0.25) for a, b in zip(palette[4], dark)])
    coverage = []
    for shot_type in ("extreme_wide", "full", "medium", "close"):
        out = OfflineImage().frame(shot=shot_dict(shot_type=shot_type, description="A person on a hill"),
                                   style=style, out=tmp_path / f"{shot_type}.png", ctx=make_ctx(tmp_path)).value
        pixels = np.asarray(Image.open(out).convert("RGB"), np.int16)
        coverage.append(float((np.abs(pixels - body).sum(axis=2) < 40).mean()))
    assert coverage == sorted(coverage) and coverage[-1] > 5 * coverage[0], coverage


# --- clips --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def first_frame(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("frame")
    return OfflineImage().frame(shot=shot_dict(), style=STYLE_CATALOGUE["nature"], out=tmp / "frame.png",
                                ctx=make_ctx(tmp)).value


@pytest.mark.parametrize("movement", schemas.CAMERA_MOVEMENTS)
def test_every_camera_movement_moves(tmp_path, first_frame, movement):
    ctx = make_ctx(tmp_path)
    shot = shot_dict(movement=movement, duration_s=1.0)
    out = tmp_path / f"{movement}.mp4"
    result = OfflineVideo().clip(shot=shot, style=STYLE_CATALOGUE["nature"], frame=first_frame, fps=24, out=out,
                                 ctx=ctx)
    assert result.value == out and result.cost == 0 and result.usage["frames"] == 24
    info = probe(out)
    assert (info["width"], info["height"]) == ctx.size
    assert info["video_codec"] == "h264" and info["fps"] == 24 and info["audio_codec"] is None
    assert abs(info["duration_s"] - 1.0) <= 1 / 24 + 1e-6
    frames = decode_rgb(out)
    assert len(frames) == 24
    assert mean_difference(frames[0], frames[-1]) > 4.0, movement  # visible motion, even for "static"


def test_clip_matches_the_frame_and_is_deterministic(tmp_path, first_frame):
    ctx = make_ctx(tmp_path)
    shot = shot_dict(movement="zoom_in", duration_s=0.5)
    outs = [OfflineVideo().clip(shot=shot, style=STYLE_CATALOGUE["nature"], frame=first_frame, fps=24,
                                out=tmp_path / f"clip{i}.mp4", ctx=ctx).value for i in range(2)]
    assert outs[0].read_bytes() == outs[1].read_bytes()
    start = decode_rgb(outs[0])[0]
    # zoom_in starts on the whole frame: the first picture is the PNG (plus particles and coding loss).
    assert mean_difference(start, np.asarray(Image.open(first_frame).convert("RGB"))) < 4


def test_clip_of_a_frame_with_another_size_is_fitted(tmp_path):
    frame = tmp_path / "odd.png"
    Image.new("RGB", (300, 500), (200, 50, 50)).save(frame)
    out = OfflineVideo().clip(shot=shot_dict(movement="pan_left", duration_s=0.5), style={}, frame=frame, fps=12,
                              out=tmp_path / "odd.mp4", ctx=make_ctx(tmp_path)).value
    assert (probe(out)["width"], probe(out)["height"]) == (854, 480)


def test_clip_cancellation_stops_quickly(tmp_path, first_frame):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    ctx = make_ctx(tmp_path, is_cancelled=cancelled)
    out = tmp_path / "cancelled.mp4"
    started = time.monotonic()
    with pytest.raises(ProviderError, match="cancelled"):
        OfflineVideo().clip(shot=shot_dict(movement="zoom_in", duration_s=60), style=STYLE_CATALOGUE["nature"],
                            frame=first_frame, fps=24, out=out, ctx=ctx)
    assert time.monotonic() - started < 5
    assert not out.exists() and not list(tmp_path.glob("*.part"))


def test_clip_of_an_unreadable_frame_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ProviderError):
        OfflineVideo().clip(shot=shot_dict(), style={}, frame=bad, fps=24, out=tmp_path / "x.mp4",
                            ctx=make_ctx(tmp_path))


# --- voice --------------------------------------------------------------------------------------------

def test_voice_without_an_engine_returns_none(tmp_path, monkeypatch):
    """Neither the bundled library (it failed to load) nor a binary: no narration, no file."""
    monkeypatch.setattr(OfflineVoice, "library", staticmethod(lambda: None))
    monkeypatch.setattr(OfflineVoice, "engine", staticmethod(lambda: None))
    result = OfflineVoice().narrate(text="Hello there.", voice="default", out=tmp_path / "v.wav",
                                    ctx=make_ctx(tmp_path))
    assert result.value is None and result.cost == 0
    assert not (tmp_path / "v.wav").exists()


def test_voice_uses_a_local_engine(tmp_path, monkeypatch):
    """Where the bundled library cannot load, a stand-in espeak-ng on PATH: the provider passes the voice, the
    output path and the text file."""
    monkeypatch.setattr(OfflineVoice, "library", staticmethod(lambda: None))
    fake = tmp_path / "bin" / "espeak-ng"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, wave\n"
        "args = sys.argv[1:]\n"
        "out = args[args.index('-w') + 1]\n"
        "text = open(args[args.index('-f') + 1]).read()\n"
        "assert args[args.index('-v') + 1] == 'en+f3' and text == 'Hello there.'\n"
        "with wave.open(out, 'wb') as w:\n"
        "    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050); w.writeframes(b'\\0\\1' * 22050)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = OfflineVoice().narrate(text="Hello  there.", voice="female", out=tmp_path / "v.wav",
                                    ctx=make_ctx(tmp_path))
    assert result.value == tmp_path / "v.wav"
    assert result.usage["seconds"] == 1.0
