"""OfflineImage: a shot's first frame painted from its description's keywords, the style palette and the shot type."""
from __future__ import annotations

import math
import random
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from generation.providers.base import Result, StageContext
from generation.providers.offline.common import prompt_of, shot_seed, word_stem, words_of

SUPERSAMPLE = 2  # frames are painted at this multiple of ctx.size and downsampled (anti-aliasing)


# --- Image: the first frame --------------------------------------------------------------------------

DEFAULT_PALETTE = ["#8fb3d9", "#f2e6c9", "#4a6a4f", "#e0a458", "#2e3440"]
SCENERY_WORDS = {
    "space": {"space", "spaceship", "galaxy", "planet", "star", "rocket", "astronaut", "cosmos", "alien", "starship",
              "moon", "orbit", "universe", "nebula", "scifi"},
    "city": {"city", "urban", "street", "downtown", "skyline", "building", "traffic", "subway", "town", "office",
             "architecture", "night"},
    "forest": {"forest", "tree", "wood", "jungle", "garden", "park", "rainforest", "nature"},
    "sea": {"ocean", "sea", "beach", "water", "river", "lake", "wave", "coast", "island", "fish", "whale", "boat"},
    "mountain": {"mountain", "peak", "hill", "alp", "canyon", "valley", "volcano", "snow", "glacier"},
    "castle": {"castle", "kingdom", "dragon", "wizard", "tower", "knight", "fantasy", "fairy", "magic"},
}
STYLE_SCENERY = {"scifi": "space", "futuristic": "city", "urban": "city", "nature": "forest", "fantasy": "castle"}
SUBJECT_WORDS = {
    "ship": {"spaceship", "rocket", "starship", "ufo", "spacecraft", "ship", "plane", "airplane"},
    "robot": {"robot", "android", "cyborg", "machine", "ai"},
    "animal": {"animal", "wildlife", "fox", "deer", "dog", "cat", "wolf", "bear", "horse", "dragon", "bird"},
    "product": {"product", "coffee", "cup", "bottle", "phone", "brand", "shop", "drink", "tea"},
}
# Subject height as a fraction of the frame height: tiny in an extreme wide shot, filling it in a close-up.
SUBJECT_SCALE = {"extreme_wide": 0.1, "wide": 0.22, "full": 0.6, "medium_wide": 0.8, "medium": 1.05,
                 "medium_close": 1.4, "close": 2.0, "extreme_close": 3.2}
HORIZON = {"extreme_wide": 0.62, "wide": 0.64, "full": 0.68, "medium_wide": 0.7, "medium": 0.72,
           "medium_close": 0.74, "close": 0.76, "extreme_close": 0.78}
BACKGROUND_BLUR = {"extreme_wide": 0, "wide": 0, "full": 1, "medium_wide": 2, "medium": 3, "medium_close": 5,
                   "close": 7, "extreme_close": 10}


def _rgb(value: str) -> tuple[int, int, int]:
    return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))


def color_mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def palette_colors(style: dict | None) -> list[tuple[int, int, int]]:
    """The style's palette as RGB tuples (the default palette when missing or malformed), at least five."""
    raw = [c for c in (style or {}).get("palette") or [] if isinstance(c, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", c)]
    colors = [_rgb(c) for c in (raw if len(raw) >= 3 else DEFAULT_PALETTE)]
    while len(colors) < 5:
        colors.append(color_mix(colors[len(colors) - 1], colors[0], 0.5))
    return colors


def _keywords(*texts: str) -> set[str]:
    return {word_stem(word) for text in texts for word in words_of(text)}


def _pick(words: set[str], table: dict[str, set[str]], default: str) -> str:
    hits = {kind: len(words & {word_stem(w) for w in vocabulary}) for kind, vocabulary in table.items()}
    best = max(hits, key=lambda kind: (hits[kind], -list(table).index(kind)))
    return best if hits[best] else default


class _Painter:
    """Draws one frame on a supersampled canvas; coordinates are fractions of the width/height."""

    def __init__(self, size: tuple[int, int], palette, rng: random.Random):
        self.w, self.h = size
        self.p = palette
        self.rng = rng
        self.dark = min(palette, key=luma)
        self.light = max(palette, key=luma)

    def base(self, sky_top, sky_bottom, ground_top, ground_bottom, horizon: float, sun: tuple, glow) -> Image.Image:
        """Sky and ground gradients with a soft glow around the sun, computed at a quarter of the canvas
        (they are smooth) and scaled up."""
        w, h = max(2, self.w // 4), max(2, self.h // 4)
        y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        sky_t = np.clip(y / max(horizon, 1e-3), 0, 1)[:, :, None]
        ground_t = np.clip((y - horizon) / max(1 - horizon, 1e-3), 0, 1)[:, :, None]
        sky = np.asarray(sky_top, np.float32) * (1 - sky_t) + np.asarray(sky_bottom, np.float32) * sky_t
        ground = np.asarray(ground_top, np.float32) * (1 - ground_t) + np.asarray(ground_bottom, np.float32) * ground_t
        array = np.where((y < horizon)[:, :, None], sky, ground)
        array = np.broadcast_to(array, (h, w, 3)).copy()
        sx, sy, sr = sun
        distance = np.sqrt(((x - sx) * self.w / self.h) ** 2 + (y - sy) ** 2)
        halo = np.exp(-((distance / (sr * 3.0)) ** 2))[:, :, None] * 0.75
        array = array * (1 - halo) + np.asarray(glow, np.float32) * halo
        small = Image.fromarray(array.clip(0, 255).round().astype(np.uint8), "RGB")
        return small.resize((self.w, self.h), Image.BILINEAR)

    def box(self, x0, y0, x1, y1):
        """Pixel box from fractions, corners ordered (Pillow rejects inverted boxes)."""
        x0, x1 = sorted((x0 * self.w, x1 * self.w))
        y0, y1 = sorted((y0 * self.h, y1 * self.h))
        return [x0, y0, x1, y1]

    def backdrop(self, kind: str, horizon: float) -> Image.Image:
        p, rng = self.p, self.rng
        far = color_mix(p[2], p[0], 0.55)  # atmospheric perspective: distant shapes fade into the sky
        near = color_mix(p[2], self.dark, 0.3)
        ground = color_mix(p[2], p[1], 0.15)
        sun = (rng.uniform(0.15, 0.85), rng.uniform(0.12, max(0.15, horizon - 0.25)), rng.uniform(0.04, 0.07))
        body = color_mix(self.light, (255, 250, 230), 0.5)
        if kind == "space":
            image = self.base(color_mix(p[2], p[0], 0.3), p[0], p[0], p[0], 1.0, sun, color_mix(p[3], p[0], 0.4))
        else:
            image = self.base(p[0], color_mix(p[1], p[0], 0.35), ground, color_mix(ground, self.dark, 0.35), horizon, sun,
                              color_mix(body, p[1], 0.3))
        draw = ImageDraw.Draw(image)
        sx, sy, sr = sun
        draw.ellipse([(sx - sr * self.h / self.w) * self.w, (sy - sr) * self.h,
                      (sx + sr * self.h / self.w) * self.w, (sy + sr) * self.h], fill=body)

        if kind == "space":
            for _ in range(220):
                x, y, r = rng.random() * self.w, rng.random() * self.h, rng.uniform(0.6, 2.2) * self.h / 720
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color_mix(self.light, (255, 255, 255), rng.random()))
            px, py, pr = rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.2)
            draw.ellipse(self.box(px - pr * 1.9 * self.h / self.w, py - pr * 0.35, px + pr * 1.9 * self.h / self.w,
                                  py + pr * 0.35), outline=p[3], width=max(2, self.h // 180))
            draw.ellipse(self.box(px - pr * self.h / self.w, py - pr, px + pr * self.h / self.w, py + pr), fill=p[4])
            draw.pieslice(self.box(-0.4, horizon, 1.4, horizon + 1.2), 180, 360, fill=color_mix(p[1], p[2], 0.6))
            return image

        if kind == "mountain" or kind == "castle":
            for layer, color in ((0, far), (1, near)):
                x = -0.1
                while x < 1.1:
                    width = rng.uniform(0.25, 0.5)
                    peak = horizon - rng.uniform(0.15, 0.35) * (1 - 0.3 * layer)
                    draw.polygon([(x * self.w, horizon * self.h), ((x + width / 2) * self.w, peak * self.h),
                                  ((x + width) * self.w, horizon * self.h)], fill=color)
                    if layer == 0:
                        cap = peak + 0.05
                        draw.polygon([((x + width / 2 - 0.03) * self.w, cap * self.h),
                                      ((x + width / 2) * self.w, peak * self.h),
                                      ((x + width / 2 + 0.03) * self.w, cap * self.h)], fill=self.light)
                    x += width * rng.uniform(0.5, 0.8)
        if kind == "castle":
            cx = rng.uniform(0.2, 0.8)
            stone = color_mix(self.dark, p[0], 0.35)
            draw.rectangle(self.box(cx - 0.12, horizon - 0.18, cx + 0.12, horizon), fill=stone)
            for tx in (-0.13, -0.04, 0.05):
                top = horizon - rng.uniform(0.28, 0.4)
                draw.rectangle(self.box(cx + tx, top, cx + tx + 0.07, horizon), fill=stone)
                draw.polygon([((cx + tx - 0.01) * self.w, top * self.h), ((cx + tx + 0.035) * self.w,
                              (top - 0.1) * self.h), ((cx + tx + 0.08) * self.w, top * self.h)], fill=p[4])
                draw.rectangle(self.box(cx + tx + 0.028, top + 0.05, cx + tx + 0.042, top + 0.09), fill=p[3])
        if kind == "city":
            x = -0.02
            while x < 1.02:
                width, height = rng.uniform(0.05, 0.11), rng.uniform(0.18, 0.5)
                color = color_mix(far if rng.random() < 0.5 else near, self.dark, rng.uniform(0, 0.3))
                draw.rectangle(self.box(x, horizon - height, x + width, horizon), fill=color)
                for wy in np.arange(horizon - height + 0.02, horizon - 0.02, 0.04):
                    for wx in np.arange(x + 0.008, x + width - 0.015, 0.02):
                        if rng.random() < 0.45:
                            draw.rectangle(self.box(wx, wy, wx + 0.009, wy + 0.018), fill=p[3])
                x += width + rng.uniform(0.0, 0.02)
        if kind == "sea":
            water_top, water_bottom = color_mix(p[0], p[2], 0.35), color_mix(p[2], self.dark, 0.5)
            draw.rectangle(self.box(0, horizon, 1, 1), fill=water_top)
            rows = 14
            for row in range(rows):
                y = horizon + (1 - horizon) * (row + 0.5) / rows
                color = color_mix(water_top, water_bottom, row / rows)
                draw.rectangle(self.box(0, y, 1, y + (1 - horizon) / rows), fill=color)
                phase, amplitude = rng.random() * 6.28, 0.004 + 0.01 * row / rows
                points = [(x * self.w / 60, (y + amplitude * math.sin(x / 4 + phase)) * self.h) for x in range(61)]
                draw.line(points, fill=color_mix(color, self.light, 0.4), width=max(1, self.h // 500))
            draw.rectangle(self.box(sx - 0.02, horizon, sx + 0.02, 1), fill=color_mix(water_top, body, 0.35))
        elif kind == "forest":
            for layer, color in ((0, far), (1, color_mix(far, near, 0.5)), (2, near)):
                base = horizon + 0.03 * layer
                for _ in range(14 + 6 * layer):
                    x, height = rng.uniform(-0.05, 1.05), rng.uniform(0.12, 0.3) * (1 + 0.35 * layer)
                    half = height * 0.28 * self.h / self.w
                    draw.rectangle(self.box(x - half * 0.1, base - height * 0.25, x + half * 0.1, base - height * 0.12),
                                   fill=color_mix(color, self.dark, 0.5))
                    draw.polygon([((x - half) * self.w, (base - height * 0.2) * self.h), (x * self.w,
                                  (base - height) * self.h), ((x + half) * self.w, (base - height * 0.2) * self.h)],
                                 fill=color)
        elif kind in ("hills", "castle", "mountain"):
            for layer in range(3):
                color = color_mix(ground, self.dark, 0.12 * layer)
                y = horizon + 0.06 * layer
                for _ in range(3):
                    cx, rx = rng.uniform(-0.2, 1.2), rng.uniform(0.3, 0.6)
                    draw.ellipse(self.box(cx - rx, y - 0.05, cx + rx, y + 0.4), fill=color)
                draw.rectangle(self.box(0, y + 0.1, 1, 1), fill=color)
        elif kind == "city":
            draw.rectangle(self.box(0, horizon + 0.05, 1, horizon + 0.07), fill=color_mix(ground, self.light, 0.3))
        return image

    def subject(self, image: Image.Image, kind: str, shot_type: str, horizon: float) -> None:
        draw = ImageDraw.Draw(image)
        p, rng = self.p, self.rng
        scale = SUBJECT_SCALE.get(shot_type, 0.6)
        cx = rng.choice([1 / 3, 0.5, 2 / 3]) if scale < 1.5 else rng.uniform(0.42, 0.58)
        body = color_mix(p[4], self.dark, 0.25)
        accent = p[3]
        rim = color_mix(self.light, (255, 255, 255), 0.4)
        h, aspect = scale, self.h / self.w  # h: subject height in frame heights; aspect converts to widths
        if kind == "ship":
            cy = 0.45 if scale < 1.5 else 0.5
            half_w, half_h = min(0.6 * h, 0.75) * aspect * 1.6, 0.16 * min(h, 1.25)
            draw.ellipse(self.box(cx - half_w * 1.15, cy - half_h * 0.2, cx - half_w * 0.7, cy + half_h * 0.2),
                         fill=color_mix(accent, (255, 255, 255), 0.3))
            draw.polygon([((cx - half_w * 0.6) * self.w, cy * self.h),
                          ((cx - half_w * 0.9) * self.w, (cy - half_h * 1.6) * self.h),
                          ((cx - half_w * 0.2) * self.w, cy * self.h)], fill=color_mix(body, accent, 0.4))
            draw.ellipse(self.box(cx - half_w, cy - half_h, cx + half_w, cy + half_h), fill=body, outline=rim,
                         width=max(2, int(self.h * 0.004)))
            draw.ellipse(self.box(cx - half_w * 0.1, cy - half_h * 1.3, cx + half_w * 0.45, cy + half_h * 0.1),
                         fill=color_mix(p[0], (255, 255, 255), 0.5))
            for k in range(3):
                wx = cx - half_w * 0.5 + k * half_w * 0.4
                draw.ellipse(self.box(wx - half_h * 0.15 * aspect, cy - half_h * 0.15, wx + half_h * 0.15 * aspect,
                                      cy + half_h * 0.15), fill=accent)
            return
        # Ground-standing subjects: feet on the ground while small, head near the top once larger than the frame.
        top = horizon + 0.08 - h if h < 0.9 else 0.12 + 0.05 * (h - 1)
        top = min(top, horizon - 0.02) if h < 0.9 else top
        if kind == "product":
            cup_w, cup_h = 0.35 * h * aspect, 0.45 * h
            y0 = top + 0.5 * h - cup_h / 2 if h >= 0.9 else horizon + 0.08 - cup_h
            draw.rectangle(self.box(cx - cup_w * 0.8, y0 + cup_h, cx + cup_w * 0.8, 1.0), fill=body)  # a plinth
            draw.rounded_rectangle(self.box(cx - cup_w / 2, y0, cx + cup_w / 2, y0 + cup_h),
                                   radius=cup_w * self.w * 0.15,
                                   fill=accent, outline=rim, width=max(2, int(self.h * 0.004)))
            draw.arc(self.box(cx + cup_w * 0.35, y0 + cup_h * 0.2, cx + cup_w * 0.85, y0 + cup_h * 0.65), 270, 90,
                     fill=accent, width=max(3, int(cup_w * self.w * 0.08)))
            draw.rectangle(self.box(cx - cup_w / 2, y0 + cup_h * 0.35, cx + cup_w / 2, y0 + cup_h * 0.5), fill=body)
            for k in (-1, 0, 1):
                sx = cx + k * cup_w * 0.25
                draw.line([(sx * self.w, (y0 - 0.02) * self.h), ((sx + 0.01) * self.w, (y0 - 0.08 * h) * self.h),
                           (sx * self.w, (y0 - 0.14 * h) * self.h)], fill=rim, width=max(2, int(self.h * 0.006 * h)))
            return
        if kind == "animal":
            bw, bh = 0.55 * h * aspect, 0.3 * h
            y_body = (top + 0.35 * h) if h >= 0.9 else (horizon + 0.08 - 0.55 * h)
            for leg in (-0.35, -0.15, 0.15, 0.35):
                lx = cx + leg * bw
                draw.rectangle(self.box(lx - 0.04 * bw, y_body + bh * 0.5, lx + 0.04 * bw, y_body + bh * 1.6),
                               fill=body)
            draw.ellipse(self.box(cx - bw / 2, y_body, cx + bw / 2, y_body + bh), fill=body, outline=rim,
                         width=max(2, int(self.h * 0.004)))
            hx = cx + bw * 0.45
            draw.ellipse(self.box(hx - 0.12 * h * aspect, y_body - bh * 0.45, hx + 0.12 * h * aspect,
                                  y_body + bh * 0.25), fill=body, outline=rim, width=max(2, int(self.h * 0.004)))
            draw.ellipse(self.box(hx + 0.03 * h * aspect, y_body - bh * 0.25, hx + 0.06 * h * aspect,
                                  y_body - bh * 0.15), fill=accent)
            return
        # A figure (or a robot): head, shoulders, body; scaled so close shots show only head and shoulders.
        head_r = 0.11 * h
        head_cx, head_cy = cx, top + head_r
        body_top = head_cy + head_r * 1.1
        shoulder = 0.16 * h * aspect * 1.6
        outline = dict(outline=rim, width=max(2, int(self.h * 0.005)))
        if kind == "robot":
            draw.rounded_rectangle(self.box(cx - shoulder, body_top, cx + shoulder * 1.0, body_top + 0.5 * h),
                                   radius=self.h * 0.02 * h, fill=body, **outline)
            draw.rounded_rectangle(self.box(head_cx - head_r * aspect * 1.1, head_cy - head_r, head_cx + head_r
                                            * aspect * 1.1, head_cy + head_r), radius=self.h * 0.01 * h,
                                   fill=color_mix(body, self.light, 0.2), **outline)
            for ex in (-0.45, 0.45):
                draw.ellipse(self.box(head_cx + (ex - 0.18) * head_r * aspect, head_cy - 0.25 * head_r,
                                      head_cx + (ex + 0.18) * head_r * aspect, head_cy + 0.1 * head_r), fill=accent)
            draw.line([(head_cx * self.w, (head_cy - head_r) * self.h),
                       (head_cx * self.w, (head_cy - head_r * 1.6) * self.h)], fill=rim,
                      width=max(2, int(self.h * 0.004 * h)))
            return
        draw.rounded_rectangle(self.box(cx - shoulder, body_top, cx + shoulder, body_top + 0.62 * h),
                               radius=shoulder * self.w * 0.6, fill=body, **outline)
        draw.rectangle(self.box(cx - shoulder * 0.9, body_top + 0.35 * h, cx + shoulder * 0.9, body_top + 0.4 * h),
                       fill=accent)
        draw.ellipse(self.box(head_cx - head_r * aspect, head_cy - head_r, head_cx + head_r * aspect,
                              head_cy + head_r), fill=color_mix(body, self.light, 0.15), **outline)


def _vignette(image: Image.Image, strength: float = 0.3) -> Image.Image:
    w, h = image.size
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    mask = 1.0 - strength * np.clip((x * x + y * y) / 2.0, 0, 1) ** 1.5
    array = np.asarray(image, dtype=np.float32) * mask[:, :, None]
    return Image.fromarray(array.round().astype(np.uint8), "RGB")


def render_frame(shot: dict, style: dict, size: tuple[int, int], extra_text: str = "",
                 organization_id=None) -> Image.Image:
    """The shot's first frame, exactly `size`, deterministic in the shot, the style, the shot's seed and
    the organization."""
    rng = random.Random(shot_seed(shot, style, organization_id))
    palette = palette_colors(style)
    words = _keywords(shot.get("description", ""), extra_text)
    scenery = _pick(words, SCENERY_WORDS, STYLE_SCENERY.get((style or {}).get("name"), "hills"))
    subject = _pick(words, SUBJECT_WORDS, "figure")
    shot_type = shot.get("shot_type") if shot.get("shot_type") in SUBJECT_SCALE else "medium"
    horizon = HORIZON[shot_type] + rng.uniform(-0.04, 0.04)

    big = (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE)
    painter = _Painter(big, palette, rng)
    image = painter.backdrop(scenery, horizon)
    blur = BACKGROUND_BLUR[shot_type] * big[1] / 1440
    if blur:  # depth of field; blurred at a quarter size (cheap, and the result is smooth anyway)
        small = image.reduce(4).filter(ImageFilter.GaussianBlur(blur / 4))
        image = small.resize(big, Image.BILINEAR)
    painter.subject(image, subject, shot_type, horizon)
    image = image.reduce(SUPERSAMPLE) if image.size == (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE) \
        else image.resize(size, Image.LANCZOS)
    return _vignette(image)


class OfflineImage:
    """Paints the first frame of a shot: a PNG of exactly ctx.size."""

    name = "offline"
    queue = "cpu"

    def frame(self, *, shot: dict, style: dict, out: Path, ctx: StageContext) -> Result:
        started = time.monotonic()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        image = render_frame(shot, style, ctx.size, extra_text=prompt_of(ctx, "frame") or prompt_of(ctx, "image"),
                             organization_id=ctx.organization_id)
        image.save(out, format="PNG", compress_level=6)
        return Result(value=out, usage={"model": "offline", "size": list(ctx.size),
                                        "render_s": round(time.monotonic() - started, 3)})
