"""Bounds on the media work an upload can cause: what a video may declare, read from its container
headers before anything is decoded, and the memory and time every ffmpeg process on it may take.

A small file can declare a 16000x16000 frame or a million frames, and decoding it then costs gigabytes
and minutes. So every upload path (POST /api/v1/verify, POST /api/v1/assets, the portal's upload and
verify pages, `manage.py protect`) calls rights.verification.check_upload, which refuses such a video here
from its headers alone; and every ffmpeg process that reads media (config.media, generation.media,
rights.fingerprints, rights.watermark) starts through media_run or media_process, under an address-space limit and the deadline
of the current media_budget, so a file that passes the checks and still costs too much is stopped too.
"""
from __future__ import annotations

import functools
import logging
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from config.error_codes import KernelErrors
from config.errors import DomainError

logger = logging.getLogger(__name__)


class MediaRefused(DomainError):
    """An upload over the media limits. Codes: `media_too_large` (413: frame size, rate, frame count,
    duration, or the memory a decode needs), `media_unexpected_layout` (415: not one video stream with
    at most a few audio ones, in the codecs we read), `media_timeout` (503: the work ran past its time
    budget), `media_unprocessable` (422: ffmpeg failed on a file that passed the checks), `verify_busy`
    (503, with Retry-After: every verification slot of the process was taken)."""

    status = 400
    retry_after: int | None = None

    def __init__(self, message: str, *, retry_after: int | None = None, **kwargs):
        kwargs.setdefault("fields", {"file": [message]})
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class MediaFailure(Exception):
    """A media tool failed on a file (config.media.MediaError and rights.watermark.WatermarkError are
    kinds of it), so an upload path can answer it as the file's fault without knowing the tools."""


def ffmpeg_exe() -> str:
    """The ffmpeg binary: the system one when on PATH, else the static build shipped with imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a base requirement
        raise MediaFailure("no ffmpeg: install it or the imageio-ffmpeg package") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _too_large(message: str) -> MediaRefused:
    return MediaRefused(message, code=KernelErrors.MEDIA_TOO_LARGE)


def _layout(message: str) -> MediaRefused:
    return MediaRefused(message, code=KernelErrors.MEDIA_UNEXPECTED_LAYOUT)


# --- time budget and memory bound of ffmpeg processes ---------------------------------------------

# The monotonic time by which the current upload's media work must be done; None outside any budget.
_deadline: ContextVar[float | None] = ContextVar("media_deadline", default=None)


@contextmanager
def media_budget(seconds: float):
    """Every media process started inside runs until `seconds` from now at the latest (or an enclosing
    budget's end, if sooner); one still running then is killed and the work answers `media_timeout`."""
    deadline = time.monotonic() + float(seconds)
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(deadline, outer))
    try:
        yield
    finally:
        _deadline.reset(token)


def upload_budget(function):
    """Runs `function` (an upload's whole protection) under a MEDIA_DECODE_TIMEOUT_S budget, read at each
    call so the setting can change without a restart. A media tool failing on the accepted file (under
    the memory limit ffmpeg often fails with a plain EINVAL) answers `media_unprocessable` (422), not 500."""

    @functools.wraps(function)
    def bounded(*args, **kwargs):
        try:
            with media_budget(settings.MEDIA_DECODE_TIMEOUT_S):
                return function(*args, **kwargs)
        except MediaFailure:
            logger.warning("media work on an upload failed", exc_info=True)
            raise MediaRefused("The file could not be processed within this server's limits.",
                               code=KernelErrors.MEDIA_UNPROCESSABLE) from None

    return bounded


def _timeout_error() -> MediaRefused:
    return MediaRefused("Processing this file took longer than this server allows.", code=KernelErrors.MEDIA_TIMEOUT)


def _time_left(timeout: float | None) -> tuple[float | None, bool]:
    """(seconds the next process may run, whether the budget rather than the caller's timeout sets it)."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout, False
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout_error()
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


@lru_cache(maxsize=1)
def _prlimit() -> str | None:
    return shutil.which("prlimit")


def _limited(args: list[str]) -> tuple[list[str], dict]:
    """`args` under the address-space limit. Through util-linux `prlimit`, which sets the limit and
    execs the program, rather than a preexec_fn: Python runs that in the forked child of a threaded web
    process, where it can deadlock. The preexec_fn is the fallback where prlimit is missing."""
    megabytes = settings.MEDIA_DECODE_MAX_MEMORY_MB
    if not megabytes:
        return list(args), {}
    limit = int(megabytes) * 1024 * 1024
    prlimit = _prlimit()
    if prlimit:
        return [prlimit, f"--as={limit}", "--", *args], {}

    def bound():  # pragma: no cover - only where util-linux is missing
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return list(args), {"preexec_fn": bound}


# A process that ran out of its address space: ffmpeg reports ENOMEM, or a library aborts or crashes.
_OUT_OF_MEMORY = (b"Cannot allocate memory", b"Failed to allocate", b"pthread_create() failed", b"std::bad_alloc",
                  b"out of memory")
_FATAL_SIGNALS = {-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS, -signal.SIGKILL}


def _check_memory(returncode: int | None, stderr: bytes | None) -> None:
    if not returncode or not settings.MEDIA_DECODE_MAX_MEMORY_MB:
        return
    if returncode in _FATAL_SIGNALS or any(marker in (stderr or b"") for marker in _OUT_OF_MEMORY):
        raise _too_large(f"Decoding this file needs more than {settings.MEDIA_DECODE_MAX_MEMORY_MB} MB.")


def media_run(args: list[str], *, timeout: float | None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run of a media tool, output captured, under the memory limit and the budget. Past the
    caller's own `timeout` it raises subprocess.TimeoutExpired as before; past the budget, media_timeout."""
    seconds, by_budget = _time_left(timeout)
    command, extra = _limited(args)
    try:
        completed = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, timeout=seconds,
                                   **extra, **kwargs)
    except subprocess.TimeoutExpired as exc:
        if by_budget:
            raise _timeout_error() from None
        exc.cmd = list(args)
        raise
    _check_memory(completed.returncode, completed.stderr)
    return completed


@contextmanager
def media_process(args: list[str], *, stderr_file=None, **popen_kwargs):
    """A streaming media process (subprocess.Popen) under the memory limit, killed at the budget's end;
    the block then raises media_timeout, whatever the dead pipe made it raise. `stderr_file`, a seekable
    file the process writes its errors to, is checked for out-of-memory reports once the block is done."""
    seconds, _by_budget = _time_left(None)
    command, extra = _limited(args)
    process = subprocess.Popen(command, stderr=stderr_file, **extra, **popen_kwargs)
    expired = threading.Event()

    def kill():
        expired.set()
        process.kill()

    timer = None
    if seconds is not None:
        timer = threading.Timer(seconds, kill)
        timer.daemon = True
        timer.start()
    try:
        yield process
    except Exception:
        if expired.is_set():
            raise _timeout_error() from None
        _check_process_memory(process, stderr_file)
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if expired.is_set():
        raise _timeout_error()
    _check_process_memory(process, stderr_file)


def _check_process_memory(process: subprocess.Popen, stderr_file) -> None:
    code = process.poll()
    if code is None or code == 0:
        return
    tail = b""
    if stderr_file is not None:
        stderr_file.seek(0)
        tail = stderr_file.read()[-4000:]
    _check_memory(code, tail)


# --- what a video declares ------------------------------------------------------------------------

@dataclass
class Stream:
    kind: str  # video, audio, subtitle, data, attachment
    codec: str
    width: int = 0
    height: int = 0
    fps: float | None = None
    attached_picture: bool = False


@dataclass
class VideoHeader:
    streams: list[Stream] = field(default_factory=list)
    frames: int = 0
    duration_s: float = 0.0

    @property
    def video(self) -> list[Stream]:
        return [s for s in self.streams if s.kind == "video" and not s.attached_picture]


_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (\w+)(.*)$", re.M)
_PARENS = re.compile(r"\([^()]*\)")
_SIZE = re.compile(r"\b(\d{1,6})x(\d{1,6})\b")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)\b")


def header_streams(stderr: str) -> list[Stream]:
    """Every stream of the header `ffmpeg -i FILE` prints."""
    streams = []
    for kind, codec, details in _STREAM.findall(stderr):
        attached = "(attached pic)" in details
        # Without the parentheses: "(avc1 / 0x31637661)" would read as a frame size.
        plain = _PARENS.sub("", details)
        size = _SIZE.search(plain)
        rate = _FPS.search(plain)
        streams.append(Stream(
            kind=kind.lower(), codec=codec, attached_picture=attached,
            width=int(size.group(1)) if size else 0, height=int(size.group(2)) if size else 0,
            fps=float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else None))
    return streams


def video_header(path: Path, what: str = "video") -> VideoHeader:
    """The streams the container declares, without decoding a frame (`-nofind_stream_info`: ffmpeg
    otherwise decodes the first frames to fill in details, and that decode is what a hostile frame size
    makes expensive)."""
    completed = media_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-nofind_stream_info", "-i", str(path)],
                          timeout=settings.MEDIA_PROBE_TIMEOUT_S)
    text = completed.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise MediaRefused(f"The {what} cannot be read.", code=KernelErrors.UNREADABLE_FILE)
    return VideoHeader(streams=header_streams(text))


_PROGRESS = re.compile(rb"^(frame|out_time_us)=(\d+)\s*$", re.M)


def _count_frames(path: Path, header: VideoHeader) -> None:
    """The video stream's packets and last timestamp, by copying them (no decode) to nowhere; stops
    one past the limits, so a file with millions of frames costs no more than one at the limit."""
    completed = media_run([
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-nofind_stream_info", "-i", str(path),
        "-map", "0:v:0", "-c", "copy", "-frames:v", str(settings.MEDIA_MAX_FRAMES + 1),
        "-t", f"{settings.MEDIA_MAX_DURATION_S + 1:.3f}", "-f", "null", "-progress", "pipe:1", "-nostats", "-",
    ], timeout=settings.MEDIA_PROBE_TIMEOUT_S)
    values = {}
    for key, value in _PROGRESS.findall(completed.stdout):
        values[key] = int(value)  # the last report holds the totals
    header.frames = values.get(b"frame", 0)
    fps = header.video[0].fps if header.video else None
    out_time = values.get(b"out_time_us", 0) / 1e6
    header.duration_s = max(out_time, header.frames / fps if fps else 0.0)


def _codecs(name: str) -> set[str]:
    return {codec.strip().lower() for codec in getattr(settings, name) if codec.strip()}


def media_check_video(path: Path) -> VideoHeader:
    """Refuse, before anything is decoded, a video whose headers declare more than the limits or a stream
    layout we do not expect: exactly one video stream in MEDIA_VIDEO_CODECS; at most
    MEDIA_MAX_AUDIO_STREAMS audio streams in MEDIA_AUDIO_CODECS; no attached picture (cover art is a
    second image to decode); at most MEDIA_MAX_STREAMS streams in all (subtitle and data tracks such as
    timecodes are allowed within it); a frame of at most MEDIA_MAX_PIXELS pixels, at most MEDIA_MAX_FPS
    frames a second, MEDIA_MAX_FRAMES frames and MEDIA_MAX_DURATION_S seconds."""
    header = video_header(path)
    streams, video = header.streams, header.video
    if not streams:
        raise MediaRefused("The video cannot be read.", code=KernelErrors.UNREADABLE_FILE)
    if any(s.attached_picture for s in streams):
        raise _layout("Videos with an attached picture (cover art) are not accepted.")
    if len(video) != 1:
        raise _layout("The file has no video stream." if not video
                      else f"The file has {len(video)} video streams; one is expected.")
    audio = [s for s in streams if s.kind == "audio"]
    if len(audio) > settings.MEDIA_MAX_AUDIO_STREAMS:
        raise _layout(f"The file has {len(audio)} audio streams; at most {settings.MEDIA_MAX_AUDIO_STREAMS} "
                      "are accepted.")
    if len(streams) > settings.MEDIA_MAX_STREAMS or any(s.kind == "attachment" for s in streams):
        raise _layout(f"The file has {len(streams)} streams; at most {settings.MEDIA_MAX_STREAMS} are accepted.")
    stream = video[0]
    if stream.codec.lower() not in _codecs("MEDIA_VIDEO_CODECS"):
        raise _layout(f"Video in {stream.codec} is not accepted.")
    for track in audio:
        if track.codec.lower() not in _codecs("MEDIA_AUDIO_CODECS"):
            raise _layout(f"Audio in {track.codec} is not accepted.")
    media_check_frame(stream.width, stream.height, limit=settings.MEDIA_MAX_PIXELS)
    if stream.fps and stream.fps > settings.MEDIA_MAX_FPS:
        raise _too_large(f"The video runs at {stream.fps:g} frames a second; at most "
                         f"{settings.MEDIA_MAX_FPS:g} are accepted.")
    _count_frames(path, header)
    if header.frames == 0:
        raise MediaRefused("The video is truncated or has no picture.", code=KernelErrors.UNREADABLE_FILE)
    if header.frames > settings.MEDIA_MAX_FRAMES:
        raise _too_large(f"The video has over {settings.MEDIA_MAX_FRAMES} frames.")
    if header.duration_s > settings.MEDIA_MAX_DURATION_S:
        raise _too_large(f"The video lasts over {settings.MEDIA_MAX_DURATION_S:g} s.")
    return header


def media_check_audio(path: Path) -> float:
    """Refuse, before anything is decoded, an audio file (an uploaded music track) that is not exactly one
    audio stream in MEDIA_AUDIO_CODECS (no cover art, no video), or that lasts over MEDIA_MAX_AUDIO_S
    seconds (counted by copying its packets, stopping one second past the limit). Returns its duration."""
    header = video_header(path, "audio")
    streams = header.streams
    audio = [s for s in streams if s.kind == "audio"]
    if any(s.attached_picture for s in streams):
        raise _layout("Audio with an attached picture (cover art) is not accepted.")
    if len(audio) != 1 or len(streams) != 1:
        raise _layout("The file has no audio stream." if not audio
                      else f"The file has {len(streams)} streams; one audio stream is expected.")
    if audio[0].codec.lower() not in _codecs("MEDIA_AUDIO_CODECS"):
        raise _layout(f"Audio in {audio[0].codec} is not accepted.")
    limit = settings.MEDIA_MAX_AUDIO_S
    # With the stream info read this time: an MP3 copy needs its sample rate, and audio frames are small.
    completed = media_run([
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
        "-map", "0:a:0", "-c", "copy", "-t", f"{limit + 1:.3f}", "-f", "null", "-progress", "pipe:1", "-nostats", "-",
    ], timeout=settings.MEDIA_PROBE_TIMEOUT_S)
    times = [int(value) for key, value in _PROGRESS.findall(completed.stdout) if key == b"out_time_us"]
    duration = (times[-1] if times else 0) / 1e6
    if duration <= 0:
        raise MediaRefused("The audio is truncated or silent of packets.", code=KernelErrors.UNREADABLE_FILE)
    if duration > limit:
        raise _too_large(f"The audio lasts over {limit:g} s.")
    return duration


def media_check_frame(width: int, height: int, *, limit: int) -> None:
    """A frame of `width` x `height` is refused over `limit` pixels, or when a side is missing."""
    if width <= 0 or height <= 0:
        raise MediaRefused("The file declares no frame size.", code=KernelErrors.UNREADABLE_FILE)
    if width * height > limit:
        raise _too_large(f"The frame is {width}x{height} pixels; at most {limit:,} pixels are accepted.")


# --- verification slots ---------------------------------------------------------------------------

_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def _verify_semaphore(size: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _slots.setdefault(size, threading.BoundedSemaphore(size))


@contextmanager
def verify_slot():
    """One of VERIFY_CONCURRENCY decode slots of this process for a public verification, waited for at
    most VERIFY_QUEUE_WAIT_S; then `verify_busy` (503, Retry-After). Verification is anonymous, so a
    flood of small files must queue here rather than start a decode each; the per-address rate limit
    alone does not bound what many addresses start at once."""
    semaphore = _verify_semaphore(max(1, settings.VERIFY_CONCURRENCY))
    if not semaphore.acquire(timeout=max(0.0, settings.VERIFY_QUEUE_WAIT_S)):
        raise MediaRefused("The verification service is busy. Try again shortly.",
                           code=KernelErrors.VERIFY_BUSY,
                           retry_after=max(1, round(settings.VERIFY_RETRY_AFTER_S)), fields={})
    try:
        yield
    finally:
        semaphore.release()
