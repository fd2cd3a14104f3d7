"""generation.media with the real ffmpeg: probe, compose (transitions, subtitles, audio), thumbnail, review.

No database. Inputs are made with ffmpeg's own test sources at small sizes and a few seconds, to stay fast.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation import media
from config.media import MediaError, ffmpeg_exe, parse_ffmpeg_info, probe
from generation.media import compose, review_checks, thumbnail
from projects import templates

W, H, FPS = 640, 360, 24


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin", *args], check=True,
                   timeout=120)


def moving_clip(path: Path, seconds: float, size=(W, H), fps=FPS, source="testsrc2") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"{source}=size={size[0]}x{size[1]}:rate={fps}:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


def tone(path: Path, seconds: float, frequency: int = 440) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=22050:duration={seconds}", str(path))
    return path


def frame_at(video: Path, seconds: float) -> np.ndarray:
    info = probe(video)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", f"{seconds}", "-i", str(video), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(info["height"], info["width"], 3).astype(np.int16)


SHOTS = [
    {"duration_s": 1.5, "dialogue": "The first line of dialogue."},
    {"duration_s": 1.0, "dialogue": "A second, somewhat longer line that may need to wrap onto two lines."},
    {"duration_s": 1.5, "dialogue": ""},
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("clips")
    return [
        moving_clip(tmp / "a.mp4", 1.5),
        moving_clip(tmp / "b.mp4", 0.8, size=(480, 360), fps=30),  # another size and rate, and too short
        moving_clip(tmp / "c.mp4", 1.5, source="testsrc"),
    ]


@pytest.fixture(scope="module")
def composed(clips, tmp_path_factory) -> Path:
    return compose(clips, SHOTS, tmp_path_factory.mktemp("out") / "video.mp4", W, H, FPS)


def test_probe_reads_the_file(clips):
    info = probe(clips[1])
    assert info["video_codec"] == "h264" and info["audio_codec"] is None
    assert (info["width"], info["height"], info["fps"]) == (480, 360, 30)
    assert info["duration_s"] == pytest.approx(0.8, abs=0.05)
    assert info["size_bytes"] == clips[1].stat().st_size and info["bitrate"] > 0


def test_probe_parses_the_ffmpeg_header():
    header = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 1234 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 1100 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)"""
    assert parse_ffmpeg_info(header) == {"duration_s": 62.5, "width": 1920, "height": 1080, "fps": 29.97,
                                         "video_codec": "h264", "audio_codec": "aac", "bitrate": 1234000}


def test_probe_of_something_else_is_a_media_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(MediaError):
        probe(bad)
    with pytest.raises(MediaError):
        probe(tmp_path / "missing.mp4")


def test_compose_makes_h264_aac_of_exact_size_and_duration(composed):
    info = probe(composed)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert (info["width"], info["height"], info["fps"]) == (W, H, FPS)
    total = sum(shot["duration_s"] for shot in SHOTS)
    assert abs(info["duration_s"] - total) <= 0.1 * total
    assert abs(info["duration_s"] - total) <= 2 / FPS  # in fact exact: the fades overlap held frames
    with open(composed, "rb") as handle:  # +faststart: the index (moov) comes before the media data
        head = handle.read(4096)
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_subtitles_are_burned_in_at_the_bottom(clips, composed, tmp_path):
    plain = compose(clips, SHOTS, tmp_path / "plain.mp4", W, H, FPS, subtitles=False)
    band = int(H * 0.78)
    for at, expect_text in ((0.6, True), (3.3, False)):  # shot 1 has a line, shot 3 has none
        with_text, without = frame_at(composed, at), frame_at(plain, at)
        bottom = float(np.abs(with_text[band:] - without[band:]).mean())
        top = float(np.abs(with_text[:band] - without[:band]).mean())
        assert top < 2.0
        assert (bottom > 8.0) == expect_text, (at, bottom)


def test_subtitle_strip_needs_no_system_font():
    strip = media.subtitle_strip("Hello world " * 20, 854, 480)
    assert strip.mode == "RGBA" and strip.size == (854, media.subtitle_strip_height(480))
    assert strip.getbbox() is not None
    assert media.subtitle_strip("", 854, 480).getbbox() is None


def test_compose_with_a_single_clip_and_no_transition(clips, tmp_path):
    out = compose(clips[:1], SHOTS[:1], tmp_path / "one.mp4", W, H, FPS, transition_s=0)
    info = probe(out)
    assert info["audio_codec"] == "aac" and info["duration_s"] == pytest.approx(1.5, abs=0.05)


def test_compose_places_narration_and_music(clips, tmp_path):
    voices = [tone(tmp_path / "n1.wav", 0.8), None, tone(tmp_path / "n3.wav", 0.8, 660)]
    music = tone(tmp_path / "music.wav", 1.0, 220)  # shorter than the video: it loops
    out = compose(clips, SHOTS, tmp_path / "voiced.mp4", W, H, FPS, narration=voices, music=music)
    info = probe(out)
    assert info["audio_codec"] == "aac"
    assert abs(info["duration_s"] - 4.0) <= 0.4
    checks = {check["check"]: check for check in review_checks(out, duration_s=4.0, width=W, height=H,
                                                                audio_required=True)}
    assert checks["audio"]["ok"], checks["audio"]


def test_compose_rejects_bad_input(clips, tmp_path):
    with pytest.raises(MediaError):
        compose([], [], tmp_path / "x.mp4", W, H, FPS)
    with pytest.raises(MediaError):
        compose(clips[:2], SHOTS, tmp_path / "x.mp4", W, H, FPS)
    with pytest.raises(MediaError):
        compose([tmp_path / "missing.mp4"], SHOTS[:1], tmp_path / "x.mp4", W, H, FPS)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 1000)
    with pytest.raises(MediaError, match="failed"):
        compose([broken], SHOTS[:1], tmp_path / "x.mp4", W, H, FPS)
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.mp4.part").exists()


def test_thumbnail_is_a_jpeg_of_the_video(composed, tmp_path):
    out = thumbnail(composed, tmp_path / "thumb.jpg")
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (W, H)
    late = thumbnail(composed, tmp_path / "late.jpg", at_s=999)  # past the end: the last frames
    assert late.stat().st_size > 0


def test_review_passes_a_good_video(composed):
    checks = review_checks(composed, duration_s=4.0, width=W, height=H, audio_required=False)
    assert [check["check"] for check in checks] == ["duration", "resolution", "black", "frozen", "audio"]
    assert all(check["ok"] for check in checks), checks


def test_review_flags_silence_size_and_duration(composed):
    checks = {c["check"]: c for c in review_checks(composed, duration_s=10.0, width=1280, height=720,
                                                    audio_required=True)}
    assert not checks["duration"]["ok"] and not checks["resolution"]["ok"]
    assert not checks["audio"]["ok"] and "silent" in checks["audio"]["detail"]


def test_review_flags_a_black_video(tmp_path):
    black = tmp_path / "black.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=black:size={W}x{H}:rate={FPS}:duration=3", "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", str(black))
    checks = {c["check"]: c for c in review_checks(black, duration_s=3, width=W, height=H, audio_required=False)}
    assert not checks["black"]["ok"], checks["black"]
    assert not checks["audio"]["ok"] and checks["audio"]["detail"] == "no audio stream"


def test_review_flags_a_frozen_video(tmp_path):
    still = tmp_path / "still.png"
    Image.effect_mandelbrot((W, H), (-2, -1.2, 1, 1.2), 100).convert("RGB").save(still)
    frozen = tmp_path / "frozen.mp4"
    ffmpeg("-loop", "1", "-framerate", str(FPS), "-i", str(still), "-t", "4", "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", str(frozen))
    checks = {c["check"]: c for c in review_checks(frozen, duration_s=4, width=W, height=H, audio_required=False)}
    assert checks["black"]["ok"]
    assert not checks["frozen"]["ok"], checks["frozen"]


def test_narration_starts_with_its_shot(clips, tmp_path):
    voices = [None, None, tone(tmp_path / "n3.wav", 0.8, 660)]  # shot 3 starts at 2.5 s
    out = compose(clips, SHOTS, tmp_path / "late_voice.mp4", W, H, FPS, narration=voices)
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(out), "-f", "s16le", "-ac", "1", "-ar", "8000", "-"],
                         capture_output=True, check=True).stdout
    samples = np.frombuffer(pcm, np.int16).astype(np.float64)

    def rms(start: float, end: float) -> float:
        return float(np.sqrt(np.mean(samples[int(start * 8000):int(end * 8000)] ** 2)))

    assert rms(0.0, 2.4) < 5  # silence before its shot
    assert rms(2.55, 3.25) > 1000  # the voice during it
    assert rms(3.4, 4.0) < 5


def test_subtitles_without_freetype_use_the_bitmap_font(monkeypatch):
    monkeypatch.setattr(media, "_font", lambda size: None)
    strip = media.subtitle_strip("Still readable without FreeType", 854, 480)
    assert strip.size == (854, media.subtitle_strip_height(480)) and strip.getbbox() is not None


# --- subtitle style (a template's `subtitle_style`) ------------------------------------------------

STYLED_SHOT = [{"duration_s": 1.0, "dialogue": "Subtitles in place."}]  # one line


def text_rows(video: Path, plain: Path, at: float = 0.5) -> np.ndarray:
    """The rows of the frame at `at` where the burned text changed the picture (against the same video
    without subtitles)."""
    changed = np.abs(frame_at(video, at) - frame_at(plain, at)).max(axis=2) > 60
    return np.nonzero(changed.sum(axis=1) >= 2)[0]


@pytest.fixture(scope="module")
def flat_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("flat") / "gray.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=c=0x808080:size={W}x{H}:rate={FPS}:duration=1", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


def test_the_subtitle_style_places_and_sizes_the_burned_text(flat_clip, tmp_path):
    def render(name, **style):
        return compose([flat_clip], STYLED_SHOT, tmp_path / f"{name}.mp4", W, H, FPS, transition_s=0,
                       subtitles=bool(style), subtitle_style={"background": "none", **style} if style else None)
    plain = render("plain")
    bottom, top = text_rows(render("bottom", position="bottom"), plain), text_rows(render("top", position="top"), plain)
    assert len(bottom) and len(top)
    assert bottom.min() > H * 0.6 and bottom.max() < H * 0.96  # above the bottom margin
    assert top.max() < H * 0.4 and top.min() > H * 0.04  # below the top margin
    small = text_rows(render("small", size="small"), plain)
    large = text_rows(render("large", size="large"), plain)
    # One line of text: its rows grow with the font (4% against 6.5% of the short side).
    assert np.ptp(large) > np.ptp(small) * 1.3, (np.ptp(small), np.ptp(large))
    assert np.ptp(large) > H * 0.045 and np.ptp(small) < H * 0.06


def test_the_outline_and_the_background_of_a_subtitle_strip():
    def dark_pixels(**style) -> int:
        strip = np.asarray(media.subtitle_strip("Outlined words", W, H, style=style))
        return int(((strip[..., 3] > 200) & (strip[..., :3].max(axis=2) < 60)).sum())
    none, thin, thick = (dark_pixels(outline=name, background="none") for name in ("none", "thin", "thick"))
    assert none == 0 and thin > 0 and thick > thin * 1.5
    box = np.asarray(media.subtitle_strip("Boxed words", W, H, style={"background": "box"}))[..., 3]
    solid = np.asarray(media.subtitle_strip("Boxed words", W, H, style={"background": "solid"}))[..., 3]
    assert box.max() == 255 and 100 < np.median(box[box > 0]) < 200 and np.median(solid[solid > 0]) == 255
    bare = np.asarray(media.subtitle_strip("Boxed words", W, H, style={"background": "none", "outline": "none"}))
    assert (bare[..., 3] > 0).sum() < (box > 0).sum() / 3  # only the glyphs


def test_the_subtitle_size_follows_the_short_side_so_portrait_reads_like_landscape():
    def glyph_height(width, height, **style):
        strip = media.subtitle_strip("Short line", width, height, style={"background": "none", **style})
        box = strip.getbbox()
        return box[3] - box[1]
    assert glyph_height(720, 1280) == glyph_height(1280, 720)  # 9:16 and 16:9 at 720p
    assert glyph_height(1920, 1080) == pytest.approx(glyph_height(1280, 720) * 1.5, rel=0.1)  # 1080p against 720p
    assert glyph_height(854, 480, size="small") < glyph_height(854, 480) < glyph_height(854, 480, size="large")
    # Two lines of the large size fit the strip, whatever the frame.
    for width, height in ((854, 480), (1280, 720), (1080, 1920)):
        strip = media.subtitle_strip("A line long enough to be wrapped onto a second one here", width, height,
                                     style={"size": "large", "position": "top"})
        assert strip.getbbox()[3] < strip.height and strip.height < height / 2


def test_an_unknown_subtitle_style_is_refused_and_matches_the_template_schema():
    with pytest.raises(MediaError):
        media.subtitle_style_of({"size": "huge"})
    with pytest.raises(MediaError):
        media.subtitle_style_of({"font": "Arial"})
    assert media.subtitle_style_of(None) == media.SUBTITLE_STYLE == templates.template_defaults()["subtitle_style"]
    assert list(media.SUBTITLE_SIZES) == templates.SUBTITLE_SIZES
    assert list(media.SUBTITLE_POSITIONS) == templates.SUBTITLE_POSITIONS
    assert list(media.SUBTITLE_OUTLINES) == templates.SUBTITLE_OUTLINES
    assert list(media.SUBTITLE_BACKGROUNDS) == templates.SUBTITLE_BACKGROUNDS
