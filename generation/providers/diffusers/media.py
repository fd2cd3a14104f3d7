"""The `diffusers` image and video providers (GPU workers): a shot's first frame by text-to-image and its clip
by image-to-video, from pipelines on local disk (or the local model cache: nothing is ever downloaded),
with out-of-memory fallbacks. torch and diffusers are imported on first use, so this module imports anywhere.

Settings read from `ctx.settings` (the organization's `diffusers` credential):

    image_model_path    a saved text-to-image pipeline (AutoPipelineForText2Image; any DiffusionPipeline works)
    video_model_path    a saved image-to-video pipeline (StableVideoDiffusionPipeline, I2VGenXLPipeline, or any
                        DiffusionPipeline: it gets the keyword arguments its __call__ names, see _VIDEO_KNOBS)
    device              "cuda", "cuda:1", "cpu" ...; default cuda when available, else cpu
    dtype               "float16", "bfloat16" or "float32"; default float16 on a GPU, float32 on cpu
    steps               denoising steps; default 30 (image), 25 (video)
    max_side            the longest side the model works at; default: the model's native area (e.g. 512x512
                        for SD 1.5) at ctx's aspect ratio. The result is resized to exactly ctx.size.
    size_multiple       working sizes are multiples of this; default 8
    oom_scale           the working size's factor in the last out-of-memory attempt; default 0.5
    negative_prompt, guidance_scale                       passed when set and the pipeline takes them
    num_frames, model_fps, motion_bucket_id, noise_aug_strength, decode_chunk_size,
    min_guidance_scale, max_guidance_scale                (video) likewise; model_fps is SVD's `fps`
                        and I2VGenXL's `target_fps` conditioning, not the output's frame rate
    crf, preset         x264 quality; default 18, "medium"
    price_per_second    cost of a second of this worker's time, for Result.cost; default 0

Out of memory (torch.cuda.OutOfMemoryError, or a RuntimeError saying "out of memory"): the cache is emptied,
other cached pipelines are dropped, and the call is retried with model CPU offload (on a GPU) and attention
and VAE slicing; then once more at oom_scale of the working size (upscaled to ctx.size); then ProviderError.
"""
from __future__ import annotations

import gc
import hashlib
import inspect
import json
import logging
import math
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from config.media import ffmpeg_exe
from generation.providers.base import ProviderError, ProviderRefused, Result, StageContext

log = logging.getLogger(__name__)

DEFAULT_IMAGE_STEPS = 30
DEFAULT_VIDEO_STEPS = 25
DEFAULT_SIZE_MULTIPLE = 8
DEFAULT_OOM_SCALE = 0.5
_VIDEO_KNOBS = {"num_frames": "num_frames", "motion_bucket_id": "motion_bucket_id",
                "noise_aug_strength": "noise_aug_strength", "decode_chunk_size": "decode_chunk_size",
                "min_guidance_scale": "min_guidance_scale", "max_guidance_scale": "max_guidance_scale",
                "guidance_scale": "guidance_scale", "negative_prompt": "negative_prompt"}
_DTYPES = {"float16": "float16", "fp16": "float16", "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float32": "float32", "fp32": "float32"}


class DiffusersImage:
    """ImageProvider: the shot's first frame from its description and the style, a PNG of exactly ctx.size."""

    name: ClassVar[str] = "diffusers"
    queue: ClassVar[str] = "gpu"

    def frame(self, *, shot: dict, style: dict, out: Path, ctx: StageContext) -> Result:
        settings = ctx.settings
        loaded = _pipeline_for("image", settings, "image_model_path")
        steps = int(settings.get("steps", DEFAULT_IMAGE_STEPS))
        seed = shot_seed(shot)
        prompt = build_prompt(shot, style, (ctx.prompts or {}).get("frame"))

        def arguments(size: tuple[int, int]) -> dict:
            return {"prompt": prompt, "negative_prompt": settings.get("negative_prompt"),
                    "height": size[1], "width": size[0], "num_inference_steps": steps,
                    "guidance_scale": settings.get("guidance_scale"), "generator": _generator(seed),
                    "output_type": "pil"}

        run = _run_with_fallbacks(loaded, arguments, ctx)
        nsfw = getattr(run.output, "nsfw_content_detected", None)
        if nsfw and any(nsfw):
            raise ProviderRefused("diffusers: the model's safety checker flagged the frame")
        images = _images_of(run.output)
        if not images:
            raise ProviderError("diffusers: the pipeline returned no image")
        image = images[0].convert("RGB")
        if image.size != ctx.size:
            image = image.resize(ctx.size, _lanczos())
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")
        image.save(partial, format="PNG")
        os.replace(partial, out)
        return _result(out, run, loaded, steps, ctx, seed=seed)


class DiffusersVideo:
    """VideoProvider: the shot's clip from its first frame, an H.264 MP4 of ctx.size at fps for the shot's
    duration. The model's frames are spread over the duration, neighbours cross-faded where there are too few."""

    name: ClassVar[str] = "diffusers"
    queue: ClassVar[str] = "gpu"

    def clip(self, *, shot: dict, style: dict, frame: Path, fps: int, out: Path, ctx: StageContext) -> Result:
        settings = ctx.settings
        loaded = _pipeline_for("video", settings, "video_model_path")
        steps = int(settings.get("steps", DEFAULT_VIDEO_STEPS))
        seed = shot_seed(shot)
        prompt = build_prompt(shot, style, (ctx.prompts or {}).get("clip"), motion=True)
        try:
            first = _pil().open(frame).convert("RGB")
        except OSError as exc:
            raise ProviderError(f"diffusers: cannot read the first frame {frame}: {exc}") from exc

        def arguments(size: tuple[int, int]) -> dict:
            knobs = {name: settings.get(key) for key, name in _VIDEO_KNOBS.items()}
            if loaded.low_memory and knobs["decode_chunk_size"] is None:
                knobs["decode_chunk_size"] = 2  # SVD decodes every frame at once by default
            model_fps = settings.get("model_fps")
            return {"image": first.resize(size, _lanczos()), "prompt": prompt, "height": size[1], "width": size[0],
                    "num_inference_steps": steps, "generator": _generator(seed), "output_type": "pil",
                    "fps": model_fps, "target_fps": model_fps, **knobs}

        run = _run_with_fallbacks(loaded, arguments, ctx)
        frames = _frames_of(run.output)
        if not frames:
            raise ProviderError("diffusers: the pipeline returned no frames")
        duration_s = float(shot.get("duration_s") or 0) or 3.0
        count = max(1, round(duration_s * fps))
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part.mp4")
        encode_mp4(retime(frames, count, run.size), size=run.size, out_size=ctx.size, fps=fps, out=partial,
                   crf=int(settings.get("crf", 18)), preset=str(settings.get("preset", "medium")))
        os.replace(partial, out)
        return _result(out, run, loaded, steps, ctx, seed=seed, frames=count, model_frames=len(frames), fps=fps)


def build_prompt(shot: dict, style: dict, addition: str | None, *, motion: bool = False) -> str:
    """Most important first: CLIP text encoders read only the first 77 tokens."""
    framing = [(shot.get("shot_type") or "").replace("_", " ") + " shot" if shot.get("shot_type") else "",
               f"camera {shot['camera_movement'].replace('_', ' ')}" if motion and shot.get("camera_movement") else "",
               shot.get("lighting") or "", shot.get("composition") or ""]
    parts = [shot.get("description") or "", ", ".join(part for part in framing if part),
             (style or {}).get("visual_description") or "", addition or ""]
    return ". ".join(part.strip().rstrip(".") for part in parts if part and part.strip())


def shot_seed(shot: dict) -> int:
    """Derived from the shot's `seed` (stages.py sets the regeneration count), number and description: the same
    shot gives the same picture on any worker, a regeneration a new one, and shots of one job differ."""
    key = json.dumps([shot.get("seed"), shot.get("number"), shot.get("description")], default=str)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def working_size(target: tuple[int, int], *, native_side: int | None, max_side: int | None,
                 multiple: int = DEFAULT_SIZE_MULTIPLE) -> tuple[int, int]:
    """The size the model runs at: ctx's aspect ratio, capped by max_side (else the model's native area),
    never above the target, in multiples of `multiple`."""
    width, height = target
    if max_side:
        scale = min(1.0, max_side / max(width, height))
    elif native_side:
        scale = min(1.0, math.sqrt(native_side * native_side / (width * height)))
    else:
        scale = 1.0
    return _round_to(width * scale, multiple), _round_to(height * scale, multiple)


def retime(frames: list, count: int, size: tuple[int, int]) -> Iterator[bytes]:
    """`count` raw RGB frames of `size` spread evenly over the model's frames, cross-fading between neighbours."""
    import numpy as np

    arrays = []
    for frame in frames:
        image = _to_pil(frame).convert("RGB")
        arrays.append(np.asarray(image if image.size == tuple(size) else image.resize(size, _lanczos()),
                                 dtype=np.float32))
    last = len(arrays) - 1
    for index in range(count):
        position = index * last / (count - 1) if count > 1 else 0.0
        low = int(math.floor(position))
        high = min(low + 1, last)
        weight = position - low
        blended = arrays[low] if weight < 1e-6 else arrays[low] * (1 - weight) + arrays[high] * weight
        yield np.clip(blended + 0.5, 0, 255).astype(np.uint8).tobytes()


def encode_mp4(frames: Iterator[bytes], *, size: tuple[int, int], out_size: tuple[int, int], fps: int, out: Path,
               crf: int = 18, preset: str = "medium") -> None:
    """Pipe raw RGB frames of `size` through ffmpeg into an H.264 (yuv420p) MP4 of `out_size`."""
    filters = [] if size == tuple(out_size) else [f"scale={out_size[0]}:{out_size[1]}:flags=lanczos"]
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "-",
               "-vf", ",".join([*filters, "format=yuv420p"]), "-c:v", "libx264", "-preset", preset,
               "-crf", str(crf), "-movflags", "+faststart", "-an", str(out)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for data in frames:
            process.stdin.write(data)
        process.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg stopped early: its stderr says why
    except BaseException:
        process.kill()
        process.wait()
        raise
    stderr = process.stderr.read().decode(errors="replace")
    if process.wait() != 0:
        raise ProviderError(f"diffusers: ffmpeg failed ({process.returncode}): {stderr.strip()[-2000:]}")


# Pipelines stay loaded per (kind, path, device, dtype) for the life of the worker process.


@dataclass
class LoadedPipeline:
    pipe: Any
    path: str
    device: str
    dtype: str
    lock: threading.Lock = field(default_factory=threading.Lock)  # pipelines are not thread-safe
    low_memory: bool = False


_PIPELINES: dict[tuple, LoadedPipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def load_pipeline(kind: str, path: str, device: str, dtype: str) -> LoadedPipeline:
    key = (kind, path, device, dtype)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            pipe = _from_pretrained(kind, path, dtype)
            try:
                pipe.to(device)
            except Exception as exc:
                raise ProviderError(f"diffusers: cannot move the {kind} pipeline to {device}: {exc}") from exc
            if hasattr(pipe, "set_progress_bar_config"):
                pipe.set_progress_bar_config(disable=True)
            _PIPELINES[key] = LoadedPipeline(pipe=pipe, path=path, device=device, dtype=dtype)
        return _PIPELINES[key]


def clear_pipeline_cache() -> None:
    with _PIPELINES_LOCK:
        _PIPELINES.clear()
    _free_memory()


def _from_pretrained(kind: str, path: str, dtype: str):
    """Load from disk only (local_files_only); the one place that touches diffusers' loaders."""
    torch = _torch()
    import diffusers

    target = os.path.expanduser(path)
    if (os.path.isabs(target) or target.startswith(".")) and not os.path.exists(target):
        raise ProviderError(f"diffusers: no model at {path}")
    options = {"local_files_only": True, _dtype_argument(): getattr(torch, dtype)}
    loaders = [diffusers.AutoPipelineForText2Image, diffusers.DiffusionPipeline] if kind == "image" \
        else [diffusers.DiffusionPipeline]
    error: Exception | None = None
    for loader in loaders:
        try:
            return loader.from_pretrained(target, **options)
        except Exception as exc:  # AutoPipeline refuses pipeline classes it does not map; try the generic one
            error = exc
    raise ProviderError(f"diffusers: cannot load the {kind} pipeline from {path}: {error}") from error


def _pipeline_for(kind: str, settings: dict, path_key: str) -> LoadedPipeline:
    path = settings.get(path_key)
    if not path:
        raise ProviderError(f"diffusers: no {path_key} configured")
    device = _device(settings)
    dtype = _DTYPES.get(str(settings.get("dtype") or ("float32" if device == "cpu" else "float16")))
    if dtype is None:
        raise ProviderError(f"diffusers: unknown dtype '{settings.get('dtype')}'")
    return load_pipeline(kind, str(path), device, dtype)


@dataclass
class _Run:
    output: Any
    size: tuple[int, int]
    attempts: int
    seconds: float


class _Cancelled(Exception):
    pass


def _run_with_fallbacks(loaded: LoadedPipeline, arguments: Callable[[tuple[int, int]], dict],
                        ctx: StageContext) -> _Run:
    settings = ctx.settings
    pipe = loaded.pipe
    multiple = int(settings.get("size_multiple", DEFAULT_SIZE_MULTIPLE))
    size = working_size(ctx.size, native_side=_native_side(pipe), max_side=settings.get("max_side"),
                        multiple=multiple)
    oom_scale = float(settings.get("oom_scale", DEFAULT_OOM_SCALE))
    smaller = (_round_to(size[0] * oom_scale, multiple), _round_to(size[1] * oom_scale, multiple))
    plans = [(size, False), (size, True), (smaller, True)]
    accepted = _accepted_arguments(pipe)
    started = time.monotonic()
    for attempt, (plan_size, low_memory) in enumerate(plans, start=1):
        if ctx.is_cancelled():
            raise ProviderError("diffusers: cancelled")
        if low_memory and not loaded.low_memory:
            _enable_low_memory(loaded)
        kwargs = {name: value for name, value in arguments(plan_size).items()
                  if value is not None and (accepted is None or name in accepted)}
        if accepted is None or "callback_on_step_end" in accepted:
            kwargs["callback_on_step_end"] = _cancel_check(ctx)
        try:
            with loaded.lock:
                output = pipe(**kwargs)
        except _Cancelled:
            raise ProviderError("diffusers: cancelled") from None
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise ProviderError(f"diffusers: the pipeline failed: {type(exc).__name__}: {exc}") from exc
            log.warning("diffusers: out of memory at %sx%s (attempt %d, low memory %s): %s",
                        plan_size[0], plan_size[1], attempt, loaded.low_memory, exc)
            _free_memory(keep=loaded)
            continue
        return _Run(output=output, size=plan_size, attempts=attempt, seconds=time.monotonic() - started)
    raise ProviderError(f"diffusers: out of memory even with offload at {smaller[0]}x{smaller[1]} on {loaded.device}")


def _enable_low_memory(loaded: LoadedPipeline) -> None:
    pipe = loaded.pipe
    if not loaded.device.startswith("cpu") and hasattr(pipe, "enable_model_cpu_offload"):
        try:
            pipe.enable_model_cpu_offload(device=loaded.device)
        except Exception as exc:  # e.g. accelerate missing: slicing alone may do
            log.warning("diffusers: model CPU offload unavailable: %s", exc)
    vae = getattr(pipe, "vae", None)
    for target, method in ((pipe, "enable_attention_slicing"), (vae, "enable_slicing"), (vae, "enable_tiling")):
        if target is not None and hasattr(target, method):
            try:
                getattr(target, method)()
            except Exception as exc:
                log.info("diffusers: %s unavailable: %s", method, exc)
    loaded.low_memory = True


def _free_memory(keep: LoadedPipeline | None = None) -> None:
    """Drop the other cached pipelines (they hold GPU memory) and return freed blocks to the driver."""
    if keep is not None:
        with _PIPELINES_LOCK:
            for key in [key for key, value in _PIPELINES.items() if value is not keep]:
                del _PIPELINES[key]
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = _torch()
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _accepted_arguments(pipe) -> set[str] | None:
    """The keyword arguments the pipeline's __call__ names; None when it takes **kwargs (pass everything)."""
    try:
        parameters = inspect.signature(pipe.__call__).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return {parameter.name for parameter in parameters}


def _cancel_check(ctx: StageContext):
    def on_step_end(pipe, step, timestep, callback_kwargs):
        if ctx.is_cancelled():
            raise _Cancelled()
        return callback_kwargs
    return on_step_end


def _native_side(pipe) -> int | None:
    """The side of the square the model was trained at: sample_size latents x the VAE's scale factor."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample_size = getattr(getattr(denoiser, "config", None), "sample_size", None)
    if isinstance(sample_size, (list, tuple)):
        sample_size = max(sample_size)
    if not isinstance(sample_size, int) or sample_size <= 0:
        return None
    return sample_size * int(getattr(pipe, "vae_scale_factor", 8) or 8)


def _images_of(output) -> list:
    images = getattr(output, "images", None)
    if images is None and isinstance(output, (tuple, list)):
        images = output[0]
    return [_to_pil(image) for image in (images if images is not None else [])]


def _frames_of(output) -> list:
    """The first video of whatever the pipeline returned: .frames (list of lists, array or tensor) or .images."""
    frames = getattr(output, "frames", None)
    if frames is None:
        frames = getattr(output, "images", None)
    if frames is None and isinstance(output, (tuple, list)):
        frames = output[0]
    if frames is None:
        return []
    if hasattr(frames, "detach"):  # a torch tensor, (batch,) frames, channels, height, width
        frames = frames.detach().float().cpu().numpy()
        if frames.ndim == 5:
            frames = frames[0]
        if frames.ndim == 4 and frames.shape[1] in (1, 3, 4) and frames.shape[-1] not in (1, 3, 4):
            frames = frames.transpose(0, 2, 3, 1)
    elif hasattr(frames, "ndim") and frames.ndim == 5:  # numpy, batch, frames, height, width, channels
        frames = frames[0]
    elif isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], (list, tuple)):
        frames = frames[0]
    return [_to_pil(frame) for frame in frames]


def _to_pil(image):
    Image = _pil()
    if isinstance(image, Image.Image):
        return image
    import numpy as np

    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(array.astype(np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array)


def _result(out: Path, run: _Run, loaded: LoadedPipeline, steps: int, ctx: StageContext, **extra) -> Result:
    seconds = round(run.seconds, 3)
    price = Decimal(str(ctx.settings.get("price_per_second", 0) or 0))
    usage = {"device": loaded.device, "seconds": seconds, "steps": steps, "size": list(ctx.size),
             "working_size": list(run.size), "attempts": run.attempts, "low_memory": loaded.low_memory,
             "model": loaded.path, "dtype": loaded.dtype, **extra}
    return Result(value=out, cost=price * Decimal(str(seconds)), usage=usage)


def _generator(seed: int):
    # A CPU generator gives the same noise on every device, so a shot looks the same on any worker.
    return _torch().Generator(device="cpu").manual_seed(seed)


def _device(settings: dict) -> str:
    if settings.get("device"):
        return str(settings["device"])
    return "cuda" if _torch().cuda.is_available() else "cpu"


def _dtype_argument() -> str:
    """diffusers renamed from_pretrained's torch_dtype to dtype; use whichever this version knows."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _lanczos():
    Image = _pil()
    return Image.Resampling.LANCZOS


def _pil():
    from PIL import Image

    return Image


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ProviderError("diffusers: torch is not installed on this worker (requirements/gpu.txt)") from exc
    return torch
