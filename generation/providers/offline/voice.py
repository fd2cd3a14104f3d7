"""OfflineVoice: narration through the espeak-ng library shipped by the `espeakng-loader` wheel (a ctypes
binding of its C API), or an espeak-ng/espeak binary where that library cannot load."""
from __future__ import annotations

import _ctypes
import atexit
import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

from generation.providers.base import ProviderError, Result, StageContext

# --- voices ------------------------------------------------------------------------------------------

# The voices offered per job language: (espeak-ng voice name, label). The first is the language's voice.
VOICES = {
    "en": [("en", "English"), ("en-us", "English (American)"), ("en+f3", "English, female"),
           ("en+m3", "English, male")],
    "zh": [("cmn", "Mandarin Chinese"), ("cmn+f3", "Mandarin Chinese, female"), ("cmn+m3", "Mandarin Chinese, male")],
}
LANGUAGES = tuple(VOICES)
AUTO_VOICES = ("", "auto", "default", "narrator")  # the voice of the job's language
NO_VOICE = "none"
_VARIANTS = {"female": "+f3", "male": "+m3"}
_VOICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,20}(\+[A-Za-z0-9_-]{1,10})?")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
SPEECH_RATE_WPM = 165


def voices(language: str | None = None) -> list[dict]:
    """The voices a job can ask for, [{"voice", "label", "language"}], of one language or all of them."""
    languages = [language] if language in VOICES else list(VOICES)
    return [{"voice": name, "label": label, "language": lang} for lang in languages for name, label in VOICES[lang]]


def voice_resolve(voice: str, *, language: str = "en", text: str = "") -> str:
    """The espeak-ng voice to speak `text` with: `auto` (or empty) is the language's voice, `female`/`male`
    that voice's variant; Chinese text is always spoken by a Mandarin voice, whatever was asked."""
    language = "zh" if language == "zh" or _CJK.search(text or "") else ("en" if language not in VOICES else language)
    base = VOICES[language][0][0]
    asked = (voice or "").strip().lower()
    if asked in AUTO_VOICES:
        return base
    if asked in _VARIANTS:
        return base + _VARIANTS[asked]
    if not _VOICE_NAME.fullmatch(asked):
        return base
    if language == "zh" and not asked.startswith(("cmn", "zh", "yue")):
        return base + ("+" + asked.split("+", 1)[1] if "+" in asked else "")
    return asked


# --- the espeak-ng library ---------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns once every sample went through the callback
_CHARS_UTF8 = 1
_END_PAUSE = 0x1000
_POS_CHARACTER = 1
_PARAM_RATE = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SpeechLibrary:
    """libespeak-ng through ctypes. The library keeps state between utterances (its pitch flutter runs on
    across calls), so the same line would come out slightly different each time: every synthesis loads a
    fresh copy (a private file, so no other user of the library shares the handle), speaks, and unloads
    it, all under one lock. That costs about 3 ms a line."""

    def __init__(self, library_path: str, data_dir: str):
        folder = tempfile.mkdtemp(prefix="espeak-ng-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the copy lives as long as this process
        private = Path(folder) / "libespeak-ng-private.so"
        shutil.copyfile(library_path, private)
        self._path = str(private)
        self._data_dir = data_dir.encode()  # the folder that holds espeak-ng-data
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library holds only the pointer
        self.lock = threading.Lock()
        with self.lock:
            lib = self._load()
            self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_dir, 0)
            self._unload(lib)
        if self.sample_rate <= 0:
            raise OSError(f"espeak_Initialize failed ({self.sample_rate})")

    def _load(self):
        lib = ctypes.CDLL(self._path)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        return lib

    @staticmethod
    def _unload(lib) -> None:
        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)

    def _collect(self, samples, count, _events) -> int:
        if count > 0 and samples:
            self._chunks.append(ctypes.string_at(samples, count * 2))
        return 0  # go on

    def synthesize(self, text: str, voice: str, rate_wpm: int = SPEECH_RATE_WPM) -> bytes:
        """16-bit mono PCM at `sample_rate` of `text` spoken by `voice`; OSError for an unknown voice."""
        data = text.encode("utf-8")
        with self.lock:
            lib = self._load()
            try:
                lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_dir, 0)
                lib.espeak_SetSynthCallback(self._callback)
                if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise OSError(f"unknown voice {voice!r}")
                lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
                self._chunks = []
                status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _END_PAUSE,
                                          None, None)
                lib.espeak_Synchronize()
                chunks, self._chunks = self._chunks, []
            finally:
                self._unload(lib)
        if status != 0:
            raise OSError(f"espeak_Synth failed ({status})")
        return b"".join(chunks)


_library: SpeechLibrary | None = None
_library_failed = False
_library_lock = threading.Lock()


def speech_library() -> SpeechLibrary | None:
    """The espeak-ng library of the espeakng-loader wheel, or None where it is missing or cannot load."""
    global _library, _library_failed
    with _library_lock:
        if _library is None and not _library_failed:
            try:
                import espeakng_loader

                data = Path(espeakng_loader.get_data_path())
                _library = SpeechLibrary(espeakng_loader.get_library_path(), str(data.parent))
            except (ImportError, OSError, RuntimeError, AttributeError):
                _library_failed = True
        return _library


def _wav_write(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


SAMPLE_TEXTS = {"en": "Every story starts with a single light on the shore.", "zh": "每个故事，都从岸边的一盏灯开始。"}
_samples: dict[str, bytes] = {}


def voice_sample(voice: str) -> bytes:
    """A WAV of one sentence in `voice` (one of voices()), for a voice list's preview; kept per process.
    Empty bytes where no speech engine can load."""
    if voice not in _samples:
        language = next((v["language"] for v in voices() if v["voice"] == voice), "en")
        library = speech_library()
        if library is None:
            return b""
        pcm = library.synthesize(SAMPLE_TEXTS[language], voice)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sample.wav"
            _wav_write(path, pcm, library.sample_rate)
            _samples[voice] = path.read_bytes()
    return _samples[voice]


# --- Voice -------------------------------------------------------------------------------------------

class OfflineVoice:
    """Narration through the bundled espeak-ng library, else an espeak-ng/espeak binary on PATH; Result(None)
    where neither exists (never downloads). The same text and voice give the same samples."""

    name = "offline"
    queue = "cpu"

    @staticmethod
    def library() -> SpeechLibrary | None:
        return speech_library()

    @staticmethod
    def engine() -> str | None:
        return shutil.which("espeak-ng") or shutil.which("espeak")

    def narrate(self, *, text: str, voice: str, out: Path, ctx: StageContext) -> Result:
        text = " ".join((text or "").split())
        language = (ctx.options or {}).get("language", "en") if ctx is not None else "en"
        voice = voice_resolve(voice, language=language, text=text)
        library = self.library()
        engine = None if library is not None else self.engine()
        if not text or (library is None and not engine):
            return Result(value=None, usage={"engine": None, "reason": "no text" if not text else "no speech engine"})
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if library is not None:
            try:
                pcm = library.synthesize(text, voice)
            except OSError:
                # An unknown voice name falls back to the language's own voice rather than fail the job.
                voice = voice_resolve("auto", language=language, text=text)
                try:
                    pcm = library.synthesize(text, voice)
                except OSError as exc:
                    raise ProviderError(f"espeak-ng failed: {exc}") from None
            if not pcm:
                raise ProviderError("espeak-ng produced no sound")
            _wav_write(out, pcm, library.sample_rate)
            return Result(value=out, usage={"engine": "libespeak-ng", "voice": voice,
                                            "seconds": round(len(pcm) / 2 / library.sample_rate, 3)})
        return self._narrate_with_binary(engine, text, voice, out)

    @staticmethod
    def _narrate_with_binary(engine: str, text: str, voice: str, out: Path) -> Result:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as handle:
            handle.write(text)
        try:
            completed = subprocess.run([engine, "-v", voice, "-s", str(SPEECH_RATE_WPM), "-w", str(out),
                                        "-f", handle.name], capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise ProviderError("the speech engine timed out") from None
        finally:
            os.unlink(handle.name)
        if completed.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise ProviderError(f"{Path(engine).name} failed: {completed.stderr.decode('utf-8', 'replace')[-500:]}")
        seconds = None
        try:
            with wave.open(str(out)) as wav:
                seconds = round(wav.getnframes() / wav.getframerate(), 3)
        except (wave.Error, EOFError):
            pass
        return Result(value=out, usage={"engine": Path(engine).name, "voice": voice, "seconds": seconds})
