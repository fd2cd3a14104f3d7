"""Bounded media work on every upload path: a video is refused from its headers before anything decodes
it, every ffmpeg process runs under a memory limit and a time budget, and public verification decodes
in a few slots per process. The hostile files are real MP4s made with ffmpeg."""
from __future__ import annotations

import io
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from config import media_limits
from config.media import ffmpeg_exe
from rights.verification import check_upload

URL = "/api/v1/verify"


def _ffmpeg(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *args], check=True, cwd=cwd,
                   timeout=120)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media-limits")


@pytest.fixture(scope="session")
def huge_mp4(media_dir) -> Path:
    """One real 16000x16000 H.264 frame (about 0.7 MB): decoding it takes some 630 MB."""
    path = media_dir / "huge.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=16000x16000", "-frames:v", "1", "-c:v", "libx264",
            "-preset", "ultrafast", "-threads", "1", "-x264-params", "level=6.2", str(path))
    return path


def _small_video(media_dir: Path, name: str, *args: str) -> Path:
    path = media_dir / name
    if not path.exists():
        _ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.fixture(scope="session")
def normal_mp4(media_dir) -> Path:
    return _small_video(media_dir, "normal.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440", "-t", "2", "-c:a", "aac", "-shortest")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak_memory() -> None:
    """Linux resets this process's peak resident size (VmHWM) to the current one on "5"."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:  # pragma: no cover - Linux gives a process this right over itself
        pytest.skip(f"cannot reset the peak resident size here: {exc}")


def _verify(path: Path, client=None):
    with open(path, "rb") as handle:
        return (client or APIClient()).post(URL, {"file": handle}, format="multipart")


def _error(response) -> dict:
    return response.json()["error"]


# --- the must-show: a 16000x16000 frame, anonymously ----------------------------------------------

def test_a_16000x16000_mp4_to_verify_is_refused_in_under_a_second_without_growing_the_process(db, huge_mp4):
    assert "16000x16000" in subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(huge_mp4)],
                                           capture_output=True, text=True).stderr
    client = APIClient()
    client.post(URL, {"sha256": "0" * 64}, format="json")  # warm the request path (imports, cache)
    rss_before = _status_bytes("VmRSS")
    _reset_peak_memory()
    started = time.monotonic()
    response = _verify(huge_mp4, client)
    elapsed = time.monotonic() - started
    grown = _status_bytes("VmHWM") - rss_before
    assert response.status_code == 413, response.content[:300]
    assert _error(response)["code"] == "media_too_large" and "16000x16000" in _error(response)["message"]
    print(f"16000x16000 verify: {elapsed * 1000:.0f} ms, peak growth {grown / 2**20:.1f} MB")
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    assert grown < 100 * 2**20, f"the process grew by {grown / 2**20:.0f} MB"


def test_a_container_that_understates_its_frame_size_is_refused_by_the_bounded_probe(db, huge_mp4, tmp_path):
    """The headers say 640x480 but the H.264 stream is 16000x16000: the decoder's view (in the bounded
    probe process) is checked too, and this process never holds such a frame."""
    data = bytearray(huge_mp4.read_bytes())
    tkhd = data.index(b"tkhd")  # width and height, 16.16 fixed point, are its last 8 bytes
    size = struct.unpack(">I", data[tkhd - 4:tkhd])[0]
    data[tkhd - 4 + size - 8:tkhd - 4 + size] = struct.pack(">II", 640 << 16, 480 << 16)
    avc1 = data.index(b"avc1", data.index(b"stsd"))  # sample entry: 24 bytes, then width and height
    data[avc1 + 28:avc1 + 32] = struct.pack(">HH", 640, 480)
    lying = tmp_path / "lying.mp4"
    lying.write_bytes(bytes(data))
    assert media_limits.video_header(lying).video[0].width == 640
    response = _verify(lying)
    assert response.status_code == 413 and _error(response)["code"] == "media_too_large", response.content[:300]


# --- refused from the headers, before decoding ----------------------------------------------------

@pytest.fixture(scope="session")
def hostile(media_dir) -> dict[str, Path]:
    still = media_dir / "cover.png"
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:size=64x64", "-frames:v", "1", str(still))
    files = {
        "fast": _small_video(media_dir, "fast.mp4", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=240", "-t", "0.5"),
        # 601 one-second frames: over the default 600 s and nowhere near any other limit.
        "long": _small_video(media_dir, "long.mp4", "-f", "lavfi", "-i", "color=c=blue:size=64x64:rate=1",
                             "-t", "601"),
        "two_videos": _small_video(media_dir, "two.mp4", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10",
                                   "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=10", "-map", "0", "-map", "1",
                                   "-t", "1"),
        "three_audio": _small_video(media_dir, "three_audio.mp4", "-f", "lavfi", "-i",
                                    "testsrc2=size=64x64:rate=10", *[arg for _ in range(3) for arg in (
                                        "-f", "lavfi", "-i", "sine")], "-map", "0", "-map", "1", "-map", "2",
                                    "-map", "3", "-c:a", "aac", "-t", "1"),
    }
    cover = media_dir / "cover.mp4"
    _ffmpeg("-i", str(files["fast"]), "-i", str(still), "-map", "0", "-map", "1", "-c", "copy",
            "-disposition:v:1", "attached_pic", str(cover))
    files["cover_art"] = cover
    audio_only = media_dir / "audio_only.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine", "-t", "1", "-c:a", "aac", "-f", "mp4", str(audio_only))
    files["no_video"] = audio_only
    return files


@pytest.mark.parametrize("name, status, code, words", [
    ("fast", 413, "media_too_large", "240 frames a second"),
    ("long", 413, "media_too_large", "600 s"),
    ("two_videos", 415, "media_unexpected_layout", "2 video streams"),
    ("three_audio", 415, "media_unexpected_layout", "3 audio streams"),
    ("cover_art", 415, "media_unexpected_layout", "attached picture"),
    ("no_video", 415, "media_unexpected_layout", "no video stream"),
])
def test_videos_over_the_limits_or_in_an_odd_layout_are_refused_before_decoding(db, hostile, name, status, code,
                                                                                 words):
    started = time.monotonic()
    response = _verify(hostile[name])
    assert time.monotonic() - started < 2, name
    assert response.status_code == status, (name, response.content[:300])
    error = _error(response)
    assert error["code"] == code and words in error["message"], error
    assert error["fields"]["file"] == [error["message"]]


def test_the_frame_count_limit_counts_the_real_packets(db, normal_mp4, settings):
    settings.MEDIA_MAX_FRAMES = 59  # the clip has 60
    with pytest.raises(media_limits.MediaRefused) as refused:
        check_upload(normal_mp4)
    assert refused.value.code == "media_too_large" and "59 frames" in refused.value.message
    settings.MEDIA_MAX_FRAMES = 60
    assert check_upload(normal_mp4) == "video/mp4"
    assert media_limits.media_check_video(normal_mp4).frames == 60


def test_a_normal_small_mp4_still_verifies(db, normal_mp4):
    response = _verify(normal_mp4)
    assert response.status_code == 200, response.content[:300]
    assert response.json()["verdict"] == "not_found" and response.json()["matches"] == []


# --- memory and time of the processes that do decode ----------------------------------------------

def _slow_decode_args(seconds: int = 60) -> list[str]:
    # A minute of 1080p to decode and scale: far more than the budgets below.
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-f", "lavfi", "-i",
            f"testsrc2=size=1920x1080:rate=30:duration={seconds}", "-vf", "scale=64:64", "-f", "null", "-"]


def test_a_process_past_the_budget_is_killed_and_answers_media_timeout(db):
    started = time.monotonic()
    with pytest.raises(media_limits.MediaRefused) as refused, media_limits.media_budget(0.5):
        media_limits.media_run(_slow_decode_args(), timeout=60)
    assert refused.value.code == "media_timeout" and refused.value.status == 503
    assert time.monotonic() - started < 2
    with media_limits.media_budget(0.5), pytest.raises(subprocess.TimeoutExpired):
        media_limits.media_run(_slow_decode_args(), timeout=0.2)  # the caller's own, shorter timeout


def test_a_streaming_process_past_the_budget_is_killed_too(db):
    started = time.monotonic()
    with pytest.raises(media_limits.MediaRefused) as refused, media_limits.media_budget(0.5):
        args = _slow_decode_args()[:-3] + ["-f", "rawvideo", "-pix_fmt", "gray", "-"]
        with media_limits.media_process(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as process:
            while process.stdout.read(1 << 16):
                pass
            process.wait()
    assert refused.value.code == "media_timeout"
    assert time.monotonic() - started < 2


def test_a_decode_over_the_memory_limit_answers_media_too_large(db, settings):
    settings.MEDIA_DECODE_MAX_MEMORY_MB = 200
    with pytest.raises(media_limits.MediaRefused) as refused:
        media_limits.media_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-f", "lavfi", "-i",
                                "color=size=8000x8000", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb48",
                                "-"], timeout=60)
    assert refused.value.code == "media_too_large" and refused.value.status == 413
    settings.MEDIA_DECODE_MAX_MEMORY_MB = 0  # no limit: the same command runs
    assert media_limits.media_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-f", "lavfi", "-i",
                                   "color=size=8000x8000", "-frames:v", "1", "-f", "null", "-"],
                                  timeout=60).returncode == 0


def test_an_upload_whose_processes_run_out_of_memory_is_a_4xx_not_a_500(tenant_a, normal_mp4, settings):
    settings.MEDIA_DECODE_MAX_MEMORY_MB = 100  # ffmpeg cannot even start in this
    with open(normal_mp4, "rb") as handle:
        response = tenant_a.client("producer").post("/api/v1/assets", {"file": handle}, format="multipart")
    assert response.status_code == 413 and _error(response)["code"] == "media_too_large", response.content[:300]


@pytest.fixture(scope="session")
def slow_mp4(media_dir) -> Path:
    """Eight seconds of 1080p: quick to check, a few seconds to decode in full."""
    return _small_video(media_dir, "slow.mp4", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "8")


def test_a_verification_past_its_time_budget_answers_503_quickly(db, slow_mp4, settings):
    settings.VERIFY_DECODE_TIMEOUT_S = 0.3  # the full decode takes longer on any machine we run on
    started = time.monotonic()
    response = _verify(slow_mp4)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.content[:300]
    assert _error(response)["code"] == "media_timeout"
    assert elapsed < 2.5, f"{elapsed:.2f} s"


# --- the verification slots -----------------------------------------------------------------------

def test_verification_waits_for_a_slot_then_answers_503_with_retry_after(db, normal_mp4, settings):
    settings.VERIFY_CONCURRENCY = 1
    settings.VERIFY_QUEUE_WAIT_S = 0.3
    held, release = threading.Event(), threading.Event()

    def busy():  # another verification in this process, holding the only slot
        with media_limits.verify_slot():
            held.set()
            release.wait(10)

    other = threading.Thread(target=busy)
    other.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        response = _verify(normal_mp4)
        assert time.monotonic() - started < 1.5
        assert response.status_code == 503 and _error(response)["code"] == "verify_busy", response.content[:300]
        assert int(response["Retry-After"]) == settings.VERIFY_RETRY_AFTER_S
        portal = Client().post("/verify/", {"file": io.BytesIO(normal_mp4.read_bytes())})
        assert portal.status_code == 503 and int(portal["Retry-After"]) > 0
    finally:
        release.set()
        other.join()
    assert _verify(normal_mp4).status_code == 200  # the slot is free again


# --- the same limits on the other upload paths ----------------------------------------------------

def test_asset_uploads_are_refused_by_the_same_limits(tenant_a, huge_mp4, hostile):
    producer = tenant_a.client("producer")
    for path, status, code in ((huge_mp4, 413, "media_too_large"), (hostile["two_videos"], 415,
                                                                    "media_unexpected_layout")):
        started = time.monotonic()
        with open(path, "rb") as handle:
            response = producer.post("/api/v1/assets", {"file": handle}, format="multipart")
        assert time.monotonic() - started < 2
        assert response.status_code == status and _error(response)["code"] == code, response.content[:300]
    portal_client = Client()
    portal_client.force_login(producer.user)
    with open(huge_mp4, "rb") as handle:
        portal = portal_client.post("/assets/upload", {"file": handle}, HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert portal.status_code == 413 and _error(portal)["code"] == "media_too_large"


def test_an_asset_upload_past_its_time_budget_answers_503(tenant_a, slow_mp4, settings):
    settings.MEDIA_DECODE_TIMEOUT_S = 1.5
    started = time.monotonic()
    with open(slow_mp4, "rb") as handle:
        response = tenant_a.client("producer").post("/api/v1/assets", {"file": handle}, format="multipart")
    assert response.status_code == 503 and _error(response)["code"] == "media_timeout", response.content[:300]
    assert time.monotonic() - started < 3.5


def test_manage_py_protect_is_refused_by_the_same_limits(tenant_a, huge_mp4, hostile, tmp_path):
    for path, code in ((huge_mp4, "media_too_large"), (hostile["fast"], "media_too_large"),
                       (hostile["cover_art"], "media_unexpected_layout")):
        with pytest.raises(CommandError, match=code):
            call_command("protect", str(path), str(tmp_path / "out.mp4"), org=tenant_a.slug, no_anchor=True)
    assert not (tmp_path / "out.mp4").exists()


def test_images_decode_in_process_so_their_pixels_are_bounded_from_the_header(db, media_dir, settings):
    at_limit, over = media_dir / "at_limit.png", media_dir / "over.png"
    for path, size in ((at_limit, "4096x4096"), (over, "4098x4096")):
        _ffmpeg("-f", "lavfi", "-i", f"color=c=gray:size={size}", "-frames:v", "1", str(path))
    assert settings.MEDIA_MAX_IMAGE_PIXELS == 4096 * 4096
    assert check_upload(at_limit) == "image/png"
    response = _verify(over)
    assert response.status_code == 413 and _error(response)["code"] == "image_too_large", response.content[:300]
