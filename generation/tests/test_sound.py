"""Sound and subtitles with nothing but Python packages: the bundled espeak-ng speaks English and Mandarin,
narration fits its shot, a synthesized bed sits under it, the mix is at -16 LUFS, and the subtitles (soft
track, .srt, .vtt, burned strip) are readable, Chinese included. Real ffmpeg, real speech engine, no database.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from config.media import ffmpeg_exe, probe
from generation import media, music, subtitles
from generation.providers.base import StageContext
from generation.providers.offline.voice import OfflineVoice, speech_library, voice_resolve, voices

W, H, FPS = 640, 360, 24
SHOTS = [
    {"duration_s": 2.5, "dialogue": "Paper boats drift along the rainy canal."},
    # Far too long for its shot: sped up, then cut at the shot's end.
    {"duration_s": 1.5, "dialogue": "Then the wind turns, the boats spin around and the children run along the "
                                    "bank shouting their names."},
    {"duration_s": 2.5, "dialogue": "By evening the water is calm again."},
]
ZH_SHOTS = [{"duration_s": 3.0, "dialogue": "纸船在下雨的运河上漂流。"},
            {"duration_s": 3.0, "dialogue": "傍晚时分，水面又恢复了平静。"}]


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin", *args], check=True,
                   timeout=120)


def ctx(tmp_path: Path) -> StageContext:
    return StageContext(organization_id=1, job_id="sound", options={}, prompts={}, work_dir=tmp_path)


def clips_for(tmp: Path, shots) -> list[Path]:
    paths = []
    for index, shot in enumerate(shots):
        path = tmp / f"clip{index}.mp4"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate={FPS}:duration={shot['duration_s']}",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
        paths.append(path)
    return paths


def narrate_all(tmp: Path, shots, voice="auto", language="en") -> list[Path]:
    return [OfflineVoice().narrate(text=shot["dialogue"], voice=voice_resolve(voice, language=language,
                                   text=shot["dialogue"]), out=tmp / f"line{index}.wav", ctx=ctx(tmp)).value
            for index, shot in enumerate(shots)]


def ebur128(path: Path) -> tuple[float, float]:
    stderr = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                             "-f", "null", "-"], capture_output=True, text=True, timeout=120).stderr
    summary = stderr[stderr.rindex("Summary:"):]
    return (float(re.search(r"I:\s*(-?[\d.]+) LUFS", summary).group(1)),
            float(re.search(r"Peak:\s*(-?[\d.]+) dBFS", summary).group(1)))


def samples_of(path: Path, rate=16000) -> np.ndarray:
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate),
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(pcm, np.int16).astype(np.float64) / 32768


@pytest.fixture(scope="module")
def voiced(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sound")
    bed = music.music_bed(tmp / "bed.wav", duration_s=6.5, style="cinematic", mood="dramatic, emotional", seed="x")
    result = media.compose_timed(clips_for(tmp, SHOTS), SHOTS, tmp / "video.mp4", W, H, FPS,
                                 narration=narrate_all(tmp, SHOTS), music=bed)
    narration_only = media.compose_timed(clips_for(tmp, SHOTS), SHOTS, tmp / "narration.mp4", W, H, FPS,
                                         narration=narrate_all(tmp, SHOTS), subtitles=False)
    return result, narration_only


# --- the speech engine --------------------------------------------------------------------------------

def test_the_bundled_library_speaks_english_and_mandarin_deterministically(tmp_path):
    assert speech_library() is not None, "espeakng-loader's libespeak-ng should load"
    english = OfflineVoice().narrate(text="Hello there.", voice="auto", out=tmp_path / "en.wav", ctx=ctx(tmp_path))
    OfflineVoice().narrate(text="Hello there.", voice="auto", out=tmp_path / "en2.wav", ctx=ctx(tmp_path))
    chinese = OfflineVoice().narrate(text="你好，世界。", voice="en+f3", out=tmp_path / "zh.wav", ctx=ctx(tmp_path))
    assert english.usage["engine"] == "libespeak-ng" and english.usage["voice"] == "en"
    assert chinese.usage["voice"] == "cmn+f3"  # Chinese text always gets a Mandarin voice
    assert (tmp_path / "en.wav").read_bytes() == (tmp_path / "en2.wav").read_bytes()
    with wave.open(str(tmp_path / "zh.wav")) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        assert wav.getframerate() == 22050 and len(pcm) / 22050 > 0.8 and np.abs(pcm).max() > 3000
    assert {v["voice"] for v in voices("zh")} >= {"cmn"} and {v["voice"] for v in voices("en")} >= {"en", "en+f3"}


def test_the_library_is_safe_across_threads():
    library = speech_library()
    expected = {voice: hashlib.sha256(library.synthesize(text, voice)).hexdigest()
                for voice, text in (("en", "One line at a time."), ("cmn", "一次一句。"))}
    seen: list[tuple[str, str]] = []

    def speak(voice, text):
        seen.append((voice, hashlib.sha256(library.synthesize(text, voice)).hexdigest()))
    threads = [threading.Thread(target=speak, args=(("en", "One line at a time.") if i % 2 else ("cmn", "一次一句。")))
               for i in range(8)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert len(seen) == 8 and all(digest == expected[voice] for voice, digest in seen)


def test_voice_options():
    assert voice_resolve("auto", language="zh") == "cmn" and voice_resolve("", language="en") == "en"
    assert voice_resolve("female", language="en") == "en+f3" and voice_resolve("bad name!", language="en") == "en"


# --- the mix ------------------------------------------------------------------------------------------

def test_the_mix_is_at_minus_16_lufs_with_speech_in_every_shot(voiced):
    result, narration_only = voiced
    integrated, peak = ebur128(result["video"])
    assert -18 <= integrated <= -14 and peak <= -1.0, (integrated, peak)
    # Speech in every shot's window, measured on the narration-only mix (the bed would mask silence).
    samples = samples_of(narration_only["video"])
    for line in narration_only["lines"]:
        window = samples[int(line["start"] * 16000):int(line["end"] * 16000)]
        assert 20 * np.log10(np.sqrt(np.mean(window ** 2))) > -35, line
    assert [line["shot"] for line in result["lines"]] == [1, 2, 3]


def test_an_encoded_true_peak_over_the_ceiling_is_lowered_and_the_video_and_subtitles_kept(voiced, tmp_path):
    # A square wave at full scale: its encoded true peak lands well above -1 dBTP, as a limiter at the
    # sample level lets through between samples (a job's mix was measured at -0.6 dBTP).
    hot = tmp_path / "hot.mp4"
    ffmpeg("-i", str(voiced[0]["video"]), "-f", "lavfi", "-i", "aevalsrc='sgn(sin(2*PI*997*t))':s=48000:d=6",
           "-map", "0:v", "-map", "1:a", "-map", "0:s", "-c:v", "copy", "-c:s", "copy", "-c:a", "aac", "-shortest",
           str(hot))
    before = media.loudness_measure(hot)["true_peak_dbtp"]
    assert before > media.MAX_TRUE_PEAK_DBTP
    frames_before = hashlib.sha256(subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(hot), "-map", "0:v",
                                                   "-c", "copy", "-f", "h264", "-"], capture_output=True).stdout)
    media._true_peak_ceiling(hot, tmp_path, 6.0)
    after = media.loudness_measure(hot)["true_peak_dbtp"]
    assert after <= media.MAX_TRUE_PEAK_DBTP, (before, after)
    info = probe(hot)
    assert info["audio_codec"] == "aac" and info.get("subtitle_codec", "mov_text") == "mov_text"
    frames_after = hashlib.sha256(subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(hot), "-map", "0:v",
                                                  "-c", "copy", "-f", "h264", "-"], capture_output=True).stdout)
    assert frames_after.hexdigest() == frames_before.hexdigest()  # the video is copied, not encoded again
    streams = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(hot)], capture_output=True, text=True).stderr
    assert "Subtitle: mov_text" in streams


def test_lines_fit_their_shots(voiced):
    result, _ = voiced
    lines = result["lines"]
    for line, following in zip(lines, lines[1:] + [None]):
        assert line["end"] <= line["shot_end"] + 0.2, line
        assert following is None or line["end"] < following["start"]
    long = lines[1]
    assert long["tempo"] == pytest.approx(1.3) and long["cut"] and long["spoken_s"] > 1.5 * 1.3
    # In the file: the cut line's fade leaves the gap after shot 2 quiet (the bed excepted: narration-only).
    _, narration_only = voiced
    samples = samples_of(narration_only["video"])
    gap = samples[int(4.05 * 16000):int(4.12 * 16000)]
    assert np.sqrt(np.mean(gap ** 2)) < 0.01


def test_the_bed_ducks_under_the_voice_and_is_deterministic(tmp_path):
    one = music.music_bed(tmp_path / "a.wav", duration_s=4, style="nature", mood="calm", seed="job-1")
    two = music.music_bed(tmp_path / "b.wav", duration_s=4, style="nature", mood="calm", seed="job-1")
    other = music.music_bed(tmp_path / "c.wav", duration_s=4, style="nature", mood="calm", seed="job-2")
    assert one.read_bytes() == two.read_bytes() != other.read_bytes()
    voice = np.zeros(48000 * 2, np.float32)
    voice[48000:] = 0.2
    gain = media.duck_gain(voice)
    assert gain[24000] == pytest.approx(1.0, abs=0.01) and gain[-1] == pytest.approx(media.MUSIC_DUCK, abs=0.02)


# --- subtitles ----------------------------------------------------------------------------------------

def test_the_video_carries_aac_and_a_subtitle_track_and_the_srt_matches_the_lines(voiced):
    result, _ = voiced
    info = probe(result["video"])
    assert info["audio_codec"] == "aac"
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(result["video"])], capture_output=True,
                            text=True).stderr
    assert re.search(r"Stream #0:\d+\[\w+\]\(eng\): Subtitle: mov_text", header), header
    srt = result["srt"].read_text(encoding="utf-8")
    texts = [" ".join(block.split("\n")[2:]) for block in srt.strip().split("\n\n")]
    spoken = " ".join(shot["dialogue"] for shot in SHOTS)
    assert " ".join(texts) == spoken
    assert result["vtt"].read_text(encoding="utf-8").startswith("WEBVTT")
    first = srt.split("\n")[1]
    assert first.startswith("00:00:00,1") and " --> 00:00:0" in first  # timed to the speech, not the shot
    assert all(not subtitles.line_overflows(cue) for cue in result["cues"])


def test_line_breaks_follow_phrases_and_limits():
    cues = subtitles.cue_texts("Then the wind turns, the boats spin around and the children run along the bank "
                               "shouting their names while the rain keeps falling on the old stone bridge.")
    assert len(cues) >= 2 and all(len(cue) <= 2 for cue in cues)
    assert all(subtitles.text_units(line) <= 42 for cue in cues for line in cue)
    assert cues[0][0].endswith(",") or cues[0][1].split()[0] in subtitles._PHRASE_STARTS  # noqa: SLF001
    chinese = subtitles.cue_texts("一位吹玻璃的工匠在夜里塑造一只蓝色的花瓶，炉火映红了整个工作室，大家都安静地看着。")
    assert all(len(line) <= 16 for cue in chinese for line in cue)
    assert not any(line.startswith(("，", "。")) for cue in chinese for line in cue)


def test_a_chinese_line_is_spoken_in_mandarin_and_its_subtitle_renders_real_glyphs(tmp_path):
    voices_zh = narrate_all(tmp_path, ZH_SHOTS, language="zh")
    result = media.compose_timed(clips_for(tmp_path, ZH_SHOTS), ZH_SHOTS, tmp_path / "zh.mp4", W, H, FPS,
                                 narration=voices_zh, language="zh")
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(result["video"])], capture_output=True,
                            text=True).stderr
    assert "(chi): Subtitle: mov_text" in header
    assert "纸船" in result["srt"].read_text(encoding="utf-8")
    # The font covers every character, and no glyph is drawn as the font's .notdef box.
    font_file = media.font_path()
    assert font_file is not None and font_file.is_file()
    font = ImageFont.truetype(str(font_file), 48)

    def glyph(char: str) -> bytes:
        image = Image.new("L", (64, 64))
        ImageDraw.Draw(image).text((8, 4), char, font=font, fill=255)
        return image.tobytes()
    notdef = glyph("\U0010fffd")  # an unassigned code point renders .notdef
    for char in "".join(shot["dialogue"] for shot in ZH_SHOTS):
        assert glyph(char) != notdef and any(glyph(char)), char
    spoken = OfflineVoice().narrate(text=ZH_SHOTS[0]["dialogue"], voice=voice_resolve("auto", language="zh"),
                                    out=tmp_path / "check.wav", ctx=ctx(tmp_path))
    assert spoken.usage["voice"] == "cmn" and result["lines"][0]["spoken_s"] > 1.0
    strip = media.subtitle_strip(ZH_SHOTS[0]["dialogue"], W, H, lines=result["cues"][0]["lines"])
    assert strip.getbbox() is not None
    # The burned frame: the subtitle band differs from the plain video there.
    plain = media.compose(clips_for(tmp_path, ZH_SHOTS), ZH_SHOTS, tmp_path / "plain.mp4", W, H, FPS,
                          subtitles=False, language="zh")

    def frame(video, at):
        raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(at), "-i", str(video), "-frames:v", "1",
                              "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
        return np.frombuffer(raw, np.uint8).reshape(H, W, 3).astype(np.int16)
    band = int(H * 0.78)
    assert float(np.abs(frame(result["video"], 1.0)[band:] - frame(plain, 1.0)[band:]).mean()) > 5


# --- review -------------------------------------------------------------------------------------------

def test_review_passes_the_mix_and_fails_silence_overrun_loudness_and_overflow(voiced, tmp_path):
    result, _ = voiced
    checks = {c["check"]: c for c in media.review_checks(
        result["video"], duration_s=6.5, width=W, height=H, audio_required=True, narration_required=True,
        lines=result["lines"], cues=result["cues"], loudness_target=-16)}
    assert all(c["ok"] for c in checks.values()), checks
    # A silent video where narration was asked for; lines that overrun; a cue of three lines.
    silent = media.compose_timed(clips_for(tmp_path, SHOTS), SHOTS, tmp_path / "silent.mp4", W, H, FPS)
    late = [{**line, "end": line["shot_end"] + 0.5} for line in result["lines"]]
    crowded = [{"start": 0, "end": 1, "lines": ["one", "two", "three"]}]
    checks = {c["check"]: c for c in media.review_checks(
        silent["video"], duration_s=6.5, width=W, height=H, audio_required=False, narration_required=True,
        lines=late, cues=crowded, loudness_target=-16)}
    assert not checks["narration"]["ok"] and not checks["timing"]["ok"]
    assert not checks["loudness"]["ok"] and not checks["subtitles"]["ok"]
