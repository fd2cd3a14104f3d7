"""The `openai` image provider: a shot's first frame from `images.generate` (or `images.edit` when the shot
carries a reference image), at the API size nearest the job's aspect, then fitted to exactly ctx.size.

Settings (the `openai` credential, client.SETTINGS_SCHEMA): image_model (default gpt-image-1), image_quality,
prices.per_image (the Result's cost per image made, refused or failed requests cost nothing).
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
from pathlib import Path
from typing import ClassVar

from PIL import Image, ImageOps, UnidentifiedImageError

from config.error_codes import KernelErrors
from config.outbound import OutboundUrlNotAllowed, outbound_http_client, outbound_url_check
from generation.error_codes import GenerationErrors
from generation.providers.base import REFERENCE_ASSET, ProviderError, Result, StageContext
from generation.providers.openai.client import (
    DEFAULT_TIMEOUT_S,
    call_with_retries,
    openai_client,
    price,
    setting_number,
)

log = logging.getLogger(__name__)

DEFAULT_IMAGE_MODEL = "gpt-image-1"
# What images.generate and images.edit take for GPT image models (width, height).
IMAGE_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
MAX_IMAGE_BYTES = 50 * 1024 * 1024
# A shot's own reference picture (a path on the worker's disk), set by the frame stage for an edited shot.
REFERENCE_KEY = "reference_image"


def api_size(size: tuple[int, int], sizes=IMAGE_SIZES) -> tuple[int, int]:
    """The API size whose aspect ratio is nearest `size`'s (ties: the first listed), so the fit to the job's
    size crops least."""
    width, height = size
    return min(sizes, key=lambda s: abs(s[0] / s[1] - width / height))


def shot_prompt(shot: dict, style: dict, ctx: StageContext, stage: str) -> str:
    """What the model should draw (frame) or animate (clip): the shot, the style and its palette, the template's
    instruction for the stage."""
    parts = [shot.get("description", "").strip()]
    for key, label in (("shot_type", "Shot type"), ("composition", "Composition"), ("lighting", "Lighting")):
        if shot.get(key):
            parts.append(f"{label}: {str(shot[key]).replace('_', ' ')}.")
    if stage == "clip" and shot.get("camera_movement"):
        parts.append(f"Camera movement: {shot['camera_movement'].replace('_', ' ')}.")
    if style:
        look = ", ".join(str(part) for part in (style.get("name"), style.get("visual_description"),
                                                 style.get("mood")) if part)
        if look:
            parts.append(f"Style: {look}.")
        if style.get("palette"):
            parts.append(f"Palette: {', '.join(style['palette'])}.")
    if (ctx.prompts or {}).get(stage):
        parts.append(ctx.prompts[stage])
    return " ".join(part for part in parts if part)[:4000]


def image_fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` scaled to cover `size` and centre-cropped to it exactly, as RGB."""
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


class OpenAIImage:
    """ImageProvider over the images endpoints; one request per frame (plus our retries)."""

    name: ClassVar[str] = "openai"
    queue: ClassVar[str] = "llm"
    # The frame stage passes an edited shot's previous frame as shot["reference_image"].
    takes_reference_image: ClassVar[bool] = True

    def frame(self, *, shot: dict, style: dict, out: Path, ctx: StageContext) -> Result:
        settings = ctx.settings
        model = settings.get("image_model") or DEFAULT_IMAGE_MODEL
        width, height = api_size(ctx.size)
        request = {"model": model, "prompt": shot_prompt(shot, style, ctx, "frame"), "n": 1,
                   "size": f"{width}x{height}"}
        if settings.get("image_quality"):
            request["quality"] = settings["image_quality"]
        # The studio's product or character image first; else an edited shot's previous frame.
        reference = shot.get(REFERENCE_ASSET) or shot.get(REFERENCE_KEY)
        what = f"openai image (shot {shot.get('number', '?')})"
        with openai_client(settings) as client:
            if reference:
                # The reference goes at the API size, so the model keeps its framing.
                upload = _png_bytes(image_fit(_open_image(Path(reference), what), (width, height)))
                response, attempts = call_with_retries(
                    lambda: client.images.edit(image=("reference.png", upload, "image/png"), **request),
                    settings=settings, ctx=ctx, what=what)
            else:
                response, attempts = call_with_retries(lambda: client.images.generate(**request),
                                                       settings=settings, ctx=ctx, what=what)
        image = _answer_image(response, settings, what)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        image_fit(image, ctx.size).save(out, format="PNG")
        usage = {"model": model, "api_size": [width, height], "size": list(ctx.size), "images": 1,
                 "attempts": attempts, "method": "edit" if reference else "generate",
                 "reference_used": bool(shot.get(REFERENCE_ASSET))}
        return Result(value=out, cost=price(settings, "per_image"), usage=usage)


def _answer_image(response, settings: dict, what: str) -> Image.Image:
    """The first image of an images answer: inline base64, or fetched from its URL through the outbound
    guard (an endpoint may point anywhere)."""
    data = list(getattr(response, "data", None) or [])
    if not data:
        raise ProviderError(f"{what}: the answer held no image", code=GenerationErrors.PROVIDER_BAD_ANSWER)
    item = data[0]
    if item.b64_json:
        try:
            raw = base64.b64decode(item.b64_json, validate=True)
        except (binascii.Error, ValueError):
            raise ProviderError(f"{what}: the image is not valid base64",
                                code=GenerationErrors.PROVIDER_BAD_ANSWER) from None
    elif getattr(item, "url", None):
        raw = _fetch(item.url, settings, what)
    else:
        raise ProviderError(f"{what}: the answer held no image", code=GenerationErrors.PROVIDER_BAD_ANSWER)
    return _open_image(io.BytesIO(raw), what)


def _fetch(url: str, settings: dict, what: str) -> bytes:
    import httpx2

    timeout = setting_number(settings, "timeout_s", DEFAULT_TIMEOUT_S)
    try:
        outbound_url_check(url, what="image url")
        with outbound_http_client(timeout=timeout, what="image url") as http:
            answer = http.get(url)
    except OutboundUrlNotAllowed as exc:
        raise ProviderError(f"{what}: {exc.message}", code=KernelErrors.URL_NOT_ALLOWED) from None
    except httpx2.HTTPError as exc:
        raise ProviderError(f"{what}: the image could not be fetched ({type(exc).__name__})",
                            code=GenerationErrors.PROVIDER_UNREACHABLE) from None
    if answer.status_code != 200 or len(answer.content) > MAX_IMAGE_BYTES:
        raise ProviderError(f"{what}: the image URL answered HTTP {answer.status_code}",
                            code=GenerationErrors.PROVIDER_HTTP_ERROR, upstream_status=answer.status_code)
    return answer.content


def _open_image(source, what: str) -> Image.Image:
    try:
        with Image.open(source) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ProviderError(f"{what}: the image could not be read",
                            code=GenerationErrors.PROVIDER_BAD_ANSWER) from None


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
