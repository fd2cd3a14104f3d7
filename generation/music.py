"""A music bed synthesized with numpy: soft pads over a chord progression chosen by the style's mood, and a
gentle pulse; the same (style, mood, seed, duration) always gives the same samples. No file, no download."""
from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import numpy as np

RATE = 48000
# Chord progressions as semitone offsets of each chord's triad from the key's root.
_MAJOR = [[0, 4, 7], [-3, 0, 4], [5, 9, 12], [7, 11, 14]]     # I vi IV V
_MINOR = [[0, 3, 7], [-4, 0, 3], [-7, -4, 0], [-2, 2, 5]]     # i VI iv VII
_DARK = ("dramatic", "dark", "tense", "mysterious", "noir", "melanch", "moody", "eerie", "grand", "epic")
_CALM = ("calm", "serene", "gentle", "quiet", "minimal", "peaceful", "soft", "warm", "nostalg")
_LIVELY = ("energetic", "upbeat", "playful", "bright", "fun", "bold", "dynamic", "lively", "cheerful")


def music_plan(*, style: str, mood: str, seed: str) -> dict:
    """Key, scale, tempo and brightness of the bed, from the style's mood words and the seed."""
    words = f"{style} {mood}".lower()
    digest = hashlib.sha256(f"{style}|{mood}|{seed}".encode()).digest()
    minor = any(word in words for word in _DARK)
    tempo = 96 if any(word in words for word in _LIVELY) else 64 if any(word in words for word in _CALM) else 80
    return {"root_hz": 110.0 * 2 ** ((digest[0] % 7 - 3) / 12), "progression": _MINOR if minor else _MAJOR,
            "tempo_bpm": tempo + digest[1] % 8, "brightness": 0.25 if minor else 0.4, "seed": digest[2:10].hex()}


def music_bed(out: Path, *, duration_s: float, style: str = "", mood: str = "", seed: str = "") -> Path:
    """A stereo 16-bit WAV at RATE of `duration_s` seconds: one chord per bar, pads fading in and out, a
    soft low pulse on each beat; peaks at about -6 dBFS (the mix sets the level)."""
    plan = music_plan(style=style, mood=mood, seed=seed)
    rng = np.random.default_rng(int(plan["seed"], 16))
    total = max(1, int(round(duration_s * RATE)))
    t = np.arange(total) / RATE
    beat_s = 60.0 / plan["tempo_bpm"]
    bar = int(round(4 * beat_s * RATE))
    left, right = np.zeros(total), np.zeros(total)
    progression = plan["progression"]
    for index, start in enumerate(range(0, total, bar)):
        chord = progression[index % len(progression)]
        end = min(total, start + bar + RATE // 2)  # each pad rings half a second into the next bar
        span = t[start:end] - t[start]
        envelope = np.minimum(1.0, span / 0.6) * np.minimum(1.0, (t[end - 1] - t[start:end] + 1e-3) / 0.8)
        for note in chord:
            frequency = plan["root_hz"] * 2 ** (note / 12)
            for octave, weight in ((1, 1.0), (2, plan["brightness"])):
                detune = 1 + rng.uniform(-0.002, 0.002)
                phase = rng.uniform(0, 2 * np.pi)
                tone = weight * np.sin(2 * np.pi * frequency * octave * detune * span + phase) * envelope
                pan = rng.uniform(0.35, 0.65)
                left[start:end] += tone * (1 - pan)
                right[start:end] += tone * pan
    # The pulse: a short low sine thump on every beat, the same in both ears.
    beat = int(round(beat_s * RATE))
    thump_t = np.arange(int(0.18 * RATE)) / RATE
    thump = np.sin(2 * np.pi * plan["root_hz"] / 2 * thump_t) * np.exp(-thump_t / 0.05) * 0.9
    for start in range(0, total, beat):
        piece = thump[:total - start]
        left[start:start + len(piece)] += piece
        right[start:start + len(piece)] += piece
    fade = min(total, RATE)  # a second's fade in and out
    ramp = np.linspace(0, 1, fade)
    for channel in (left, right):
        channel[:fade] *= ramp
        channel[total - fade:] *= ramp[::-1]
    stereo = np.stack([left, right], axis=1)
    stereo *= 0.5 / max(1e-9, float(np.abs(stereo).max()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes((stereo * 32767).astype("<i2").tobytes())
    return out
