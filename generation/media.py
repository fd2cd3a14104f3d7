"""Media work on finished files with ffmpeg: compose the final video (narration fitted to its shot, a music
bed ducked under it, the mix at -16 LUFS, subtitles burned in and as a soft track plus .srt/.vtt),
thumbnail, review checks (finding ffmpeg, running it under the media limits and probing are the kernel's:
config/media.py). Subtitles are drawn with Pillow and Noto Sans SC from the pylopdf-fonts-zh-cn wheel (Latin
and Chinese), else Pillow's built-in font, so composing needs no system font. Every failure raises
MediaError carrying the tail of ffmpeg's stderr.
"""
from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from config.media import MediaError, ffmpeg_exe, output_tail, probe, tool_run
from generation import subtitles as subs

AUDIO_RATE = 48000
# The composed video is the rights stages' input: protect marks every frame and encodes it again (config.media's
# VIDEO_PRESET, crf 18), and that file is the one delivered. So compose encodes for speed (about 20% less
# time than veryfast) at a quality above the delivered file's; only the kept original is larger.
COMPOSE_PRESET = "superfast"
VIDEO_CRF = 19
# How burned-in subtitles look (a template's `subtitle_style`, projects.templates.SubtitleStyle), by name:
# the font size as a fraction of the frame's short side (medium: 36 px at 720p, in 9:16 as in 16:9),
# where the text sits (5% of the frame height from that edge), the outline's width as a divisor of the
# font size (0: none), and the alpha of the dark box behind the text (0: none).
SUBTITLE_SIZES = {"small": 0.04, "medium": 0.05, "large": 0.065}
SUBTITLE_POSITIONS = ("bottom", "top")
SUBTITLE_OUTLINES = {"none": 0, "thin": 14, "thick": 7}
SUBTITLE_BACKGROUNDS = {"box": 140, "solid": 255, "none": 0}
SUBTITLE_STYLE = {"size": "medium", "position": "bottom", "outline": "thin", "background": "box"}
SUBTITLE_MARGIN_RATIO = 0.05
TRANSITION = "fade"
MUSIC_FADE_OUT_S = 1.5  # the bed fades out over the video's last seconds
END_CARD_S = 2.0  # an end card's seconds, fading in over the first half second
LOGO_CORNER_BOX = 0.12  # a corner logo fits a box of this fraction of the frame's width and height
LOGO_CORNER_OPACITY = 0.9


# --- subtitles ----------------------------------------------------------------------------------------

def font_path() -> Path | None:
    """Noto Sans SC (Latin and CJK glyphs) from the pylopdf-fonts-zh-cn wheel; None where it is missing."""
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    return path if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _font(size: int):
    """The CJK-capable font at `size`, else Pillow's built-in scalable font (no system font needed); None
    where Pillow lacks FreeType."""
    path = font_path()
    try:
        if path is not None:
            return ImageFont.truetype(str(path), size)
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


_SUBTITLE_CHOICES = {"size": SUBTITLE_SIZES, "position": SUBTITLE_POSITIONS, "outline": SUBTITLE_OUTLINES,
                     "background": SUBTITLE_BACKGROUNDS}


def subtitle_style_of(style: Mapping | None) -> dict:
    """`style` (a template's `subtitle_style`; older ones lack it, or some keys) completed with the
    defaults. A key or value it does not know is a MediaError, never a silently different look."""
    full = {**SUBTITLE_STYLE, **(style or {})}
    for key, value in full.items():
        if key not in _SUBTITLE_CHOICES or value not in _SUBTITLE_CHOICES[key]:
            raise MediaError(f"unknown subtitle style {key}={value!r}")
    return full


def _subtitle_font_size(width: int, height: int, style: dict) -> int:
    return max(12, round(min(width, height) * SUBTITLE_SIZES[style["size"]]))


def subtitle_strip(text: str, width: int, height: int, lines: list[str] | None = None,
                   style: Mapping | None = None) -> Image.Image:
    """A transparent RGBA strip (width x subtitle_strip_height) with `text` centred near its bottom (near
    its top for `style` position top; the strip is then laid at the frame's top): at most two lines
    (`lines` as broken by generation.subtitles, else wrapped to the width), white, with the style's
    outline and box; the font shrinks where a line would not fit the width."""
    style = subtitle_style_of(style)
    strip_h = subtitle_strip_height(height, width=width, style=style)
    image = Image.new("RGBA", (width, strip_h), (0, 0, 0, 0))
    text = " ".join((text or "").split())
    if not text and not lines:
        return image
    size = _subtitle_font_size(width, height, style)
    font = _font(size)
    if font is None:
        return _subtitle_strip_bitmap(" ".join(lines) if lines else text, width, height, strip_h, style)
    draw = ImageDraw.Draw(image)
    if lines:
        lines = lines[:2]
        widest = max(draw.textlength(line, font=font) for line in lines)
        if widest > width * 0.9:
            size = max(10, int(size * width * 0.9 / widest))
            font = _font(size) or font
    else:
        lines = _wrap(draw, text, font, width * 0.86, 2)
    line_h = round(size * 1.25)
    divisor = SUBTITLE_OUTLINES[style["outline"]]
    stroke = max(1, size // divisor) if divisor else 0
    block_h = line_h * len(lines)
    margin = round(height * SUBTITLE_MARGIN_RATIO)
    widest = max(draw.textlength(line, font=font) for line in lines)
    pad = round(size * 0.4)
    top = margin if style["position"] == "top" else strip_h - margin - block_h  # the block, margin from its edge
    alpha = SUBTITLE_BACKGROUNDS[style["background"]]
    if alpha:
        draw.rounded_rectangle([(width - widest) / 2 - pad, top - pad * 0.6, (width + widest) / 2 + pad,
                                top + block_h + pad * 0.4], radius=pad, fill=(0, 0, 0, alpha))
    for index, line in enumerate(lines):
        draw.text((width / 2, top + index * line_h), line, font=font, anchor="ma", fill=(255, 255, 255, 255),
                  stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    return image


def _subtitle_strip_bitmap(text: str, width: int, height: int, strip_h: int, style: dict) -> Image.Image:
    """Fallback without FreeType: Pillow's bitmap font drawn small and scaled up by a whole factor (no
    outline: the bitmap font has none)."""
    font = ImageFont.load_default()
    scale = max(1, round(_subtitle_font_size(width, height, style) / 11))
    small_w = width // scale
    probe_draw = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    lines = _wrap(probe_draw, text, font, small_w * 0.86, 2)
    small = Image.new("RGBA", (small_w, strip_h // scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(small)
    line_h = 13
    margin = round(height * SUBTITLE_MARGIN_RATIO / scale)
    top = margin + 3 if style["position"] == "top" else small.height - margin - line_h * len(lines)
    alpha = SUBTITLE_BACKGROUNDS[style["background"]]
    if alpha:
        draw.rectangle([small_w * 0.05, top - 3, small_w * 0.95, top + line_h * len(lines) + 2],
                       fill=(0, 0, 0, min(alpha + 10, 255)))
    for index, line in enumerate(lines):
        draw.text((small_w / 2, top + index * line_h), line, font=font, anchor="ma", fill=(255, 255, 255, 255))
    image = Image.new("RGBA", (width, strip_h), (0, 0, 0, 0))
    enlarged = small.resize((small_w * scale, small.height * scale), Image.NEAREST)
    image.paste(enlarged, (0, 0 if style["position"] == "top" else strip_h - enlarged.height))
    return image


def subtitle_strip_height(height: int, *, width: int | None = None, style: Mapping | None = None) -> int:
    """The strip's height: 22% of the frame, or what two lines of the style's size need with the margin."""
    style = subtitle_style_of(style)
    size = _subtitle_font_size(width or height, height, style)
    needed = round(height * SUBTITLE_MARGIN_RATIO) + round(size * 1.25) * 2 + round(size * 0.4) * 2
    return min(height, max(40, round(height * 0.22), needed)) // 2 * 2


def subtitle_strip_y(height: int, *, width: int, style: Mapping | None = None) -> int:
    """Where the strip lies in the frame: at its top for position top, else at its bottom."""
    style = subtitle_style_of(style)
    return 0 if style["position"] == "top" else height - subtitle_strip_height(height, width=width, style=style)


# --- compose ------------------------------------------------------------------------------------------

def _fmt(seconds: float) -> str:
    return f"{seconds:.6f}"


LOUDNESS_TARGET_LUFS = -16.0
LIMIT_DBFS = -3.0  # the limiter's ceiling: room for the AAC encoder's overshoot (measured up to 1.2 dB) under -1 dBTP
MAX_TRUE_PEAK_DBTP = -1.0  # EBU R128's ceiling for the encoded file
# Where the encoded file's true peak still lands above the ceiling (an inter-sample peak the limiter missed,
# plus the encoder's overshoot: seen at -0.6 dBTP), its audio is encoded again this far under it.
TRUE_PEAK_MARGIN_DB = 0.5
LINE_LEAD_S = 0.15  # a line starts this long after its shot starts
LINE_PAUSE_S = 0.15  # and ends at least this long before its shot ends, so lines are apart
MAX_TEMPO = 1.3  # the most a line is sped up to fit its shot
CUT_FADE_S = 0.12  # the fade of a line cut at its shot's end
OVERRUN_S = 0.2  # how late after its shot a line may end (review)
MUSIC_DUCK = 0.3  # the bed's gain under the voice (about -10 dB)
MUSIC_LEVEL = 0.35  # the bed's RMS against the voice's, unducked


def _decode(path: Path, channels: int, tempo: float | None = None, raw_rate: int | None = None,
            limit_s: float | None = None) -> np.ndarray:
    """A file's audio as float32 samples at AUDIO_RATE (frames x channels); `raw_rate` reads a mono f32 file;
    `limit_s` stops after that many seconds."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if raw_rate:
        command += ["-f", "f32le", "-ar", str(raw_rate), "-ac", "1"]
    command += ["-i", str(path), "-vn", "-ac", str(channels), "-ar", str(AUDIO_RATE)]
    if limit_s:
        command += ["-t", _fmt(limit_s)]
    if tempo:
        command += ["-af", f"atempo={tempo:.4f}"]
    command += ["-f", "f32le", "-"]
    pcm = tool_run(command, timeout=60).stdout
    return np.frombuffer(pcm, "<f4").reshape(-1, channels).astype(np.float32)


def _speech_trim(samples: np.ndarray) -> np.ndarray:
    """The voice without its leading and trailing silence (a 20 ms margin kept)."""
    level = np.abs(samples)
    loud = np.nonzero(level > max(1e-4, float(level.max()) * 0.02))[0]
    if not len(loud):
        return samples[:0]
    margin = int(0.02 * AUDIO_RATE)
    return samples[max(0, loud[0] - margin):loud[-1] + margin]


def narration_fit(voices: list[Path | None], starts: list[float], ends: list[float], scratch: Path) -> tuple:
    """Each line placed in its shot: measured, sped up (atempo, at most MAX_TEMPO) where it is longer than
    the shot minus the pauses, and cut at the shot's end with a short fade where even that is too long.
    Returns (a mono track of the whole video at AUDIO_RATE, one {"shot", "start", "end", "spoken_s",
    "tempo", "cut"} per spoken line)."""
    total = int(round(ends[-1] * AUDIO_RATE)) if ends else 0
    track = np.zeros(total, np.float32)
    lines = []
    for index, voice in enumerate(voices):
        if voice is None or index >= len(starts):
            continue
        if not Path(voice).is_file():
            raise MediaError(f"missing narration: {voice}")
        shot_start, shot_end = starts[index], ends[index]
        lead = min(LINE_LEAD_S, (shot_end - shot_start) * 0.05)
        begin = shot_start + lead
        room = max(0.1, shot_end - LINE_PAUSE_S - begin)
        speech = _speech_trim(_decode(Path(voice), 1)[:, 0])
        if not len(speech):
            continue
        spoken = len(speech) / AUDIO_RATE
        tempo, cut = 1.0, False
        if spoken > room:
            tempo = min(MAX_TEMPO, spoken / room)
            raw = scratch / f"line_{index:03d}.f32"
            speech.astype("<f4").tofile(raw)
            speech = _decode(raw, 1, tempo=tempo, raw_rate=AUDIO_RATE)[:, 0]
        limit = int((shot_end - begin) * AUDIO_RATE)
        if len(speech) > limit:  # still too long: cut at the shot's end, fading out
            cut = True
            speech = speech[:limit].copy()
            fade = min(len(speech), int(CUT_FADE_S * AUDIO_RATE))
            speech[len(speech) - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
        at = int(round(begin * AUDIO_RATE))
        piece = speech[:max(0, total - at)]
        track[at:at + len(piece)] += piece
        lines.append({"shot": index + 1, "start": round(begin, 3), "end": round(begin + len(piece) / AUDIO_RATE, 3),
                      "spoken_s": round(spoken, 3), "tempo": round(tempo, 3), "cut": cut,
                      "shot_start": round(shot_start, 3), "shot_end": round(shot_end, 3)})
    return track, lines


def duck_gain(voice: np.ndarray) -> np.ndarray:
    """The bed's gain per sample: MUSIC_DUCK while the voice speaks, 1 elsewhere, with a 60 ms attack (which
    starts before the voice) and a 400 ms release."""
    block = AUDIO_RATE // 100
    blocks = -(-len(voice) // block)
    padded = np.zeros(blocks * block, np.float32)
    padded[:len(voice)] = np.abs(voice)
    active = padded.reshape(blocks, block).max(axis=1) > 0.01
    target = np.where(active, MUSIC_DUCK, 1.0)
    early = target.copy()
    for shift in range(1, 7):  # start ducking 60 ms before the voice
        early[:-shift] = np.minimum(early[:-shift], target[shift:])
    gain = np.empty(blocks)
    level = 1.0
    for index, goal in enumerate(early):
        rate = 0.35 if goal < level else 0.025  # per 10 ms block
        level += (goal - level) * rate
        gain[index] = level
    return np.repeat(gain, block)[:len(voice)].astype(np.float32)


_INTEGRATED = re.compile(r"Integrated loudness:\s*I:\s*(-?[\d.]+|-inf|nan) LUFS", re.S)
_TRUE_PEAK = re.compile(r"True peak:\s*Peak:\s*(-?[\d.]+|-inf|nan) dBFS", re.S)


def loudness_measure(path: Path, *, raw_stereo: bool = False) -> dict:
    """EBU R128 of a file's audio (ffmpeg's ebur128): {"integrated_lufs", "true_peak_dbtp"}; -70 and -inf
    for silence."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats"]
    if raw_stereo:
        command += ["-f", "f32le", "-ar", str(AUDIO_RATE), "-ac", "2"]
    command += ["-i", str(path), "-vn", "-af", "ebur128=peak=true", "-f", "null", "-"]
    stderr = output_tail(tool_run(command, timeout=120).stderr, 4000)
    integrated, peak = _INTEGRATED.search(stderr), _TRUE_PEAK.search(stderr)

    def number(match, default):
        if not match or match.group(1) in ("-inf", "nan"):
            return default
        return float(match.group(1))
    return {"integrated_lufs": number(integrated, -70.0), "true_peak_dbtp": number(peak, float("-inf"))}


def _music_track(music: Path, frames: int) -> np.ndarray:
    """The bed for `frames` samples: the track (decoded no further than needed: an uploaded one may last ten
    minutes), looped when shorter, fading out over its last MUSIC_FADE_OUT_S."""
    bed = _decode(Path(music), 2, limit_s=frames / AUDIO_RATE + 0.1)
    if not len(bed):
        return np.zeros((frames, 2), np.float32)
    repeats = -(-frames // len(bed))
    bed = np.tile(bed, (repeats, 1))[:frames]
    fade = min(frames, int(MUSIC_FADE_OUT_S * AUDIO_RATE))
    if fade:
        bed[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    return bed


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def _cues(shots: list[dict], starts: list[float], ends: list[float], lines: list[dict]) -> list[dict]:
    """Subtitle cues: each line's text over the time it is spoken, or over its shot where it is not."""
    spoken = {line["shot"]: line for line in lines}
    cues = []
    for index, shot in enumerate(shots):
        text = " ".join((shot.get("dialogue") or "").split())
        if not text:
            continue
        line = spoken.get(index + 1)
        start, end = (line["start"], max(line["end"], line["start"] + 0.5)) if line else (starts[index] + 0.1,
                                                                                          ends[index] - 0.1)
        end = min(end, ends[index])  # a cue never outlives its shot
        for cue in subs.cues_for_line(text, start, end):
            cues.append({**cue, "shot": index + 1})
    return cues


def compose(clips: list[Path], shots: list[dict], out: Path, width: int, height: int, fps: int,
            narration: list[Path | None] | None = None, music: Path | None = None, transition_s: float = 0.5,
            subtitles: bool = True, language: str = "en", subtitle_style: Mapping | None = None) -> Path:
    """The final MP4; see compose_timed, which also says where each line and cue fell."""
    return compose_timed(clips, shots, out, width, height, fps, narration=narration, music=music,
                         transition_s=transition_s, subtitles=subtitles, language=language,
                         subtitle_style=subtitle_style)["video"]


def compose_timed(clips: list[Path], shots: list[dict], out: Path, width: int, height: int, fps: int,
                  narration: list[Path | None] | None = None, music: Path | None = None, transition_s: float = 0.5,
                  subtitles: bool = True, language: str = "en", logo: Path | None = None,
                  logo_placement: str = "corner", card_color: tuple[int, int, int] = (46, 52, 64),
                  subtitle_style: Mapping | None = None) -> dict:
    """The final H.264/AAC MP4 (+faststart) of `width` x `height` at `fps`, with a mov_text subtitle track,
    and its .srt and .vtt beside it (out with those suffixes).

    Each clip is scaled and padded to the frame, set to `fps`, and held to exactly its shot's duration (whole
    frames; a short clip holds its last frame). Neighbouring shots cross-fade over `transition_s` centred on their
    cut (each side holds its edge frame through the other half), so the total is exactly the sum of the shot
    durations and every shot starts on time. Each narration line is fitted to its shot (narration_fit); music loops
    under everything, ducked while the voice speaks; the mix is brought to -16 LUFS integrated under a -2 dBFS
    limiter. Subtitles follow the speech (shots without a line show their dialogue over the shot), at most two lines
    a cue, burned in when `subtitles` as `subtitle_style` says (size, position, outline, background; see
    subtitle_strip). There is always an AAC track (silence when there is nothing to hear). A `logo` (the studio's
    image) sits in the top right corner of every frame (bottom right when burned-in subtitles are at the top), or
    (`logo_placement="end_card"`) on a card of `card_color` fading in over the last seconds. Returns {"video",
    "srt", "vtt", "lines", "cues", "loudness_gain_db"}.
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
    subtitle_style = subtitle_style_of(subtitle_style)
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
    ends = [starts[i] + frames[i] / fps for i in range(len(frames))]
    total_frames = sum(frames)
    total_s = total_frames / fps
    half = 0
    if len(clips) > 1 and transition_s > 0:
        half = min(round(transition_s * fps / 2), min(frames) // 2)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    srt_path, vtt_path = out.with_suffix(".srt"), out.with_suffix(".vtt")
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

        if logo is not None:
            # A corner logo keeps clear of burned-in subtitles: top right, or bottom right when they are on top.
            low = subtitles and subtitle_style.get("position") == "top"
            previous = _logo_layer(inputs, filters, previous, Path(logo), scratch, width=width, height=height,
                                   fps=fps, total_s=total_s, placement=logo_placement, card_color=card_color,
                                   low=low)

        # Audio, in numpy: the lines fitted to their shots, the bed ducked under them, one loudness gain.
        voice, lines = narration_fit(list(narration or []), starts, ends, scratch)
        cues = _cues(shots, starts, ends, lines)
        frames_a = int(round(total_s * AUDIO_RATE))
        voice = np.pad(voice, (0, max(0, frames_a - len(voice))))[:frames_a]
        mix = np.zeros((frames_a, 2), np.float32)
        if lines:
            mix += voice[:, None]
        if music is not None:
            if not Path(music).is_file():
                raise MediaError(f"missing music: {music}")
            bed = _music_track(Path(music), frames_a)
            reference = _rms(voice[voice != 0]) if lines else 0.1
            bed *= MUSIC_LEVEL * reference / max(1e-6, _rms(bed))
            if lines:
                bed *= duck_gain(voice)[:, None]
            mix += bed
        gain_db = None
        audio_input = _count_inputs(inputs)
        if np.any(mix):
            raw_mix = scratch / "mix.f32"
            mix.astype("<f4").tofile(raw_mix)
            measured = loudness_measure(raw_mix, raw_stereo=True)["integrated_lufs"]
            gain_db = round(LOUDNESS_TARGET_LUFS - measured, 2) if measured > -70 else 0.0
            (mix * np.float32(10 ** (gain_db / 20))).astype("<f4").tofile(raw_mix)
            inputs += ["-f", "f32le", "-ar", str(AUDIO_RATE), "-ac", "2", "-i", str(raw_mix)]
            filters.append(f"[{audio_input}:a]alimiter=limit={10 ** (LIMIT_DBFS / 20):.4f}:attack=2:release=60:"
                           f"level=0:latency=1,atrim=end={_fmt(total_s)},asetpts=PTS-STARTPTS[aout]")
        else:
            filters.append(f"anullsrc=channel_layout=stereo:sample_rate={AUDIO_RATE},"
                           f"atrim=end={_fmt(total_s)}[aout]")

        # Subtitles: a strip per cue (blank between cues) played as a timed slideshow, overlaid at the bottom
        # or the top.
        video_out = previous
        if subtitles and cues:
            listing = ["ffconcat version 1.0"]
            blank = scratch / "subtitle_blank.png"
            subtitle_strip("", width, height, style=subtitle_style).save(blank)
            at = 0.0
            for index, cue in enumerate(cues):
                if cue["start"] > at + 1e-3:
                    listing += [f"file '{blank.name}'", f"duration {_fmt(cue['start'] - at)}"]
                strip = scratch / f"subtitle_{index:03d}.png"
                subtitle_strip(" ".join(cue["lines"]), width, height, lines=cue["lines"],
                               style=subtitle_style).save(strip)
                listing += [f"file '{strip.name}'", f"duration {_fmt(cue['end'] - max(at, cue['start']))}"]
                at = cue["end"]
            listing += [f"file '{blank.name}'", f"duration {_fmt(max(0.05, total_s - at))}"]
            listing.append(f"file '{blank.name}'")  # the concat demuxer needs the last file twice
            (scratch / "subtitles.ffconcat").write_text("\n".join(listing) + "\n")
            sub_index = _count_inputs(inputs)
            inputs += ["-f", "concat", "-safe", "0", "-i", str(scratch / "subtitles.ffconcat")]
            filters.append(f"[{sub_index}:v]format=rgba[subs]")
            strip_y = subtitle_strip_y(height, width=width, style=subtitle_style)
            filters.append(f"[{previous}][subs]overlay=x=0:y={strip_y}:"
                           f"eof_action=repeat:format=auto,format=yuv420p[vout]")
            video_out = "vout"

        # The soft track and the files: the same cues.
        srt_path.write_text(subs.srt_text(cues), encoding="utf-8")
        vtt_path.write_text(subs.vtt_text(cues, language), encoding="utf-8")
        soft = []
        if cues:
            soft_index = _count_inputs(inputs)
            inputs += ["-f", "srt", "-i", str(srt_path)]
            soft = ["-map", f"{soft_index}:s", "-c:s", "mov_text",
                    "-metadata:s:s:0", f"language={subs.ISO639_2.get(language, 'und')}"]

        command = [
            ffmpeg_exe(), "-y", "-hide_banner", "-nostdin", "-loglevel", "error", *inputs,
            "-filter_complex", ";".join(filters), "-map", f"[{video_out}]", "-map", "[aout]", *soft,
            "-c:v", "libx264", "-preset", COMPOSE_PRESET, "-crf", str(VIDEO_CRF), "-pix_fmt", "yuv420p",
            "-r", str(fps), "-frames:v", str(total_frames),
            "-c:a", "aac", "-b:a", "160k", "-ar", str(AUDIO_RATE), "-ac", "2", "-t", _fmt(total_s),
            "-movflags", "+faststart", "-f", "mp4", str(partial),
        ]
        try:
            tool_run(command, timeout=120 + 15 * total_s)
            if gain_db is not None:
                _true_peak_ceiling(partial, scratch, total_s)
        except MediaError:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(out)
    return {"video": out, "srt": srt_path, "vtt": vtt_path, "lines": lines, "cues": cues,
            "loudness_gain_db": gain_db}


def _logo_layer(inputs: list[str], filters: list[str], previous: str, logo: Path, scratch: Path, *, width: int,
                height: int, fps: int, total_s: float, placement: str, card_color, low: bool = False) -> str:
    """Add the logo's input and overlay to the compose graph; returns the label of the video with it."""
    if not logo.is_file():
        raise MediaError(f"missing logo: {logo}")
    try:
        with Image.open(logo) as opened:
            image = opened.convert("RGBA")
    except (OSError, Image.DecompressionBombError) as exc:
        raise MediaError(f"the logo could not be read ({type(exc).__name__})") from None
    index = _count_inputs(inputs)
    layer = scratch / "logo.png"
    if placement == "end_card":
        card_s = min(END_CARD_S, total_s / 2)
        card = Image.new("RGBA", (width, height), (*_card_background(card_color), 255))
        image.thumbnail((int(width * 0.5), int(height * 0.4)), Image.LANCZOS)
        card.alpha_composite(image, ((width - image.width) // 2, (height - image.height) // 2))
        card.save(layer)
        start = total_s - card_s
        inputs += ["-loop", "1", "-framerate", str(fps), "-t", _fmt(card_s), "-i", str(layer)]
        filters.append(f"[{index}:v]format=rgba,fade=t=in:st=0:d={_fmt(min(0.5, card_s / 2))}:alpha=1,"
                       f"setpts=PTS-STARTPTS+{_fmt(start)}/TB[card]")
        filters.append(f"[{previous}][card]overlay=x=0:y=0:eof_action=pass:format=auto,format=yuv420p[logo]")
    else:
        image.thumbnail((int(width * LOGO_CORNER_BOX), int(height * LOGO_CORNER_BOX)), Image.LANCZOS)
        alpha = image.getchannel("A").point(lambda value: round(value * LOGO_CORNER_OPACITY))
        image.putalpha(alpha)
        image.save(layer)
        margin = round(height * 0.04)
        y = height - image.height - margin if low else margin
        inputs += ["-i", str(layer)]
        filters.append(f"[{previous}][{index}:v]overlay=x={width - image.width - margin}:y={y}:"
                       f"eof_action=repeat:format=auto,format=yuv420p[logo]")
    return "logo"


def _card_background(color) -> tuple[int, int, int]:
    """The end card's colour: the style's, lifted where it is near black (review would read it as a black shot)."""
    r, g, b = (int(c) for c in color)
    lift = max(0.0, (48 - (0.299 * r + 0.587 * g + 0.114 * b)) / 255)
    return tuple(round(c + (200 - c) * lift) for c in (r, g, b))


def _true_peak_ceiling(path: Path, scratch: Path, total_s: float) -> None:
    """Keep the encoded file's true peak at or under MAX_TRUE_PEAK_DBTP: the limiter works on samples
    at 48 kHz, so a peak between samples, with the AAC encoder's overshoot, can still pass it. Then only
    the audio is encoded again, lowered by the excess and a margin (the video and subtitles are copied)."""
    peak = loudness_measure(path)["true_peak_dbtp"]
    if not peak > MAX_TRUE_PEAK_DBTP:
        return
    lowered = scratch / "lowered.mp4"
    tool_run([ffmpeg_exe(), "-y", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
              "-map", "0:v", "-map", "0:a", "-map", "0:s?", "-c:v", "copy", "-c:s", "copy",
              "-af", f"volume={MAX_TRUE_PEAK_DBTP - TRUE_PEAK_MARGIN_DB - peak:.2f}dB",
              "-c:a", "aac", "-b:a", "160k", "-ar", str(AUDIO_RATE), "-ac", "2",
              "-movflags", "+faststart", "-f", "mp4", str(lowered)], timeout=60 + 4 * total_s)
    lowered.replace(path)


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
                  max_black_s: float = 1.0, max_frozen_s: float = 2.0, silence_db: float = -60.0,
                  lines: list[dict] | None = None, cues: list[dict] | None = None,
                  narration_required: bool = False, loudness_target: float | None = None,
                  loudness_tolerance: float = 2.0, max_true_peak: float = MAX_TRUE_PEAK_DBTP) -> list[dict]:
    """Automatic review of a finished video: one {"check", "ok", "detail"} per check, in this order:
    duration (within 10%), resolution (exact), black (no black run of max_black_s or more), frozen (no
    still run of max_frozen_s or more), audio (a stream present; and louder than silence_db when
    audio_required). Then, with what compose reported: narration (when narration_required: lines were
    spoken and each line's window in the file is louder than -45 dBFS RMS), timing (`lines`: no line
    ends later than OVERRUN_S after its shot or runs into the next), loudness (when loudness_target:
    integrated within loudness_tolerance LU, true peak at most max_true_peak dBTP), subtitles (`cues`:
    at most two lines of at most 42 Latin / 16 CJK characters)."""
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
    if narration_required:
        checks.append(_narration_check(path, lines or [], has_audio))
    if lines is not None:
        checks.append(_timing_check(lines))
    if loudness_target is not None:
        measured = loudness_measure(path) if has_audio else {"integrated_lufs": -70.0, "true_peak_dbtp": 0.0}
        level, peak = measured["integrated_lufs"], measured["true_peak_dbtp"]
        checks.append({"check": "loudness", "ok": abs(level - loudness_target) <= loudness_tolerance
                       and peak <= max_true_peak,
                       "detail": f"{level:.1f} LUFS integrated (target {loudness_target:g} ± {loudness_tolerance:g}), "
                                 f"true peak {peak:.1f} dBTP (at most {max_true_peak:g})"})
    if cues is not None:
        over = [cue for cue in cues if subs.line_overflows(cue)]
        checks.append({"check": "subtitles", "ok": not over,
                       "detail": ("too long: " + " | ".join(" / ".join(cue["lines"]) for cue in over[:3])) if over
                       else f"{len(cues)} cues of at most {subs.MAX_LINES} lines"})
    return checks


def _narration_check(path: Path, lines: list[dict], has_audio: bool) -> dict:
    if not lines or not has_audio:
        return {"check": "narration", "ok": False, "detail": "narration was asked for but nothing was spoken"}
    rate = 8000
    pcm = tool_run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate),
                    "-f", "s16le", "-"], timeout=120).stdout
    samples = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768
    quiet = []
    for line in lines:
        window = samples[int(line["start"] * rate):int(line["end"] * rate)]
        level = 20 * np.log10(max(1e-9, float(np.sqrt(np.mean(window ** 2))) if len(window) else 1e-9))
        if level < -45:
            quiet.append(f"shot {line['shot']} ({level:.0f} dBFS)")
    return {"check": "narration", "ok": not quiet,
            "detail": ("silent where a line should be heard: " + ", ".join(quiet)) if quiet
            else f"{len(lines)} lines heard"}


def _timing_check(lines: list[dict]) -> dict:
    late = [line for line in lines if line["end"] > line["shot_end"] + OVERRUN_S]
    ordered = sorted(lines, key=lambda line: line["start"])
    overlaps = [b for a, b in zip(ordered, ordered[1:]) if b["start"] < a["end"]]
    problems = [f"shot {line['shot']} ends {line['end'] - line['shot_end']:.2f} s after its shot" for line in late]
    problems += [f"shot {line['shot']} starts before the previous line ends" for line in overlaps]
    return {"check": "timing", "ok": not problems,
            "detail": "; ".join(problems) if problems else
            f"{len(lines)} lines within their shots (sped up: {sum(1 for x in lines if x['tempo'] > 1)}, "
            f"cut: {sum(1 for x in lines if x['cut'])})"}
