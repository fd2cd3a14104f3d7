"""Media work on finished files with ffmpeg: compose the final video, thumbnail, review checks (finding
ffmpeg, running it under the media limits and probing are the kernel's: config/media.py). Subtitles are drawn with Pillow's
built-in font and overlaid, so composing needs no system font. Every failure raises MediaError carrying
the tail of ffmpeg's stderr.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from config.media import VIDEO_PRESET, MediaError, ffmpeg_exe, output_tail, probe, tool_run

AUDIO_RATE = 48000
VIDEO_CRF = 21
SUBTITLE_FONT_RATIO = 0.05  # font size as a fraction of the frame height (36 px at 720p)
TRANSITION = "fade"


# --- subtitles ----------------------------------------------------------------------------------------

def _font(size: int):
    """Pillow's built-in scalable font (no system font needed); None where Pillow lacks FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError, AttributeError):
        return None


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, max_width: float, max_lines: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if not current or draw.textlength(candidate, font=font) <= max_width:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=font) > max_width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


def subtitle_strip(text: str, width: int, height: int) -> Image.Image:
    """A transparent RGBA strip (width x subtitle_strip_height(height)) with `text` centred near its bottom
    on a translucent box: at most two lines, white with a dark outline."""
    strip_h = subtitle_strip_height(height)
    image = Image.new("RGBA", (width, strip_h), (0, 0, 0, 0))
    text = " ".join((text or "").split())
    if not text:
        return image
    size = max(12, round(height * SUBTITLE_FONT_RATIO))
    font = _font(size)
    if font is None:
        return _subtitle_strip_bitmap(text, width, height, strip_h)
    draw = ImageDraw.Draw(image)
    lines = _wrap(draw, text, font, width * 0.86, 2)
    line_h = round(size * 1.25)
    stroke = max(1, size // 14)
    block_h = line_h * len(lines)
    bottom_margin = round(height * 0.05)
    top = strip_h - bottom_margin - block_h
    widest = max(draw.textlength(line, font=font) for line in lines)
    pad = round(size * 0.4)
    draw.rounded_rectangle([(width - widest) / 2 - pad, top - pad * 0.6, (width + widest) / 2 + pad,
                            top + block_h + pad * 0.4], radius=pad, fill=(0, 0, 0, 140))
    for index, line in enumerate(lines):
        draw.text((width / 2, top + index * line_h), line, font=font, anchor="ma", fill=(255, 255, 255, 255),
                  stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    return image


def _subtitle_strip_bitmap(text: str, width: int, height: int, strip_h: int) -> Image.Image:
    """Fallback without FreeType: Pillow's bitmap font drawn small and scaled up by a whole factor."""
    font = ImageFont.load_default()
    scale = max(1, round(height * SUBTITLE_FONT_RATIO / 11))
    small_w = width // scale
    probe_draw = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    lines = _wrap(probe_draw, text, font, small_w * 0.86, 2)
    small = Image.new("RGBA", (small_w, strip_h // scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(small)
    line_h = 13
    top = small.height - round(height * 0.05 / scale) - line_h * len(lines)
    draw.rectangle([small_w * 0.05, top - 3, small_w * 0.95, top + line_h * len(lines) + 2], fill=(0, 0, 0, 150))
    for index, line in enumerate(lines):
        draw.text((small_w / 2, top + index * line_h), line, font=font, anchor="ma", fill=(255, 255, 255, 255))
    image = Image.new("RGBA", (width, strip_h), (0, 0, 0, 0))
    enlarged = small.resize((small_w * scale, small.height * scale), Image.NEAREST)
    image.paste(enlarged, (0, strip_h - enlarged.height))
    return image


def subtitle_strip_height(height: int) -> int:
    return max(40, round(height * 0.22)) // 2 * 2


# --- compose ------------------------------------------------------------------------------------------

def _fmt(seconds: float) -> str:
    return f"{seconds:.6f}"


def compose(clips: list[Path], shots: list[dict], out: Path, width: int, height: int, fps: int,
            narration: list[Path | None] | None = None, music: Path | None = None, transition_s: float = 0.5,
            subtitles: bool = True) -> Path:
    """The final H.264/AAC MP4 (+faststart) of `width` x `height` at `fps`.

    Each clip is scaled and padded to the frame, set to `fps`, and held to exactly its shot's duration
    (whole frames; a short clip holds its last frame). Neighbouring shots cross-fade over `transition_s`
    centred on their cut (each side holds its edge frame through the other half), so the total is exactly
    the sum of the shot durations and every shot starts on time. Each shot's `dialogue` is burned in as
    a subtitle for that shot. Narration clips start at their shot's start; music loops under everything,
    ducked while narration plays. There is always an AAC track (silence when there is nothing to hear).
    """
    clips = [Path(clip) for clip in clips]
    if not clips:
        raise MediaError("nothing to compose: no clips")
    if len(shots) != len(clips):
        raise MediaError(f"{len(clips)} clips but {len(shots)} shots")
    for clip in clips:
        if not clip.is_file():
            raise MediaError(f"missing clip: {clip}")
    fps = int(fps)
    width, height = int(width), int(height)
    if fps <= 0 or width <= 0 or height <= 0 or width % 2 or height % 2:
        raise MediaError(f"bad output format {width}x{height}@{fps} (sizes must be even)")
    # Whole frames per shot, rounded on the running total so the video lasts round(sum * fps) frames.
    frames, elapsed, placed = [], 0.0, 0
    for shot in shots:
        elapsed += max(0.0, float(shot.get("duration_s") or 0))
        count = max(1, round(elapsed * fps) - placed)
        frames.append(count)
        placed += count
    starts = [sum(frames[:i]) / fps for i in range(len(frames))]
    total_frames = sum(frames)
    total_s = total_frames / fps
    half = 0
    if len(clips) > 1 and transition_s > 0:
        half = min(round(transition_s * fps / 2), min(frames) // 2)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    with tempfile.TemporaryDirectory(prefix="compose-") as scratch:
        scratch = Path(scratch)
        inputs: list[str] = []
        filters: list[str] = []
        for clip in clips:
            inputs += ["-i", str(clip)]

        # Video: normalise every clip, hold it to its shot's frame count, pad its edges for the fades.
        for index, count in enumerate(frames):
            pad_before = half if index > 0 else 0
            pad_after = half if index < len(clips) - 1 else 0
            chain = (f"[{index}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,"
                     f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={fps},format=yuv420p,"
                     f"tpad=stop_mode=clone:stop={count},trim=end_frame={count},setpts=PTS-STARTPTS")
            if pad_before or pad_after:
                chain += f",tpad=start_mode=clone:start={pad_before}:stop_mode=clone:stop={pad_after}"
            filters.append(chain + f"[v{index}]")
        if half:
            accumulated = frames[0] + half
            previous = "v0"
            for index in range(1, len(clips)):
                offset = (accumulated - 2 * half) / fps
                label = f"x{index}"
                filters.append(f"[{previous}][v{index}]xfade=transition={TRANSITION}:duration={_fmt(2 * half / fps)}:"
                               f"offset={_fmt(offset)}[{label}]")
                padded = frames[index] + half + (half if index < len(clips) - 1 else 0)
                accumulated += padded - 2 * half
                previous = label
        else:
            names = "".join(f"[v{index}]" for index in range(len(clips)))
            filters.append(f"{names}concat=n={len(clips)}:v=1:a=0[x0]" if len(clips) > 1 else "[v0]null[x0]")
            previous = "x0"

        # Subtitles: one transparent strip per shot, played as a timed slideshow and overlaid at the bottom.
        video_out = previous
        if subtitles and any((shot.get("dialogue") or "").strip() for shot in shots):
            listing = ["ffconcat version 1.0"]
            for index, (shot, count) in enumerate(zip(shots, frames)):
                strip = scratch / f"subtitle_{index:03d}.png"
                subtitle_strip(shot.get("dialogue") or "", width, height).save(strip)
                listing += [f"file '{strip.name}'", f"duration {_fmt(count / fps)}"]
            listing.append(f"file '{strip.name}'")  # the concat demuxer needs the last file twice
            (scratch / "subtitles.ffconcat").write_text("\n".join(listing) + "\n")
            sub_index = len(clips)
            inputs += ["-f", "concat", "-safe", "0", "-i", str(scratch / "subtitles.ffconcat")]
            filters.append(f"[{sub_index}:v]format=rgba[subs]")
            filters.append(f"[{previous}][subs]overlay=x=0:y={height - subtitle_strip_height(height)}:"
                           f"eof_action=repeat:format=auto,format=yuv420p[vout]")
            video_out = "vout"

        # Audio: narration at each shot's start, music looped and ducked under it, or silence.
        audio_format = (f"aresample={AUDIO_RATE},"
                        f"aformat=sample_fmts=fltp:sample_rates={AUDIO_RATE}:channel_layouts=stereo")
        voices = []
        for index, voice in enumerate(narration or []):
            if voice is None or index >= len(starts):
                continue
            if not Path(voice).is_file():
                raise MediaError(f"missing narration: {voice}")
            input_index = _count_inputs(inputs)
            inputs += ["-i", str(voice)]
            delay = round(starts[index] * 1000)
            filters.append(f"[{input_index}:a]{audio_format},adelay=delays={delay}:all=1[n{index}]")
            voices.append(f"[n{index}]")
        music_label = None
        if music is not None:
            if not Path(music).is_file():
                raise MediaError(f"missing music: {music}")
            music_index = _count_inputs(inputs)
            inputs += ["-stream_loop", "-1", "-i", str(music)]
            filters.append(f"[{music_index}:a]{audio_format},volume=0.35[music]")
            music_label = "music"
        if voices:
            mixed = (f"{''.join(voices)}amix=inputs={len(voices)}:duration=longest:dropout_transition=0:"
                     f"normalize=0,apad[narr]" if len(voices) > 1 else f"{voices[0]}apad[narr]")
            filters.append(mixed)
        if voices and music_label:
            filters.append("[narr]asplit=2[narr_a][narr_key]")
            filters.append("[music][narr_key]sidechaincompress=threshold=0.02:ratio=8:attack=20:release=400[ducked]")
            filters.append("[ducked][narr_a]amix=inputs=2:duration=first:dropout_transition=0:normalize=0[amixed]")
            audio_in = "amixed"
        elif voices:
            audio_in = "narr"
        elif music_label:
            audio_in = music_label
        else:
            filters.append(f"anullsrc=channel_layout=stereo:sample_rate={AUDIO_RATE}[silence]")
            audio_in = "silence"
        filters.append(f"[{audio_in}]atrim=end={_fmt(total_s)},asetpts=PTS-STARTPTS[aout]")

        command = [
            ffmpeg_exe(), "-y", "-hide_banner", "-nostdin", "-loglevel", "error", *inputs,
            "-filter_complex", ";".join(filters), "-map", f"[{video_out}]", "-map", "[aout]",
            "-c:v", "libx264", "-preset", VIDEO_PRESET, "-crf", str(VIDEO_CRF), "-pix_fmt", "yuv420p",
            "-r", str(fps), "-frames:v", str(total_frames),
            "-c:a", "aac", "-b:a", "128k", "-ar", str(AUDIO_RATE), "-ac", "2", "-t", _fmt(total_s),
            "-movflags", "+faststart", "-f", "mp4", str(partial),
        ]
        try:
            tool_run(command, timeout=120 + 15 * total_s)
        except MediaError:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(out)
    return out


def _count_inputs(inputs: list[str]) -> int:
    return sum(1 for item in inputs if item == "-i")


# --- thumbnail ----------------------------------------------------------------------------------------

def thumbnail(video: Path, out: Path, at_s: float | None = None) -> Path:
    """A JPEG of the frame at `at_s` (default: a third of the way in, past the opening fade)."""
    video, out = Path(video), Path(out)
    duration = probe(video).get("duration_s") or 0.0
    if at_s is None:
        at_s = duration / 3
    at_s = max(0.0, min(float(at_s), max(0.0, duration - 0.1)))
    out.parent.mkdir(parents=True, exist_ok=True)
    for seek in (at_s, 0.0):
        tool_run([ffmpeg_exe(), "-y", "-hide_banner", "-nostdin", "-loglevel", "error", "-ss", _fmt(seek), "-i",
              str(video), "-frames:v", "1", "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", str(out)], timeout=60)
        if out.is_file() and out.stat().st_size:
            return out
    raise MediaError(f"no frame could be read from {video.name}")


# --- review -------------------------------------------------------------------------------------------

_BLACK = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)\s+black_duration:\s*([\d.]+)")
_FREEZE_START = re.compile(r"freeze_start:\s*([\d.]+)")
_FREEZE_END = re.compile(r"freeze_end:\s*([\d.]+)")
_MAX_VOLUME = re.compile(r"max_volume:\s*(-?[\d.]+|-inf) dB")


def review_checks(path: Path, *, duration_s: float, width: int, height: int, audio_required: bool,
                  max_black_s: float = 1.0, max_frozen_s: float = 2.0, silence_db: float = -60.0) -> list[dict]:
    """Automatic review of a finished video: one {"check", "ok", "detail"} per check, in this order:
    duration (within 10%), resolution (exact), black (no black run of max_black_s or more), frozen (no
    still run of max_frozen_s or more), audio (a stream present; and louder than silence_db when
    audio_required)."""
    path = Path(path)
    info = probe(path)
    checks = []
    actual = info.get("duration_s") or 0.0
    checks.append({"check": "duration", "ok": abs(actual - duration_s) <= 0.1 * duration_s,
                   "detail": f"{actual:.2f} s for {duration_s:.2f} s requested"})
    checks.append({"check": "resolution", "ok": (info["width"], info["height"]) == (width, height),
                   "detail": f"{info['width']}x{info['height']} for {width}x{height} requested"})

    has_audio = info.get("audio_codec") is not None
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map", "0:v:0",
               "-vf", f"blackdetect=d={max_black_s}:pic_th=0.98:pix_th=0.10,freezedetect=n=-60dB:d={max_frozen_s}"]
    if has_audio:
        command += ["-map", "0:a:0", "-af", "volumedetect"]
    command += ["-f", "null", "-"]
    stderr = output_tail(tool_run(command, timeout=60 + 4 * max(actual, duration_s)).stderr, 200000)

    blacks = [(float(start), float(length)) for start, _end, length in _BLACK.findall(stderr)]
    checks.append({"check": "black", "ok": not blacks,
                   "detail": ("black from " + ", ".join(f"{s:.2f} s for {d:.2f} s" for s, d in blacks)) if blacks
                   else f"no black segment of {max_black_s:g} s or more"})

    # A freeze lasting to the end of the file may come without its end line: it then runs to the end.
    freeze_starts = [float(value) for value in _FREEZE_START.findall(stderr)]
    freeze_ends = [float(value) for value in _FREEZE_END.findall(stderr)]
    freezes = []
    for index, start in enumerate(freeze_starts):
        end = freeze_ends[index] if index < len(freeze_ends) else actual
        freezes.append((start, max(0.0, end - start)))
    checks.append({"check": "frozen", "ok": not freezes,
                   "detail": ("frozen from " + ", ".join(f"{s:.2f} s for {d:.2f} s" for s, d in freezes)) if freezes
                   else f"no frozen segment of {max_frozen_s:g} s or more"})

    if not has_audio:
        checks.append({"check": "audio", "ok": False, "detail": "no audio stream"})
    else:
        match = _MAX_VOLUME.search(stderr)
        loudest = float("-inf") if not match or match.group(1) == "-inf" else float(match.group(1))
        audible = loudest > silence_db
        checks.append({"check": "audio", "ok": audible or not audio_required,
                       "detail": f"{info['audio_codec']} stream, peak {loudest:.1f} dB"
                                 + ("" if audible else " (silent)")})
    return checks
