"""The media kernel: ffmpeg (found and run under the media limits of config/media_limits.py), probing a
file's streams, and a file's digest; used by the pipeline (generation.media composes) and by rights
(watermark, fingerprints, verification).

ffmpeg is the system one when on PATH, else the static build shipped with imageio-ffmpeg (which brings no
ffprobe: `probe` then reads the stream headers that `ffmpeg -i` prints). Every failure raises MediaError
carrying the tail of ffmpeg's stderr.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from config.media_limits import MediaFailure, ffmpeg_exe, media_run

VIDEO_PRESET = "veryfast"  # x264 preset of the delivered encode (the watermarked video)

__all__ = ["VIDEO_PRESET", "MediaError", "ffmpeg_exe", "output_tail", "parse_ffmpeg_info", "probe", "sha256_file",
           "tool_run"]


class MediaError(MediaFailure):
    """ffmpeg failed or a file is not the media we expected; the message ends with ffmpeg's stderr tail."""


def sha256_file(path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def output_tail(data: bytes | str | None, limit: int = 1500) -> str:
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return (data or "").strip()[-limit:]


def tool_run(args: list[str], *, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    # Under the media memory limit, and the time budget of an upload when one is running (its end
    # answers media_timeout, a domain error, rather than this MediaError).
    try:
        completed = media_run(args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{Path(args[0]).name} took over {timeout:g} s: {output_tail(exc.stderr)}") from None
    except OSError as exc:
        raise MediaError(f"cannot run {args[0]}: {exc}") from None
    if check and completed.returncode != 0:
        raise MediaError(f"{Path(args[0]).name} failed ({completed.returncode}): {output_tail(completed.stderr)}")
    return completed


# --- probe --------------------------------------------------------------------------------------------

def probe(path: Path | str) -> dict:
    """What the file says about itself: duration_s, width, height, fps, video_codec, audio_codec (None when
    there is no audio stream), bitrate (bits/s), size_bytes."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    ffprobe = shutil.which("ffprobe")
    info = _probe_ffprobe(ffprobe, path) if ffprobe else _probe_ffmpeg(path)
    info["size_bytes"] = path.stat().st_size
    return info


def _rate(value: str | None) -> float | None:
    if not value or value in ("0/0", "N/A"):
        return None
    num, _, den = value.partition("/")
    try:
        return round(float(num) / float(den or 1), 3)
    except (ValueError, ZeroDivisionError):
        return None


def _probe_ffprobe(ffprobe: str, path: Path) -> dict:
    completed = tool_run([ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)], timeout=60)
    data = json.loads(completed.stdout or b"{}")
    video = next((s for s in data.get("streams", []) if s.get("codec_type") == "video"), None)
    audio = next((s for s in data.get("streams", []) if s.get("codec_type") == "audio"), None)
    if video is None:
        raise MediaError(f"{path.name} has no video stream")
    fmt = data.get("format", {})
    duration = fmt.get("duration") or video.get("duration")
    return {
        "duration_s": round(float(duration), 3) if duration not in (None, "N/A") else None,
        "width": int(video["width"]),
        "height": int(video["height"]),
        "fps": _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        "video_codec": video.get("codec_name"),
        "audio_codec": audio.get("codec_name") if audio else None,
        "bitrate": int(fmt["bit_rate"]) if str(fmt.get("bit_rate", "")).isdigit() else None,
    }


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_BITRATE = re.compile(r"bitrate: (\d+) kb/s")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)(.*)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_TBR = re.compile(r"([\d.]+)(k?) tbr")


def parse_ffmpeg_info(stderr: str) -> dict:
    """The probe fields from the header `ffmpeg -i FILE` prints (used when there is no ffprobe)."""
    video = _VIDEO.search(stderr)
    if not video:
        raise MediaError(f"no video stream found: {output_tail(stderr, 600)}")
    details = video.group(2)
    size = _SIZE.search(details)
    if not size:
        raise MediaError(f"no frame size in: {video.group(0)[:300]}")
    rate = _FPS.search(details) or _TBR.search(details)
    fps = None
    if rate:
        fps = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    duration = _DURATION.search(stderr)
    bitrate = _BITRATE.search(stderr)
    audio = _AUDIO.search(stderr)
    return {
        "duration_s": (round(int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3)), 3)
                       if duration else None),
        "width": int(size.group(1)),
        "height": int(size.group(2)),
        "fps": fps,
        "video_codec": video.group(1),
        "audio_codec": audio.group(1) if audio else None,
        "bitrate": int(bitrate.group(1)) * 1000 if bitrate else None,
    }


def _probe_ffmpeg(path: Path) -> dict:
    # `ffmpeg -i FILE` with no output exits 1 after printing the header; that is expected.
    completed = tool_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], timeout=60, check=False)
    return parse_ffmpeg_info(output_tail(completed.stderr, 20000))
