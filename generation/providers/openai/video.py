"""The `openai` video provider: a shot's clip from `videos.create` with its first frame as input reference
(or `videos.remix` of the shot's previous clip when the shot was edited), polled to the end, downloaded,
then conformed with ffmpeg to the job's size, fps and the shot's exact duration (a shorter render slowed
to fit, a longer one cut).

Settings (the `openai` credential, client.SETTINGS_SCHEMA): video_model (default sora-2), video_poll_s (first
wait between status checks, growing 1.5x up to ten times that), video_deadline_s (longest wait for one clip),
prices.per_video_second (the cost: seconds rendered x price; the API renders 4, 8 or 12 s a clip).

The Result's usage carries `remote_video_id`; the clip stage keeps it with the clip, and passes it back as
the shot's `previous_remote_video_id` when the shot is edited, so the endpoint remixes what it made.

A recurring character (the template's `recurring_character`; providers.base.MAKE_CHARACTER): the first shot's
render is uploaded to `videos.create_character` once it is conformed (last, so a failure before it makes none),
and the character goes back in usage["character"] for the clip stage to keep with the clip. Each later shot's
`videos.create` names it as the API's guide says: its id in the request's `characters` (which the SDK's
create() has no argument for, hence extra_body; a multipart field `characters[][id]`) and its name verbatim in
the prompt. prices.per_character is what making one costs (default 0).
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import ClassVar

from PIL import Image

from config.media import MediaError, ffmpeg_exe, probe, tool_run
from generation.error_codes import GenerationErrors
from generation.providers.base import (
    MAKE_CHARACTER,
    RECURRING_CHARACTER,
    ProviderError,
    ProviderRefused,
    Result,
    StageContext,
)
from generation.providers.openai.client import (
    REFUSAL_CODES,
    api_seconds,
    call_with_retries,
    openai_client,
    price,
    setting_number,
)
from generation.providers.openai.image import image_fit, shot_prompt

log = logging.getLogger(__name__)
# The SDK marks its video methods deprecated (OpenAI's own Sora API has an end date); servers that speak
# the same API stay, so the warning would only fill worker logs.
warnings.filterwarnings("ignore", message="The Sora API", category=DeprecationWarning)

DEFAULT_VIDEO_MODEL = "sora-2"
DEFAULT_POLL_S = 2.0
DEFAULT_DEADLINE_S = 900.0
POLL_GROWTH = 1.5
POLL_MAX_FACTOR = 10
# The sizes videos.create takes (width, height); its seconds are client.VIDEO_SECONDS.
VIDEO_SIZES = ((1280, 720), (720, 1280), (1792, 1024), (1024, 1792))
CONFORM_TIMEOUT_S = 600
PREVIOUS_KEY = "previous_remote_video_id"
CHARACTER_NAME_MAX = 80  # what videos.create_character takes


def character_name(ctx: StageContext) -> str:
    """The job's character's display name: the later shots' prompts name it verbatim, so it is one word the
    prompt cannot mean otherwise, and the job's own."""
    return f"Character-{''.join(ch for ch in ctx.job_id if ch.isalnum())[:12] or 'job'}"[:CHARACTER_NAME_MAX]


def api_video_size(size: tuple[int, int]) -> tuple[int, int]:
    """The API size with the nearest aspect ratio; of equals, the smallest (cheapest) one."""
    width, height = size
    return min(VIDEO_SIZES, key=lambda s: (round(abs(math.log(s[0] / s[1]) - math.log(width / height)), 3),
                                          s[0] * s[1]))


class OpenAIVideo:
    """VideoProvider over the videos endpoints: create (or remix), poll, download, conform."""

    name: ClassVar[str] = "openai"
    queue: ClassVar[str] = "llm"
    # The clip stage passes an edited shot's previous remote video id as shot["previous_remote_video_id"].
    remixes_previous: ClassVar[bool] = True
    # It makes a recurring character from the first clip and features it in the later ones (providers.base).
    makes_characters: ClassVar[bool] = True

    def clip(self, *, shot: dict, style: dict, frame: Path, fps: int, out: Path, ctx: StageContext) -> Result:
        settings = ctx.settings
        model = settings.get("video_model") or DEFAULT_VIDEO_MODEL
        duration_s = float(shot["duration_s"])
        seconds = api_seconds(duration_s)
        width, height = api_video_size(ctx.size)
        prompt = shot_prompt(shot, style, ctx, "clip")
        what = f"openai video (shot {shot.get('number', '?')})"
        previous = shot.get(PREVIOUS_KEY)
        character = shot.get(RECURRING_CHARACTER)  # {"id", "name"}: the job's character, made from shot 1's clip
        if character:
            prompt = f"{prompt} Featuring {character['name']}."
        referred = None
        attempts = 0
        with openai_client(settings) as client:
            video = None
            if previous:
                try:
                    video, attempts = call_with_retries(lambda: client.videos.remix(previous, prompt=prompt),
                                                        settings=settings, ctx=ctx, what=f"{what} remix")
                except ProviderError as exc:
                    if exc.upstream_status != 404:
                        raise
                    # The endpoint no longer has it (expired, another base_url): render afresh.
                    log.info("%s: previous video %s is gone; creating a new one", what, previous)
                    previous = None
            if video is None:
                reference = ctx.work_dir / f"reference-{width}x{height}.png"
                with Image.open(frame) as image:
                    image_fit(image, (width, height)).save(reference, format="PNG")
                upload = ("frame.png", reference.read_bytes(), "image/png")
                extra = {"extra_body": {"characters": [{"id": character["id"]}]}} if character else {}
                video, attempts = call_with_retries(
                    lambda: client.videos.create(prompt=prompt, model=model, seconds=str(seconds),
                                                 size=f"{width}x{height}", input_reference=upload, **extra),
                    settings=settings, ctx=ctx, what=what)
                referred = character
            video = self._wait(client, video, settings=settings, ctx=ctx, what=what)
            remote = ctx.work_dir / "remote.mp4"
            content, _ = call_with_retries(lambda: client.videos.download_content(video.id, variant="video"),
                                           settings=settings, ctx=ctx, what=f"{what} download")
            remote.write_bytes(content.content)
        rendered = _seconds_of(video, seconds)
        clip_conform(remote, Path(out), size=ctx.size, fps=fps, duration_s=duration_s, what=what)
        usage = {"model": model, "remote_video_id": video.id, "method": "remix" if previous else "create",
                 "seconds": rendered, "api_size": [width, height], "size": list(ctx.size), "fps": fps,
                 "duration_s": duration_s, "attempts": attempts}
        if previous:
            usage["remixed_from"] = previous
        cost = price(settings, "per_video_second") * rendered
        if shot.get(MAKE_CHARACTER):
            usage["character"] = self._make_character(remote, video_id=video.id, settings=settings, ctx=ctx,
                                                      what=what)
            cost += price(settings, "per_character")
        elif referred:
            usage["character"] = {"id": referred["id"], "name": referred["name"]}
        return Result(value=Path(out), cost=cost, usage=usage)

    @staticmethod
    def _make_character(source: Path, *, video_id: str, settings: dict, ctx: StageContext, what: str) -> dict:
        """The job's character, made from the endpoint's own render of the first shot (`source`, an MP4)."""
        name = character_name(ctx)
        upload = ("character.mp4", source.read_bytes(), "video/mp4")
        with openai_client(settings) as client:
            made, attempts = call_with_retries(lambda: client.videos.create_character(name=name, video=upload),
                                               settings=settings, ctx=ctx, what=f"{what} character")
        if not getattr(made, "id", None):
            raise ProviderError(f"{what} character: the endpoint's answer names no character",
                                code=GenerationErrors.PROVIDER_BAD_ANSWER)
        return {"id": made.id, "name": made.name or name, "made_from": video_id, "attempts": attempts}

    @staticmethod
    def _wait(client, video, *, settings: dict, ctx: StageContext, what: str):
        """Poll until the render ends: completed (returned), failed (raised with its code), or the deadline."""
        interval = setting_number(settings, "video_poll_s", DEFAULT_POLL_S)
        longest = interval * POLL_MAX_FACTOR
        deadline = time.monotonic() + setting_number(settings, "video_deadline_s", DEFAULT_DEADLINE_S)
        while video.status in ("queued", "in_progress"):
            if ctx.is_cancelled():
                raise ProviderError(f"{what}: cancelled while rendering", code=GenerationErrors.JOB_CANCELLED)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProviderError(f"{what}: not rendered within video_deadline_s "
                                    f"({video.status}, {video.progress or 0}%)",
                                    code=GenerationErrors.PROVIDER_DEADLINE)
            time.sleep(min(interval, left))
            interval = min(interval * POLL_GROWTH, longest)
            video_id = video.id
            video, _ = call_with_retries(lambda: client.videos.retrieve(video_id), settings=settings, ctx=ctx,
                                         what=f"{what} status")
        if video.status == "completed":
            return video
        error = getattr(video, "error", None)
        code = getattr(error, "code", None) or ""
        if code in REFUSAL_CODES:
            raise ProviderRefused(f"{what}: refused by the endpoint (content policy)")
        raise ProviderError(f"{what}: the render {video.status}" + (f" ({code[:80]})" if code else ""),
                            code=GenerationErrors.PROVIDER_JOB_FAILED)


def _seconds_of(video, asked: int) -> int:
    try:
        return int(float(video.seconds))
    except (TypeError, ValueError):
        return asked


def clip_conform(source: Path, out: Path, *, size: tuple[int, int], fps: int, duration_s: float, what: str) -> Path:
    """`source` as an H.264 MP4 of exactly `size`, `fps` and round(duration_s * fps) frames: scaled to cover
    and centre-cropped, slowed down when the render is shorter, no audio (compose mixes its own)."""
    width, height = size
    frames = max(1, round(duration_s * fps))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        rendered_s = float(probe(source).get("duration_s") or 0)
        # A render shorter than the shot is slowed to fit: held still, its tail would be a frozen picture
        # (which the review refuses from 2 s); a longer one is cut. tpad only covers rounding.
        stretch = f"setpts={duration_s / rendered_s:.6f}*PTS," if 0 < rendered_s < duration_s else ""
        filters = (f"{stretch}scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},"
                   f"setsar=1,fps={fps},tpad=stop_mode=clone:stop_duration=1")
        tool_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", str(source), "-vf", filters,
                  "-frames:v", str(frames), "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                  "-pix_fmt", "yuv420p", "-r", str(fps), "-movflags", "+faststart", "-f", "mp4", str(out)],
                 timeout=CONFORM_TIMEOUT_S)
    except MediaError as exc:
        log.warning("%s: the downloaded video could not be converted: %s", what, exc)
        raise ProviderError(f"{what}: the endpoint's video could not be read",
                            code=GenerationErrors.PROVIDER_BAD_ANSWER) from None
    return out
