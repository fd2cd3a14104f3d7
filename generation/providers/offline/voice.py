"""OfflineVoice: narration through espeak-ng or espeak when installed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from generation.providers.base import ProviderError, Result, StageContext

# --- Voice -------------------------------------------------------------------------------------------

VOICE_ALIASES = {"": "en", "default": "en", "female": "en+f3", "male": "en+m3", "narrator": "en"}


class OfflineVoice:
    """Narration through a local espeak-ng/espeak when installed; Result(None) otherwise (never downloads)."""

    name = "offline"
    queue = "cpu"

    @staticmethod
    def engine() -> str | None:
        return shutil.which("espeak-ng") or shutil.which("espeak")

    def narrate(self, *, text: str, voice: str, out: Path, ctx: StageContext) -> Result:
        engine = self.engine()
        text = " ".join((text or "").split())
        if not engine or not text:
            return Result(value=None, usage={"engine": None, "reason": "no speech engine" if not engine else "no text"})
        voice = VOICE_ALIASES.get((voice or "").lower(), voice or "en")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,20}(\+[A-Za-z0-9_-]{1,10})?", voice):
            voice = "en"
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as handle:
            handle.write(text)
        try:
            completed = subprocess.run([engine, "-v", voice, "-s", "160", "-w", str(out), "-f", handle.name],
                                       capture_output=True, timeout=120)
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
