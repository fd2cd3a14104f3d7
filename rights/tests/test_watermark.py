"""The watermark: payload integrity, compatibility with the invisible-watermark library in both directions, and
survival through real ffmpeg re-encodes, rescales and JPEG."""
from __future__ import annotations

import os
import random
import subprocess

import cv2
import numpy as np
import pytest

try:  # the reference library imports torch; CI installs it with the GPU packages (REQUIRE_GPU_DEPS=1)
    from imwatermark import WatermarkDecoder, WatermarkEncoder
except ImportError:
    if os.environ.get("REQUIRE_GPU_DEPS") == "1":
        raise
    WatermarkDecoder = WatermarkEncoder = None
needs_library = pytest.mark.skipif(WatermarkDecoder is None, reason="needs invisible-watermark: make install-gpu")

from config.media import ffmpeg_exe, probe
from rights.watermark import (
    CROCKFORD,
    PAYLOAD_BITS,
    content_id_new,
    payload_bits,
    payload_decode,
    watermark_detect,
    watermark_frame,
    watermark_image,
    watermark_read,
    watermark_video,
)


def natural_frame(height: int, width: int, seed: int = 0, shift: int = 0) -> np.ndarray:
    """Gradients, soft noise and a few flat shapes: enough like a rendered frame for chroma statistics."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x += shift
    base = np.stack([x / width * 160 + 40, y / height * 140 + 50, (x + y) / (width + height) * 120 + 70], -1)
    base += 25 * np.sin(x / 37.0 + seed)[..., None] * np.cos(y / 53.0)[..., None]
    base += cv2.GaussianBlur(rng.normal(0, 12, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    frame = np.clip(base, 0, 255).astype(np.uint8)
    scale = height / 720
    cv2.circle(frame, (int(width * 0.3) + shift, int(height * 0.45)), int(120 * scale), (40, 190, 90), -1)
    cv2.rectangle(frame, (int(width * 0.6), int(height * 0.2)), (int(width * 0.85), int(height * 0.7)),
                  (200, 60, 50), -1)
    cv2.putText(frame, "shot 3", (int(width * 0.1), int(height * 0.85)), cv2.FONT_HERSHEY_SIMPLEX, 2 * scale,
                (250, 250, 250), max(1, int(3 * scale)))
    return frame


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / mse))


def write_video(path, height: int, width: int, *, frames: int = 24, fps: int = 24, audio: bool = False,
                marked_id: str | None = None, tags: tuple[str, ...] = ()) -> None:
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "-"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={frames / fps}", "-c:a", "aac", "-shortest"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", *tags, str(path)]
    data = b"".join(natural_frame(height, width, seed=1, shift=4 * i).tobytes() for i in range(frames))
    subprocess.run(args, input=data, check=True, capture_output=True)


def reencode(src, dst, *, crf: int, vf: str | None = None) -> None:
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src)]
    if vf:
        args += ["-vf", vf]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", str(dst)]
    subprocess.run(args, check=True, capture_output=True)


# --- content id and payload ---------------------------------------------------------------------------


def test_content_ids_are_short_random_and_unambiguous():
    ids = {content_id_new() for _ in range(2000)}
    assert len(ids) == 2000
    for content_id in ids:
        assert len(content_id) == 8
        assert set(content_id) <= set(CROCKFORD)
        assert not set(content_id) & set("ILOU")


def test_payload_round_trip():
    for _ in range(500):
        content_id = content_id_new()
        bits = payload_bits(content_id)
        assert len(bits) == PAYLOAD_BITS and set(bits) <= {0, 1}
        assert payload_decode(bits) == content_id
    # Read back as people type it: lower case, O for 0, I or L for 1.
    assert payload_decode(payload_bits("0a1b2c3d".replace("0", "o").replace("1", "l"))) == "0A1B2C3D"
    for bad in ("ABC", "ABCDEFGHJ", "ABCDEFGU"):
        with pytest.raises(ValueError):
            payload_bits(bad)


def test_damaged_payload_reads_as_none_never_as_another_id():
    rng = random.Random(7)
    for trial in range(20000):
        content_id = content_id_new()
        bits = payload_bits(content_id)
        # Mostly few flips (what a weak read gives), some heavy ones, up to a whole random word.
        flips = rng.choice([1, 2, 3, 4, 5, 6, 7]) if trial % 2 else rng.randint(8, PAYLOAD_BITS)
        for position in rng.sample(range(PAYLOAD_BITS), flips):
            bits[position] ^= 1
        assert payload_decode(bits) is None
    assert payload_decode([0] * PAYLOAD_BITS) is None
    assert payload_decode([1] * PAYLOAD_BITS) is None
    assert payload_decode([0, 1] * 32) is None
    assert payload_decode([1] * 63) is None


# --- frames -------------------------------------------------------------------------------------------


@needs_library
def test_library_decoder_reads_our_1080p_frame_exactly():
    frame = natural_frame(1080, 1920)
    content_id = content_id_new()
    for mode in ("library", "both"):
        marked = watermark_frame(frame, content_id, mode=mode)
        read = WatermarkDecoder("bits", PAYLOAD_BITS).decode(marked, "dwtDctSvd")
        assert [int(b) for b in read] == payload_bits(content_id), mode
        assert payload_decode(read) == content_id
        found, confidence = watermark_read(marked)
        assert found == content_id and confidence > 0.85


@needs_library
def test_our_decoder_reads_the_library_encoder():
    frame = natural_frame(480, 640, seed=3)
    content_id = content_id_new()
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", payload_bits(content_id))
    found, confidence = watermark_read(encoder.encode(frame, "dwtDctSvd"))
    assert found == content_id
    assert confidence > 0.5  # lower than ours: the library truncates to uint8 and swaps two detail bands


def test_marked_frames_look_the_same():
    content_id = content_id_new()
    for size in ((720, 1280), (1080, 1920)):
        frame = natural_frame(*size, seed=5)
        for mode in ("library", "robust", "both"):
            assert psnr(frame, watermark_frame(frame, content_id, mode=mode)) > 38, (size, mode)


def test_unmarked_frame_reads_none():
    for seed in range(4):
        found, _confidence = watermark_read(natural_frame(720, 1280, seed=seed))
        assert found is None


# --- files --------------------------------------------------------------------------------------------


def test_png_and_jpeg_q50_of_a_marked_frame_are_read(tmp_path):
    source = tmp_path / "frame.png"
    cv2.imwrite(str(source), natural_frame(720, 1280, seed=2))
    content_id = content_id_new()
    summary = watermark_image(source, tmp_path / "marked.png", content_id)
    assert summary["content_id"] == content_id

    found = watermark_detect(tmp_path / "marked.png")
    assert found["content_id"] == content_id and found["frames_read"] == 1
    assert found["confidence"] > 0.9

    marked = cv2.imread(str(tmp_path / "marked.png"))
    cv2.imwrite(str(tmp_path / "marked.jpg"), marked, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert watermark_detect(tmp_path / "marked.jpg")["content_id"] == content_id


@needs_library
def test_video_is_marked_every_frame_with_audio_copied(tmp_path):
    source, marked = tmp_path / "source.mp4", tmp_path / "marked.mp4"
    write_video(source, 360, 640, frames=12, audio=True)
    content_id = content_id_new()
    summary = watermark_video(source, marked, content_id)
    assert summary["frames"] == 12 and summary["content_id"] == content_id
    info = probe(marked)
    assert (info["width"], info["height"], info["video_codec"]) == (640, 360, "h264")
    assert info["audio_codec"] == probe(source)["audio_codec"] == "aac"
    assert b"moov" in marked.read_bytes()[:4096]  # faststart: the index comes first
    found = watermark_detect(marked, max_frames=12)
    assert found["content_id"] == content_id
    assert found["frames_read"] == 12
    assert len(found["votes"]) == PAYLOAD_BITS
    # The library's own decoder reads every frame of our H.264 output (CRF 18) exactly.
    decoder = WatermarkDecoder("bits", PAYLOAD_BITS)
    frames = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(marked), "-f", "rawvideo", "-pix_fmt",
                             "bgr24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 360, 640, 3)
    assert len(frames) == 12
    for frame in frames:
        assert payload_decode(decoder.decode(frame, "dwtDctSvd")) == content_id


@needs_library
@pytest.mark.parametrize("tags, planes", [
    ((), "yuv420p"),  # untagged BT.601 yuv420p, as compose writes: marked in its chroma planes
    (("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"), "bgr24"),  # through BGR
])
def test_each_way_of_marking_a_video_reads_back_through_both_decoders(tmp_path, tags, planes):
    source, marked = tmp_path / "source.mp4", tmp_path / "marked.mp4"
    write_video(source, 720, 1280, frames=6, tags=tags)
    content_id = content_id_new()
    summary = watermark_video(source, marked, content_id)
    assert summary["planes"] == planes and summary["frames"] == 6
    found = watermark_detect(marked, max_frames=6)
    assert found["content_id"] == content_id and found["confidence"] > 0.85
    decoder = WatermarkDecoder("bits", PAYLOAD_BITS)
    frames = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(marked), "-f", "rawvideo", "-pix_fmt",
                             "bgr24", "-"], capture_output=True, check=True).stdout
    for frame in np.frombuffer(frames, dtype=np.uint8).reshape(-1, 720, 1280, 3):
        assert payload_decode(decoder.decode(frame, "dwtDctSvd")) == content_id
    # The picture stays the source's: only chroma moves, by a few levels.
    before = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(source), "-f", "rawvideo", "-pix_fmt",
                             "gray", "-"], capture_output=True, check=True).stdout
    after = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(marked), "-f", "rawvideo", "-pix_fmt",
                            "gray", "-"], capture_output=True, check=True).stdout
    difference = np.abs(np.frombuffer(before, np.uint8).astype(int) - np.frombuffer(after, np.uint8).astype(int))
    assert difference.mean() < 1.5


def test_the_soft_subtitle_track_is_kept_with_its_language(tmp_path):
    source, with_subs, marked = tmp_path / "source.mp4", tmp_path / "subs.mp4", tmp_path / "marked.mp4"
    write_video(source, 360, 640, frames=24, audio=True)
    (tmp_path / "cues.srt").write_text("1\n00:00:00,000 --> 00:00:00,900\n灯塔的光\n", encoding="utf-8")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(source), "-i", str(tmp_path / "cues.srt"),
                    "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text", "-metadata:s:s:0", "language=chi",
                    str(with_subs)], check=True)
    watermark_video(with_subs, marked, content_id_new())
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(marked)], capture_output=True, text=True).stderr
    streams = [line for line in header.splitlines() if "Stream #" in line]
    assert len(streams) == 3 and "Video: h264" in streams[0] and "Audio: aac" in streams[1]
    assert "(chi): Subtitle: mov_text" in streams[2]
    text = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(marked), "-map", "0:s:0", "-f", "srt", "-"],
                          capture_output=True, check=True).stdout.decode()
    assert "灯塔的光" in text


def test_720p_video_survives_h264_crf28_reencode(tmp_path):
    source, marked, copy = tmp_path / "source.mp4", tmp_path / "marked.mp4", tmp_path / "copy.mp4"
    write_video(source, 720, 1280, frames=24)
    content_id = content_id_new()
    watermark_video(source, marked, content_id)
    reencode(marked, copy, crf=28)
    found = watermark_detect(copy, max_frames=8)
    assert found["content_id"] == content_id
    assert found["frames_read"] == 8


def test_robust_mark_survives_rescale_to_640_wide_and_reencode(tmp_path):
    source, marked, copy = tmp_path / "source.mp4", tmp_path / "marked.mp4", tmp_path / "small.mp4"
    write_video(source, 1080, 1920, frames=8)
    content_id = content_id_new()
    watermark_video(source, marked, content_id, mode="robust")
    reencode(marked, copy, crf=26, vf="scale=640:-2")
    assert probe(copy)["width"] == 640
    found = watermark_detect(copy, max_frames=8)
    assert found["content_id"] == content_id
    assert found["mark"] == "robust"


def test_unmarked_video_reads_none(tmp_path):
    source = tmp_path / "source.mp4"
    write_video(source, 360, 640, frames=12)
    found = watermark_detect(source)
    assert found["content_id"] is None
    assert found["frames_read"] == 12
