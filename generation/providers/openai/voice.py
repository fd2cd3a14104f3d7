"""The `openai` voice provider: narration from `audio.speech.create` in the job's voice and language, written
as the WAV the compose stage mixes (anything else the endpoint answers is decoded to WAV with ffmpeg).

Settings (the `openai` credential, client.SETTINGS_SCHEMA): speech_model (default gpt-4o-mini-tts), voice
(used when the job's voice is none of the endpoint's; default alloy), speech_format (default wav),
prices.per_speech_character (the cost: characters spoken x price).
"""
from __future__ import annotations

import io
import logging
import wave
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

from config.media import MediaError, ffmpeg_exe, tool_run
from generation.error_codes import GenerationErrors
from generation.providers.base import ProviderError, Result, StageContext
from generation.providers.openai.client import call_with_retries, openai_client, price

log = logging.getLogger(__name__)

DEFAULT_SPEECH_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse")
# The platform's voice names (job option `voice`) as the endpoint's; "" and "narrator" take the setting.
VOICE_ALIASES = {"female": "nova", "male": "onyx"}
MAX_INPUT_CHARS = 4096  # what one speech request takes
DECODE_TIMEOUT_S = 120
SAMPLE_RATE = 24000  # of the endpoint's pcm answer


def voice_name(voice: str, settings: dict) -> str:
    """The endpoint's voice for the job's `voice`."""
    wanted = (voice or "").strip().lower()
    if wanted in OPENAI_VOICES:
        return wanted
    if wanted in VOICE_ALIASES:
        return VOICE_ALIASES[wanted]
    return str(settings.get("voice") or DEFAULT_VOICE)


class OpenAIVoice:
    """VoiceProvider over the speech endpoint: one request per narration."""

    name: ClassVar[str] = "openai"
    queue: ClassVar[str] = "llm"

    def narrate(self, *, text: str, voice: str, out: Path, ctx: StageContext) -> Result:
        text = " ".join((text or "").split())
        if not text:
            return Result(value=None, usage={"engine": "openai", "reason": "no text"})
        settings = ctx.settings  # the organization's openai settings (run_compose passes each voice provider's)
        model = settings.get("speech_model") or DEFAULT_SPEECH_MODEL
        spoken = voice_name(voice, settings)
        audio_format = settings.get("speech_format") or "wav"
        request = {"model": model, "voice": spoken, "input": text[:MAX_INPUT_CHARS], "response_format": audio_format}
        language = str(ctx.options.get("language") or "").strip()
        if language:
            # The speech endpoint has no language parameter; the instruction is how it is asked for.
            request["instructions"] = f"Speak in the language {language[:40]}, clearly, as a narrator."
        what = "openai voice"
        with openai_client(settings) as client:
            answer, attempts = call_with_retries(lambda: client.audio.speech.create(**request),
                                                 settings=settings, ctx=ctx, what=what)
            audio = answer.content
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        seconds = _wav_seconds(audio)
        if seconds is not None:
            out.write_bytes(audio)
        else:
            seconds = wav_decode(audio, out, audio_format=audio_format, work_dir=ctx.work_dir, what=what)
        characters = len(request["input"])
        usage = {"engine": "openai", "model": model, "voice": spoken, "characters": characters,
                 "seconds": seconds, "attempts": attempts, "language": language or None}
        return Result(value=out, cost=price(settings, "per_speech_character") * Decimal(characters), usage=usage)


def _wav_seconds(data: bytes) -> float | None:
    """The duration of `data` when it is a whole PCM WAV the mixer can read as it is; None otherwise (a
    streamed WAV's header gives no sizes, so its frame count cannot be trusted)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
            expected = frames * wav.getsampwidth() * wav.getnchannels()
    except (wave.Error, EOFError):
        return None
    if rate <= 0 or frames <= 0 or expected > len(data):
        return None
    return round(frames / rate, 3)


def wav_decode(audio: bytes, out: Path, *, audio_format: str, work_dir: Path, what: str) -> float | None:
    """`audio` (any format ffmpeg reads, or the endpoint's raw 24 kHz pcm) as a 16-bit PCM WAV at `out`."""
    source = Path(work_dir) / f"speech.{audio_format}"
    source.write_bytes(audio)
    raw = ["-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1"] if audio_format == "pcm" else []
    try:
        tool_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *raw, "-i", str(source),
                  "-c:a", "pcm_s16le", "-f", "wav", str(out)], timeout=DECODE_TIMEOUT_S)
    except MediaError as exc:
        log.warning("%s: the speech could not be decoded: %s", what, exc)
        raise ProviderError(f"{what}: the endpoint's audio could not be read",
                            code=GenerationErrors.PROVIDER_BAD_ANSWER) from None
    return _wav_seconds(out.read_bytes())
