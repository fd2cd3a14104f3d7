"""OfflineVideo: the first frame animated by a camera movement and some life, piped to ffmpeg's libx264."""
from __future__ import annotations

import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw

from config.media import ffmpeg_exe
from generation.providers.base import ProviderError, ProviderRefused, Result, StageContext
from generation.providers.offline.common import digest_int, shot_seed
from generation.providers.offline.image import color_mix, luma, palette_colors

# The deepest a camera move crops into the frame (1.2 = a window of 1/1.2 of the frame, scaled back up).
MAX_ZOOM = 1.2
CANCEL_CHECK_EVERY = 10  # frames between ctx.is_cancelled() checks
FFMPEG_TIMEOUT_S = 600


# --- Video: the clip --------------------------------------------------------------------------------

def _ease(t: float) -> float:
    """Half linear, half smoothstep: soft starts and stops that never stall the picture."""
    return 0.5 * t + 0.5 * t * t * (3 - 2 * t)


def camera_path(movement: str, rng: random.Random):
    """A function of progress 0..1 giving (zoom, cx, cy): the crop window's zoom (1 = the whole frame,
    up to MAX_ZOOM) and its centre as a fraction of the frame; and the side (-1/1) a drift goes to."""
    side = rng.choice([-1, 1])
    ox, oy = rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03)  # zoom towards a point near the centre
    zoom_max = MAX_ZOOM
    travel_zoom = 1.18

    def zoom_in(t):
        z = 1 + (zoom_max - 1) * t
        return z, 0.5 + ox * t, 0.5 + oy * t

    def zoom_out(t):
        return zoom_in(1 - t)

    def pan(direction):  # direction -1: the view moves left
        def path(t):
            reach = (1 - 1 / travel_zoom) / 2
            return travel_zoom, 0.5 + direction * reach * (2 * t - 1), 0.5 + oy * 0.5
        return path

    def tilt(direction):  # direction -1: the view moves up
        def path(t):
            reach = (1 - 1 / travel_zoom) / 2
            return travel_zoom, 0.5 + ox * 0.5, 0.5 + direction * reach * (2 * t - 1)
        return path

    def dolly(t):
        z = 1.02 + (zoom_max - 1.04) * t
        reach = (1 - 1 / z) / 2
        return z, 0.5 + side * min(reach, 0.035) * (2 * t - 1) * 0.8, 0.5 + oy * t

    def tracking(t):
        z = 1.12
        reach = (1 - 1 / z) / 2
        return z, 0.5 + side * reach * 0.9 * (2 * t - 1), 0.5

    def static(t):
        return 1.0, 0.5, 0.5

    paths = {
        "zoom_in": zoom_in, "zoom_out": zoom_out, "pan_left": pan(-1), "pan_right": pan(1),
        "tilt_up": tilt(-1), "tilt_down": tilt(1), "dolly": dolly, "tracking": tracking, "static": static,
    }
    return paths.get(movement, static), side


class _Life:
    """What moves inside the picture whatever the camera does: drifting particles, and for `static` a slow
    light sweep, for `tracking` foreground posts passing faster than the background (parallax)."""

    def __init__(self, size, palette, movement: str, side: int, rng: random.Random):
        self.w, self.h = size
        self.movement, self.side = movement, side
        light = max(palette, key=luma)
        self.dark = color_mix(min(palette, key=luma), (0, 0, 0), 0.55)
        self.particles = [
            (rng.random(), rng.random(), rng.uniform(0.8, 2.6) * self.h / 720, rng.uniform(-0.08, 0.08),
             rng.uniform(-0.12, -0.02), color_mix(light, (255, 255, 255), rng.uniform(0.2, 0.8)))
            for _ in range(36)
        ]
        self.glow = None
        if movement == "static":
            self.glow = self._glow_strip(color_mix(light, (255, 240, 200), 0.5))
        self.rocks = []  # foreground silhouettes (rocks, bushes) along the bottom edge
        if movement == "tracking":
            x = rng.uniform(0, 0.3)
            while x < 2.2:
                self.rocks.append((x, rng.uniform(0.12, 0.28), rng.uniform(0.12, 0.3)))
                x += rng.uniform(0.3, 0.6)

    def _glow_strip(self, color) -> Image.Image:
        """A strip twice the frame width holding one soft light blob; a window of it slides across."""
        w, h = self.w * 2, self.h
        y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        x = np.linspace(-2, 2, w, dtype=np.float32)[None, :] * (w / h) / 2
        blob = np.exp(-((x * 0.9) ** 2 + (y * 1.1) ** 2) * 2.2) * 0.55
        array = blob[:, :, None] * np.asarray(color, np.float32)[None, None, :]
        return Image.fromarray(array.round().astype(np.uint8), "RGB")

    def apply(self, image: Image.Image, t: float) -> Image.Image:
        if self.glow is not None:
            # The light centre travels from 1/4 to 3/4 of the frame width.
            left = int(round(self.w * (0.75 - 0.5 * t)))
            image = ImageChops.screen(image, self.glow.crop((left, 0, left + self.w, self.h)))
        draw = ImageDraw.Draw(image)
        for x0, y0, r, vx, vy, color in self.particles:
            x = ((x0 + vx * t) % 1.0) * self.w
            y = ((y0 + vy * t) % 1.0) * self.h
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        for x0, width, rise in self.rocks:
            # They cross the frame against the camera's travel, faster than the background (parallax).
            x = (x0 - self.side * 1.1 * t) % 2.2 - 0.6
            draw.ellipse([x * self.w, (1 - rise) * self.h, (x + width) * self.w, (1 + rise) * self.h],
                         fill=self.dark)
        return image


def _zoomed(pixels: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    """The part `box` (x0, y0, width, height, in pixels) of an RGB array, scaled bilinearly to `size`: the same
    sampling as Pillow's resize with that box (output pixel centres mapped into the box)."""
    width, height = size
    x0, y0, box_w, box_h = box
    sx, sy = box_w / width, box_h / height
    matrix = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]], dtype=np.float64)
    warped = cv2.warpAffine(pixels, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(warped, "RGB")


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale and centre-crop `image` to fill `size` exactly."""
    w, h = size
    scale = max(w / image.width, h / image.height)
    resized = image.resize((max(w, round(image.width * scale)), max(h, round(image.height * scale))), Image.LANCZOS)
    left, top = (resized.width - w) // 2, (resized.height - h) // 2
    return resized.crop((left, top, left + w, top + h))


def _stderr_tail(handle, limit: int = 2000) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace")[-limit:]


class OfflineVideo:
    """Animates a shot's first frame with its camera movement into an H.264 MP4 of ctx.size."""

    name = "offline"
    queue = "cpu"
    # A clip is an intermediate: compose scales and encodes every clip again. So it is encoded for speed (twice
    # as fast as veryfast) at a quality above the final video's (crf 18 against compose's 21); only its files
    # grow.
    preset = "ultrafast"
    crf = 18

    def clip(self, *, shot: dict, style: dict, frame: Path, fps: int, out: Path, ctx: StageContext) -> Result:
        started = time.monotonic()
        width, height = ctx.size
        fps = int(fps)
        if fps <= 0:
            raise ProviderRefused(f"fps must be positive, not {fps}")
        frames = max(1, round(float(shot.get("duration_s") or 0) * fps))
        movement = shot.get("camera_movement") or "static"
        rng = random.Random(digest_int("clip", shot_seed(shot, style, ctx.organization_id), movement))
        try:
            source = Image.open(frame).convert("RGB")
        except (OSError, ValueError) as exc:
            raise ProviderError(f"cannot read the frame {frame}: {exc}") from exc
        if source.size != (width, height):
            source = _cover(source, (width, height))
        pixels = np.asarray(source)  # zooms sample it with OpenCV (4x faster than Pillow's box resize)
        path, side = camera_path(movement, rng)
        life = _Life((width, height), palette_colors(style), movement, side, rng)
        fixed_zoom = path(0.0)[0] if path(0.0)[0] == path(1.0)[0] else None
        if fixed_zoom is not None:
            # Pans, tilts, tracking and static keep one zoom: scale once, then each frame is a plain crop
            # (whole pixels; at these speeds the rounding does not show, and it is ~50x cheaper).
            scaled = source if fixed_zoom == 1 else source.resize(
                (round(width * fixed_zoom), round(height * fixed_zoom)), Image.BICUBIC)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")
        command = [
            ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
            "-r", str(fps), "-movflags", "+faststart", "-f", "mp4", str(partial),
        ]
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                for index in range(frames):
                    if index % CANCEL_CHECK_EVERY == 0 and ctx.is_cancelled():
                        raise ProviderError("cancelled")
                    t = _ease(index / (frames - 1)) if frames > 1 else 0.0
                    zoom, cx, cy = path(t)
                    if fixed_zoom is not None:
                        x0 = min(max(round(cx * scaled.width - width / 2), 0), scaled.width - width)
                        y0 = min(max(round(cy * scaled.height - height / 2), 0), scaled.height - height)
                        picture = scaled.crop((x0, y0, x0 + width, y0 + height))
                    else:
                        box_w, box_h = width / zoom, height / zoom
                        x0 = min(max(cx * width - box_w / 2, 0.0), width - box_w)
                        y0 = min(max(cy * height - box_h / 2, 0.0), height - box_h)
                        picture = _zoomed(pixels, (width, height), (x0, y0, box_w, box_h))
                    picture = life.apply(picture, index / max(1, frames - 1))
                    process.stdin.write(picture.tobytes())
                process.stdin.close()
                code = process.wait(timeout=FFMPEG_TIMEOUT_S)
            except BrokenPipeError:
                process.wait(timeout=30)
                partial.unlink(missing_ok=True)
                raise ProviderError(f"ffmpeg stopped while encoding the clip: {_stderr_tail(stderr)}") from None
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                partial.unlink(missing_ok=True)
                raise ProviderError(f"ffmpeg took over {FFMPEG_TIMEOUT_S} s encoding the clip") from None
            except BaseException:  # cancellation, or anything else: never leave ffmpeg running
                process.kill()
                process.wait()
                partial.unlink(missing_ok=True)
                raise
            if code != 0:
                partial.unlink(missing_ok=True)
                raise ProviderError(f"ffmpeg failed ({code}) encoding the clip: {_stderr_tail(stderr)}")
        os.replace(partial, out)
        elapsed = time.monotonic() - started
        return Result(value=out, usage={"model": "offline", "frames": frames, "fps": fps, "size": [width, height],
                                        "movement": movement, "render_s": round(elapsed, 3),
                                        "render_fps": round(frames / elapsed, 1) if elapsed else None})
