"""OfflineImage: a shot's first frame painted from its description: the setting and subject its words name (the
scene vocabulary in common.py, English or Chinese), in the style's palette, framed by the shot type."""
from __future__ import annotations

import math
import random
import re
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from generation.error_codes import GenerationErrors
from generation.providers.base import REFERENCE_ASSET, ProviderError, Result, StageContext
from generation.providers.offline.common import (
    SETTINGS,
    SUBJECTS,
    TIMES,
    prompt_of,
    shot_seed,
    vocabulary_pick,
    words_of,
)

SUPERSAMPLE = 2  # frames are painted at this multiple of ctx.size and downsampled (anti-aliasing)
# A reference photo whose border varies less than this (per channel, 0-255) is taken as shot on a plain backdrop.
REFERENCE_BACKDROP_SPREAD = 14.0

DEFAULT_PALETTE = ["#8fb3d9", "#f2e6c9", "#4a6a4f", "#e0a458", "#2e3440"]
# Where a subject goes when the description names no place: the style's usual place, else the subject's.
STYLE_SETTING = {"scifi": "space", "futuristic": "skyline", "urban": "street", "nature": "forest",
                 "fantasy": "mountains", "commercial": "tabletop", "minimalist": "tabletop"}
SUBJECT_SETTING = {"bottle": "tabletop", "drink": "tabletop", "food": "tabletop", "device": "tabletop",
                   "vehicle": "street", "boat": "coast", "aircraft": "skyline", "robot": "office", "animal": "forest",
                   "animals": "field", "lantern": "lake", "plant": "room", "building": "field"}
# Subject height as a fraction of the frame height: tiny in an extreme wide shot, filling it in a close-up.
SUBJECT_SCALE = {"extreme_wide": 0.1, "wide": 0.22, "full": 0.6, "medium_wide": 0.8, "medium": 1.05,
                 "medium_close": 1.4, "close": 2.0, "extreme_close": 3.2}
# Objects are framed whole up to a close-up (a bottle filling the frame still shows its cap).
OBJECT_SCALE = {"extreme_wide": 0.12, "wide": 0.22, "full": 0.4, "medium_wide": 0.5, "medium": 0.6,
                "medium_close": 0.7, "close": 0.82, "extreme_close": 0.94}
HORIZON = {"extreme_wide": 0.62, "wide": 0.64, "full": 0.68, "medium_wide": 0.7, "medium": 0.72,
           "medium_close": 0.74, "close": 0.76, "extreme_close": 0.78}
BACKGROUND_BLUR = {"extreme_wide": 0, "wide": 0, "full": 1, "medium_wide": 2, "medium": 3, "medium_close": 5,
                   "close": 7, "extreme_close": 10}
INDOOR = {"room", "tabletop", "office", "stage"}
WATERSIDE = {"coast", "lighthouse", "lake"}
# Natural colours the palette tints (a sea stays blue-green whatever the style, so it reads as sea).
NATURAL = {"sea": (40, 96, 140), "sand": (214, 190, 140), "rock": (70, 66, 64), "grass": (88, 140, 70),
           "snow": (236, 242, 250), "wood": (120, 84, 52), "foliage": (46, 100, 60), "stone": (150, 146, 140),
           "night": (12, 16, 40), "water": (30, 80, 130), "wall": (214, 204, 188)}


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


def scene_pick(text: str, style_name: str = "") -> dict:
    """The setting, subject and time of day a description names (None where it names none)."""
    subject = vocabulary_pick(text, SUBJECTS)
    setting = (vocabulary_pick(text, SETTINGS) or SUBJECT_SETTING.get(subject) or STYLE_SETTING.get(style_name)
               or "field")
    river = setting == "lake" and bool({"river", "stream", "creek", "riverbank"} & set(words_of(text))
                                       or re.search("[河江溪]", text or ""))
    return {"setting": setting, "subject": subject, "time": vocabulary_pick(text, TIMES), "river": river}


class _Painter:
    """Draws one frame on a supersampled canvas; x in fractions of the width, y and sizes in fractions of the
    height (so circles stay round). Records the name of everything it draws in `elements`."""

    def __init__(self, size: tuple[int, int], palette, rng: random.Random, time_of_day):
        self.w, self.h = size
        self.a = self.h / self.w  # a height fraction as a width fraction
        self.p = palette
        self.rng = rng
        self.time = time_of_day
        self.dark = min(palette, key=luma)
        self.light = max(palette, key=luma)
        self.elements: list[str] = []
        self.image: Image.Image | None = None
        self.draw: ImageDraw.ImageDraw | None = None

    # --- primitives
    def tint(self, natural, index: int, amount: float = 0.35):
        color = color_mix(natural, self.p[index], amount)
        return color_mix(color, NATURAL["night"], 0.45) if self.time == "night" else color

    def xy(self, points):
        return [(x * self.w, y * self.h) for x, y in points]

    def rect(self, x0, y0, x1, y1, fill, radius: float = 0):
        box = [min(x0, x1) * self.w, min(y0, y1) * self.h, max(x0, x1) * self.w, max(y0, y1) * self.h]
        if radius:
            self.draw.rounded_rectangle(box, radius=radius * self.h, fill=fill)
        else:
            self.draw.rectangle(box, fill=fill)

    def oval(self, cx, cy, rx, ry=None, fill=None, outline=None, width=0, draw=None):
        """An ellipse centred at (cx, cy), radii in height fractions."""
        ry = rx if ry is None else ry
        (draw or self.draw).ellipse([(cx - rx * self.a) * self.w, (cy - ry) * self.h, (cx + rx * self.a) * self.w,
                                     (cy + ry) * self.h], fill=fill, outline=outline, width=width)

    def poly(self, points, fill, draw=None):
        (draw or self.draw).polygon(self.xy(points), fill=fill)

    def glow(self, shapes, color, alpha: int):
        """Translucent shapes (a beam, spotlights, glass highlights) composited over the picture."""
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for kind, args in shapes:
            if kind == "poly":
                self.poly(args, (*color, alpha), draw=draw)
            else:
                self.oval(*args, fill=(*color, alpha), draw=draw)
        self.image = Image.alpha_composite(self.image.convert("RGBA"), layer).convert("RGB")
        self.draw = ImageDraw.Draw(self.image)

    def wavy(self, y, amplitude, color, width, phase=0.0, step=60):
        points = [(x / step, y + amplitude * math.sin(x / step * 40 + phase)) for x in range(step + 1)]
        self.draw.line(self.xy(points), fill=color, width=max(1, int(width * self.h)))

    # --- sky and ground
    def sky(self, horizon: float, indoor: bool = False) -> None:
        p, rng = self.p, self.rng
        if self.time == "night":
            top, bottom = color_mix(p[4], NATURAL["night"], 0.75), color_mix(p[0], (40, 50, 90), 0.7)
            glow = (90, 100, 140)
        elif self.time in ("dawn", "dusk"):
            top, bottom = color_mix(p[0], (90, 110, 170), 0.4), color_mix(p[3], (250, 170, 110), 0.5)
            glow = (255, 200, 140)
        else:
            top, bottom = color_mix(p[0], (110, 160, 220), 0.45), color_mix(p[1], (225, 235, 245), 0.5)
            glow = (255, 250, 230)
        sun = (rng.uniform(0.15, 0.85), rng.uniform(0.1, max(0.14, horizon - 0.28)), rng.uniform(0.035, 0.06))
        w, h = max(2, self.w // 4), max(2, self.h // 4)
        y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        t = np.clip(y / max(horizon, 1e-3), 0, 1)[:, :, None]
        array = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
        array = np.broadcast_to(array, (h, w, 3)).copy()
        if not indoor:
            distance = np.sqrt(((x - sun[0]) / self.a) ** 2 + (y - sun[1]) ** 2)
            halo = np.exp(-((distance / (sun[2] * 3.0)) ** 2))[:, :, None] * 0.6
            array = array * (1 - halo) + np.asarray(glow, np.float32) * halo
        self.image = Image.fromarray(array.clip(0, 255).round().astype(np.uint8), "RGB").resize((self.w, self.h),
                                                                                               Image.BILINEAR)
        self.draw = ImageDraw.Draw(self.image)
        self.sun = sun
        if indoor:
            return
        self.elements.append("sky")
        if self.time == "night":
            for _ in range(140):
                self.oval(rng.random(), rng.random() * horizon * 0.9, rng.uniform(0.0008, 0.0022), fill=(235, 235, 255))
            self.oval(sun[0], sun[1], sun[2] * 0.8, fill=(240, 238, 220))
            self.elements += ["stars", "moon"]
        else:
            self.oval(sun[0], sun[1], sun[2], fill=color_mix(glow, (255, 255, 255), 0.5))
            self.elements.append("sun")

    def ground(self, horizon, natural, index=2, element="ground"):
        near = self.tint(natural, index, 0.3)
        self.rect(0, horizon, 1, 1, color_mix(near, self.dark, 0.15))
        for row in range(6):  # a little depth: lighter far, darker near
            y = horizon + (1 - horizon) * row / 6
            self.rect(0, y, 1, y + (1 - horizon) / 6 + 0.002, color_mix(near, self.dark, 0.05 + 0.05 * row))
        self.elements.append(element)

    def ridge(self, horizon, height, color, peaks=(3, 6), snow=False):
        x = -0.1
        while x < 1.1:
            width = self.rng.uniform(0.22, 0.45)
            peak = horizon - height * self.rng.uniform(0.6, 1.0)
            self.poly([(x, horizon + 0.002), (x + width / 2, peak), (x + width, horizon + 0.002)], color)
            if snow:
                self.poly([(x + width / 2 - width * 0.1, peak + height * 0.18), (x + width / 2, peak),
                           (x + width / 2 + width * 0.1, peak + height * 0.18)], self.tint(NATURAL["snow"], 1, 0.1))
            x += width * self.rng.uniform(0.45, 0.75)

    def sea(self, horizon, bottom=1.0):
        top_color, deep = self.tint(NATURAL["sea"], 0, 0.3), self.tint(NATURAL["water"], 2, 0.25)
        rows = 12
        for row in range(rows):
            y = horizon + (bottom - horizon) * row / rows
            color = color_mix(top_color, deep, row / rows)
            self.rect(0, y, 1, y + (bottom - horizon) / rows + 0.002, color)
            self.wavy(y + 0.004, 0.002 + 0.006 * row / rows, color_mix(color, (240, 248, 255), 0.45),
                      0.002 + 0.002 * row / rows, phase=self.rng.random() * 6.28)
        self.elements += ["sea", "waves"]

    def tree(self, x, base, height, color, trunk):
        half = height * 0.3
        self.rect(x - half * 0.12 * self.a, base - height * 0.22, x + half * 0.12 * self.a, base, trunk)
        for k in range(3):
            y0 = base - height * (0.18 + 0.26 * k)
            width = half * (1 - 0.22 * k)
            self.poly([(x - width * self.a, y0), (x, y0 - height * 0.42), (x + width * self.a, y0)], color)

    def building_row(self, horizon, heights, lit, far):
        x = -0.02
        while x < 1.02:
            width, height = self.rng.uniform(0.05, 0.11), self.rng.uniform(*heights)
            color = color_mix(far, self.dark, self.rng.uniform(0, 0.35))
            self.rect(x, horizon - height, x + width, horizon, color)
            for wy in np.arange(horizon - height + 0.02, horizon - 0.02, 0.04):
                for wx in np.arange(x + 0.008, x + width - 0.014, 0.02):
                    if self.rng.random() < lit:
                        self.rect(wx, wy, wx + 0.008, wy + 0.018, color_mix(self.p[3], (255, 230, 150), 0.5))
            x += width + self.rng.uniform(0.0, 0.015)

    # --- the sixteen settings; each returns where a subject stands (its feet's height)
    def setting(self, kind: str, horizon: float, river: bool, focus: bool) -> float:
        rng, p = self.rng, self.p
        far = color_mix(self.tint(NATURAL["rock"], 2, 0.3), self.p[0], 0.45)
        if kind in ("coast", "lighthouse"):
            self.sky(horizon)
            self.sea(horizon)
            side = rng.choice([-1, 1])
            if kind == "coast":
                self.poly([(0, 1), (0, 0.86 + rng.uniform(-0.03, 0.03)), (0.5, 0.9),
                           (1, 0.84 + rng.uniform(-0.03, 0.03)),
                           (1, 1)], self.tint(NATURAL["sand"], 1, 0.25))
                self.wavy(0.87, 0.006, (245, 250, 255), 0.004, phase=rng.random() * 6)
                self.elements.append("beach")
                return 0.94
            # A rocky headland on one side carries the lighthouse; the keeper stands on the rocks in front.
            lx = 0.5 + side * rng.uniform(0.18, 0.3)
            rock = self.tint(NATURAL["rock"], 4, 0.25)
            self.poly([(lx - 0.3 * side, 1), (lx - 0.22 * side, horizon + 0.06), (lx - 0.05, horizon - 0.02),
                       (lx + 0.08, horizon - 0.015), (lx + 0.3 * side, horizon + 0.08), (0.5 + side * 0.55, 1)], rock)
            self.poly([(0, 1), (0, 0.9), (0.4, 0.88), (0.7, 0.92), (1, 0.89), (1, 1)], color_mix(rock, self.dark, 0.3))
            self.elements.append("rocks")
            height = 0.5 if focus else 0.38
            self.lighthouse(lx, horizon - 0.015, height, side)
            return 0.95
        if kind == "forest":
            self.sky(horizon)
            self.ground(horizon, NATURAL["grass"])
            for layer in range(3):
                color = color_mix(self.tint(NATURAL["foliage"], 2, 0.35), p[0], 0.45 - 0.2 * layer)
                for _ in range(12 + 6 * layer):
                    self.tree(rng.uniform(-0.05, 1.05), horizon + 0.03 * layer,
                              rng.uniform(0.18, 0.34) * (1 + 0.3 * layer),
                              color, self.tint(NATURAL["wood"], 4, 0.3))
            self.elements.append("trees")
            return horizon + 0.14
        if kind == "mountains":
            self.sky(horizon)
            self.ridge(horizon, 0.36, far, snow=True)
            self.ridge(horizon, 0.2, color_mix(far, self.dark, 0.35))
            self.ground(horizon, NATURAL["grass"])
            self.elements += ["mountains", "snowcaps"]
            return horizon + 0.1
        if kind == "lake":
            self.sky(horizon)
            self.ridge(horizon, 0.28, far, snow=True)
            self.elements.append("mountains")
            if river:
                self.ground(horizon, NATURAL["grass"])
                water = self.tint(NATURAL["water"], 0, 0.3)
                bend = rng.uniform(-0.15, 0.15)
                self.poly([(0.48 + bend, horizon), (0.52 + bend, horizon), (0.9, 1), (0.1, 1)], water)
                for k in range(6):
                    y = horizon + (1 - horizon) * (k + 0.5) / 6
                    self.wavy(y, 0.002, color_mix(water, (255, 255, 255), 0.4), 0.002, phase=k)
                self.elements.append("river")
                return horizon + 0.12
            water = self.tint(NATURAL["water"], 0, 0.35)
            self.rect(0, horizon, 1, 0.9, water)
            for k in range(10):  # the mountains' reflection: broken horizontal strokes
                y = horizon + 0.01 + k * (0.9 - horizon) / 10
                x = rng.random()
                self.rect(x, y, x + rng.uniform(0.1, 0.3), y + 0.004, color_mix(water, self.light, 0.35))
            self.poly([(0, 1), (0, 0.88), (0.5, 0.9 + rng.uniform(-0.02, 0.02)), (1, 0.87), (1, 1)],
                      self.tint(NATURAL["grass"], 2, 0.3))
            self.elements += ["lake", "reflection", "shore"]
            return 0.95
        if kind == "desert":
            self.sky(horizon)
            sand = self.tint(NATURAL["sand"], 3, 0.25)
            self.rect(0, horizon, 1, 1, sand)
            for k in range(4):
                y = horizon + 0.05 * k
                phase = rng.random() * 6
                points = [(x / 40, y - 0.05 * (0.5 + 0.5 * math.sin(x / 40 * 6 + phase))) for x in range(41)]
                self.poly(points + [(1, 1), (0, 1)], color_mix(sand, self.dark, 0.05 + 0.07 * k))
            cx = rng.uniform(0.1, 0.9)
            cactus = self.tint(NATURAL["foliage"], 2, 0.2)
            self.rect(cx - 0.006, horizon - 0.04, cx + 0.006, horizon + 0.1, cactus, radius=0.006)
            self.rect(cx - 0.03, horizon + 0.0, cx - 0.02, horizon + 0.04, cactus, radius=0.004)
            self.elements += ["dunes", "cactus"]
            return horizon + 0.18
        if kind == "snow":
            self.sky(horizon)
            self.ridge(horizon, 0.22, color_mix(NATURAL["snow"], p[0], 0.4))
            self.ground(horizon, NATURAL["snow"], index=1, element="snowfield")
            for _ in range(10):
                x, height = rng.uniform(0, 1), rng.uniform(0.12, 0.26)
                self.tree(x, horizon + 0.04, height, self.tint(NATURAL["foliage"], 2, 0.2), NATURAL["wood"])
                self.poly([(x - height * 0.2 * self.a, horizon + 0.04 - height * 0.5),
                           (x, horizon + 0.04 - height * 0.62),
                           (x + height * 0.2 * self.a, horizon + 0.04 - height * 0.5)], NATURAL["snow"])
            for _ in range(160):
                self.oval(rng.random(), rng.random(), rng.uniform(0.002, 0.005), fill=(250, 252, 255))
            self.elements += ["snowy trees", "snowflakes"]
            return horizon + 0.16
        if kind == "street":
            self.sky(horizon - 0.1)
            vx = rng.uniform(0.4, 0.6)
            vy = horizon - 0.1
            road = self.tint((70, 72, 78), 4, 0.2)
            self.rect(0, vy, 1, 1, self.tint((120, 118, 115), 4, 0.2))
            self.poly([(vx - 0.02, vy), (vx + 0.02, vy), (1.1, 1), (-0.1, 1)], road)
            for k in range(6):  # lane markings towards the vanishing point
                t0, t1 = k / 6 + 0.02, k / 6 + 0.08
                self.poly([(vx + (0.5 - vx) * t0 - 0.002 - 0.01 * t0, vy + (1 - vy) * t0),
                           (vx + (0.5 - vx) * t0 + 0.002 + 0.01 * t0, vy + (1 - vy) * t0),
                           (vx + (0.5 - vx) * t1 + 0.002 + 0.01 * t1, vy + (1 - vy) * t1),
                           (vx + (0.5 - vx) * t1 - 0.002 - 0.01 * t1, vy + (1 - vy) * t1)], (235, 225, 190))
            for side in (-1, 1):  # façades on both sides, shrinking to the vanishing point
                for k in range(5):
                    t = 1 - k / 5
                    x_near = vx + side * (0.12 + 0.55 * t)
                    top = vy - 0.45 * t - 0.05
                    color = color_mix(self.tint((150, 130, 120), 4, 0.35), self.dark, 0.1 * k)
                    self.rect(x_near, top, x_near - side * 0.12 * t, vy + (1 - vy) * t * 0.5, color)
                    for wy in np.arange(top + 0.03, vy + (1 - vy) * t * 0.5 - 0.05, 0.06 * t + 0.02):
                        self.rect(x_near - side * 0.02 * t, wy, x_near - side * 0.06 * t, wy + 0.025 * t + 0.005,
                                  color_mix(self.p[3], (255, 230, 160), 0.5))
                lamp_x = vx + side * 0.3
                self.rect(lamp_x - 0.003, vy - 0.12, lamp_x + 0.003, vy + 0.2, (40, 40, 45))
                self.oval(lamp_x, vy - 0.125, 0.012, fill=(255, 235, 170))
            self.elements += ["road", "buildings", "windows", "streetlamps", "lane markings"]
            return 0.93
        if kind == "skyline":
            self.sky(horizon)
            self.building_row(horizon, (0.12, 0.3), 0.2, far)
            self.building_row(horizon, (0.18, 0.5), 0.45, color_mix(far, self.dark, 0.4))
            self.ground(horizon, (60, 70, 90), index=4, element="waterfront")
            self.elements += ["skyline", "windows"]
            return horizon + 0.12
        if kind in ("room", "office"):
            self.sky(horizon, indoor=True)
            wall = self.tint(NATURAL["wall"], 1, 0.4)
            self.rect(0, 0, 1, horizon, wall)
            self.rect(0, horizon, 1, 1, self.tint(NATURAL["wood"], 4, 0.3))
            for k in range(8):
                self.rect(0, horizon + k * (1 - horizon) / 8, 1, horizon + k * (1 - horizon) / 8 + 0.003,
                          color_mix(self.tint(NATURAL["wood"], 4, 0.3), self.dark, 0.3))
            wx = rng.uniform(0.12, 0.6)
            sky = color_mix(self.p[0], (150, 190, 230), 0.5) if self.time != "night" else (20, 28, 60)
            self.rect(wx, horizon * 0.2, wx + 0.26, horizon * 0.75, (235, 230, 220))
            self.rect(wx + 0.01, horizon * 0.2 + 0.02, wx + 0.25, horizon * 0.75 - 0.02, sky)
            self.rect(wx + 0.127, horizon * 0.2, wx + 0.133, horizon * 0.75, (235, 230, 220))
            self.elements += ["wall", "floor", "window"]
            if kind == "office":
                for k in range(int(12)):  # window blinds
                    y = horizon * 0.2 + 0.02 + k * (horizon * 0.55 - 0.04) / 12
                    self.rect(wx + 0.01, y, wx + 0.25, y + 0.006, (225, 225, 225))
                for dx in (0.15, 0.5, 0.85):  # desks with monitors
                    desk = self.tint((90, 90, 100), 4, 0.3)
                    self.rect(dx - 0.12, horizon + 0.02, dx + 0.12, horizon + 0.04, desk)
                    self.rect(dx - 0.11, horizon + 0.04, dx - 0.1, horizon + 0.14, desk)
                    self.rect(dx + 0.1, horizon + 0.04, dx + 0.11, horizon + 0.14, desk)
                    self.rect(dx - 0.05, horizon - 0.09, dx + 0.05, horizon - 0.01, (30, 32, 40))
                    self.rect(dx - 0.045, horizon - 0.085, dx + 0.045, horizon - 0.015,
                              color_mix(self.p[0], (120, 190, 255), 0.5))
                    self.rect(dx - 0.006, horizon - 0.01, dx + 0.006, horizon + 0.02, (30, 32, 40))
                self.elements += ["blinds", "desks", "monitors"]
            else:
                fx = wx + 0.34 if wx < 0.5 else wx - 0.2
                self.rect(fx, horizon * 0.3, fx + 0.12, horizon * 0.55, self.tint(NATURAL["wood"], 3, 0.4))
                self.rect(fx + 0.01, horizon * 0.3 + 0.015, fx + 0.11, horizon * 0.55 - 0.015, self.p[3])
                self.elements.append("picture")
            return horizon + 0.2
        if kind == "tabletop":
            self.sky(horizon, indoor=True)
            backdrop = self.tint((200, 200, 205), 1, 0.5)
            self.rect(0, 0, 1, horizon, backdrop)
            self.glow([("oval", (self.rng.uniform(0.35, 0.65), horizon * 0.5, 0.5, 0.4))], (255, 255, 255), 40)
            table = self.tint((190, 170, 150), 1, 0.35)
            self.rect(0, horizon, 1, 1, table)
            self.rect(0, horizon, 1, horizon + 0.006, color_mix(table, (255, 255, 255), 0.5))
            self.elements += ["backdrop", "table"]
            return horizon + 0.16
        if kind == "stage":
            self.sky(horizon, indoor=True)
            self.rect(0, 0, 1, horizon, (18, 14, 22))
            floor = self.tint(NATURAL["wood"], 4, 0.3)
            self.poly([(0, 1), (0.08, horizon), (0.92, horizon), (1, 1)], floor)
            curtain = color_mix(self.p[3], (150, 20, 30), 0.5)
            for side in (0, 1):
                x0 = 0 if side == 0 else 0.82
                self.rect(x0, 0, x0 + 0.18, 1, curtain)
                for k in range(5):
                    fx = x0 + 0.02 + k * 0.035
                    self.rect(fx, 0, fx + 0.008, 1, color_mix(curtain, self.dark, 0.4))
            self.rect(0, 0, 1, 0.08, curtain)
            cx = self.rng.uniform(0.35, 0.65)
            self.glow([("poly", [(cx - 0.03, 0), (cx + 0.03, 0), (cx + 0.18, 0.98), (cx - 0.18, 0.98)]),
                       ("oval", (cx, 0.97, 0.2, 0.035))], (255, 245, 200), 70)
            self.elements += ["curtains", "stage floor", "spotlight"]
            return 0.93
        if kind == "space":
            self.time = "night"
            self.sky(1.0, indoor=True)
            self.rect(0, 0, 1, 1, color_mix(p[4], NATURAL["night"], 0.6))
            for _ in range(220):
                self.oval(rng.random(), rng.random(), rng.uniform(0.0008, 0.003), fill=(240, 240, 255))
            px, py, pr = rng.uniform(0.15, 0.85), rng.uniform(0.2, 0.45), rng.uniform(0.1, 0.18)
            self.oval(px, py, pr * 1.9, pr * 0.35, outline=p[3], width=max(2, self.h // 180))
            self.oval(px, py, pr, fill=color_mix(p[2], p[3], 0.4))
            self.oval(0.5, horizon + 0.9, 1.2, 0.9, fill=color_mix(NATURAL["stone"], p[1], 0.3))
            self.elements += ["stars", "planet", "ring", "moon surface"]
            return horizon + 0.12
        if kind == "underwater":
            self.sky(horizon, indoor=True)
            w, h = self.image.size
            y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
            top, deep = np.array(self.tint((40, 140, 170), 0, 0.25), np.float32), np.array((8, 30, 60), np.float32)
            array = np.broadcast_to(top * (1 - y) + deep * y, (h, w, 3))
            self.image = Image.fromarray(array.round().astype(np.uint8), "RGB")
            self.draw = ImageDraw.Draw(self.image)
            rays = [("poly", [(x, 0), (x + 0.05, 0), (x + 0.2, 0.9), (x + 0.1, 0.9)]) for x in
                    (rng.uniform(0, 0.3), rng.uniform(0.35, 0.7))]
            self.glow(rays, (200, 240, 255), 45)
            self.poly([(0, 1), (0, 0.86), (0.3, 0.84), (0.7, 0.88), (1, 0.85), (1, 1)],
                      self.tint(NATURAL["sand"], 1, 0.3))
            for _ in range(7):
                x = rng.uniform(0.02, 0.98)
                points = [(x + 0.012 * math.sin(k * 0.9), 0.87 - k * 0.035) for k in range(9)]
                self.draw.line(self.xy(points), fill=self.tint((40, 120, 70), 2, 0.3), width=max(2, self.h // 90))
            for _ in range(25):
                self.oval(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.004, 0.012), outline=(220, 245, 255),
                          width=max(1, self.h // 500))
            self.elements += ["water", "light rays", "seabed", "seaweed", "bubbles"]
            return 0.92
        # field (and the fallback)
        self.sky(horizon)
        self.ridge(horizon, 0.08, color_mix(self.tint(NATURAL["grass"], 2, 0.3), p[0], 0.5))
        field = self.tint(NATURAL["grass"], 2, 0.35)
        self.rect(0, horizon, 1, 1, field)
        vx = rng.uniform(0.3, 0.7)
        for k in range(-8, 9):  # furrows converging on the horizon
            self.draw.line(self.xy([(vx + k * 0.01, horizon), (vx + k * 0.16, 1.0)]),
                           fill=color_mix(field, self.dark, 0.2), width=max(1, self.h // 300))
        fy = horizon + 0.06
        for k in range(14):
            self.rect(k / 13 - 0.003, fy - 0.04, k / 13 + 0.003, fy + 0.005, self.tint(NATURAL["wood"], 4, 0.2))
        self.rect(0, fy - 0.032, 1, fy - 0.026, self.tint(NATURAL["wood"], 4, 0.2))
        self.elements += ["field", "furrows", "fence"]
        return horizon + 0.14

    def lighthouse(self, x, base, height, side):
        """A tapered tower with bands, a gallery, a glowing lamp room, a cap, and its beam."""
        white, band = (238, 236, 228), color_mix(self.p[3], (190, 40, 40), 0.5)
        bottom_half, top_half = 0.05 * height / 0.4, 0.032 * height / 0.4
        top = base - height
        self.poly([(x - bottom_half * self.a * 1.4, base), (x - top_half * self.a * 1.4, top),
                   (x + top_half * self.a * 1.4, top), (x + bottom_half * self.a * 1.4, base)], white)
        for k in range(3):
            y0, y1 = base - height * (0.18 + 0.28 * k), base - height * (0.3 + 0.28 * k)
            t0, t1 = (base - y0) / height, (base - y1) / height
            h0 = (bottom_half + (top_half - bottom_half) * t0) * self.a * 1.4
            h1 = (bottom_half + (top_half - bottom_half) * t1) * self.a * 1.4
            self.poly([(x - h0, y0), (x - h1, y1), (x + h1, y1), (x + h0, y0)], band)
        lamp_h = height * 0.12
        self.rect(x - top_half * self.a * 2.0, top, x + top_half * self.a * 2.0, top + 0.008, (40, 40, 45))  # gallery
        self.rect(x - top_half * self.a * 1.1, top - lamp_h, x + top_half * self.a * 1.1, top, (255, 236, 150))
        self.poly([(x - top_half * self.a * 1.5, top - lamp_h), (x, top - lamp_h - height * 0.1),
                   (x + top_half * self.a * 1.5, top - lamp_h)], (40, 40, 45))
        lamp_y = top - lamp_h / 2
        self.glow([("poly", [(x, lamp_y - 0.004), (x - side * 1.2, lamp_y - 0.12), (x - side * 1.2, lamp_y + 0.1),
                             (x, lamp_y + 0.004)]), ("oval", (x, lamp_y, lamp_h * 0.9))], (255, 240, 180),
                  120 if self.time == "night" else 70)
        self.elements += ["lighthouse", "lamp", "beam"]

    # --- the subjects
    def subject(self, kind: str | None, shot_type: str, stand: float, horizon: float) -> None:
        if kind is None:
            return
        rng, p = self.rng, self.p
        body = color_mix(p[4], self.dark, 0.25)
        accent, rim = p[3], color_mix(self.light, (255, 255, 255), 0.4)
        h = SUBJECT_SCALE.get(shot_type, 0.6)
        o = OBJECT_SCALE.get(shot_type, 0.5)
        cx = rng.choice([1 / 3, 0.5, 2 / 3]) if h < 1.5 else rng.uniform(0.42, 0.58)
        base = stand if o < 0.8 else 0.5 + o / 2  # where an object's foot rests: the ground, or the frame's centre
        width = max(2, int(self.h * 0.004))
        if kind in ("person", "group", "robot"):
            count = 1 if kind != "group" else rng.randint(3, 5)
            spread = [0.0] if count == 1 else [(k - (count - 1) / 2) * 0.5 * min(h, 0.9) for k in range(count)]
            for k, dx in enumerate(spread):
                scale = h * (1 - 0.08 * (k % 2))
                self.figure(cx + dx * self.a * 1.2, stand, scale, body if k % 2 == 0 else color_mix(body, accent, 0.25),
                            accent, rim, robot=kind == "robot")
            self.elements.append(kind)
            return
        if kind in ("animal", "animals"):
            count = 1 if kind == "animal" else rng.randint(3, 5)
            for k in range(count):
                scale = min(h, 1.6) * (0.7 if count > 1 else 1.0) * rng.uniform(0.85, 1.0)
                x = cx + (k - (count - 1) / 2) * 0.28 * min(h, 1) if count > 1 else cx
                self.animal(x, stand + 0.02 * (k % 2), scale, body, accent, rim, facing=rng.choice([-1, 1]))
            self.elements.append(kind)
            return
        if kind == "bottle":
            bh = o
            bw = bh * 0.32
            x0, x1, y1 = cx - bw / 2 * self.a, cx + bw / 2 * self.a, base
            glass = color_mix(p[0], (170, 215, 230), 0.5)
            self.oval(cx, y1, bw * 0.75, bh * 0.04, fill=color_mix(self.dark, (0, 0, 0), 0.3))  # its shadow
            self.rect(x0, y1 - bh * 0.7, x1, y1, glass, radius=bw * 0.25)
            self.poly([(x0, y1 - bh * 0.68), (cx - bw * 0.2 * self.a, y1 - bh * 0.84),
                       (cx + bw * 0.2 * self.a, y1 - bh * 0.84), (x1, y1 - bh * 0.68)], glass)  # the shoulder
            self.rect(cx - bw * 0.2 * self.a, y1 - bh * 0.9, cx + bw * 0.2 * self.a, y1 - bh * 0.82, glass)  # neck
            self.rect(cx - bw * 0.24 * self.a, y1 - bh, cx + bw * 0.24 * self.a, y1 - bh * 0.89, accent,
                      radius=bw * 0.04)  # cap
            self.rect(x0, y1 - bh * 0.45, x1, y1 - bh * 0.03, color_mix(glass, (40, 110, 170), 0.35), radius=bw * 0.2)
            self.rect(x0, y1 - bh * 0.4, x1, y1 - bh * 0.28, color_mix(accent, self.light, 0.3))  # the label band
            self.glow([("poly", [(x0 + bw * 0.12 * self.a, y1 - bh * 0.66), (x0 + bw * 0.22 * self.a, y1 - bh * 0.66),
                                 (x0 + bw * 0.22 * self.a, y1 - bh * 0.08), (x0 + bw * 0.12 * self.a, y1 - bh * 0.08)]),
                       ("poly", [(x1 - bw * 0.2 * self.a, y1 - bh * 0.6), (x1 - bw * 0.15 * self.a, y1 - bh * 0.6),
                                 (x1 - bw * 0.15 * self.a, y1 - bh * 0.3), (x1 - bw * 0.2 * self.a, y1 - bh * 0.3)])],
                      (255, 255, 255), 150)
            self.elements += ["bottle", "cap", "glass highlights"]
            return
        if kind == "drink":
            cw, ch = o * 0.45, o * 0.5
            y0 = base - ch
            self.rect(cx - cw / 2 * self.a, y0, cx + cw / 2 * self.a, base, accent, radius=cw * 0.12)
            self.draw.arc([(cx + cw * 0.35 * self.a) * self.w, (y0 + ch * 0.2) * self.h,
                           (cx + cw * 0.85 * self.a) * self.w, (y0 + ch * 0.65) * self.h], 270, 90, fill=accent,
                          width=max(3, int(cw * self.h * 0.08)))
            for k in (-1, 0, 1):
                sx = cx + k * cw * 0.25 * self.a
                self.draw.line(self.xy([(sx, y0 - 0.02), (sx + 0.01, y0 - 0.1 * o), (sx, y0 - 0.18 * o)]), fill=rim,
                               width=max(2, int(self.h * 0.006 * o)))
            self.elements += ["cup", "steam"]
            return
        if kind == "food":
            pr = o * 0.45
            self.oval(cx, base - pr * 0.15, pr, pr * 0.28, fill=(240, 238, 232))
            self.oval(cx, base - pr * 0.17, pr * 0.8, pr * 0.2, fill=(225, 222, 215))
            crust = color_mix(accent, (200, 140, 60), 0.5)
            self.rect(cx - pr * 0.55 * self.a, base - pr * 0.75, cx + pr * 0.55 * self.a, base - pr * 0.2, crust,
                      radius=pr * 0.12)
            self.rect(cx - pr * 0.55 * self.a, base - pr * 0.5, cx + pr * 0.55 * self.a, base - pr * 0.42,
                      color_mix(self.light, (255, 255, 255), 0.4))
            self.oval(cx, base - pr * 0.82, pr * 0.1, fill=(200, 30, 40))
            self.elements += ["plate", "food"]
            return
        if kind == "device":
            dh, dw = o * 0.85, o * 0.45
            self.rect(cx - dw / 2 * self.a, base - dh, cx + dw / 2 * self.a, base, (28, 30, 36), radius=dw * 0.12)
            screen = color_mix(p[0], (110, 180, 255), 0.5)
            self.rect(cx - dw * 0.42 * self.a, base - dh * 0.94, cx + dw * 0.42 * self.a, base - dh * 0.06, screen,
                      radius=dw * 0.06)
            for row in range(3):
                for col in range(3):
                    ix = cx + (col - 1) * dw * 0.25 * self.a
                    iy = base - dh * (0.8 - row * 0.16)
                    self.rect(ix - dw * 0.07 * self.a, iy - dw * 0.07, ix + dw * 0.07 * self.a, iy + dw * 0.07,
                              color_mix(accent, self.light, 0.3 * col), radius=dw * 0.03)
            self.elements += ["device", "screen"]
            return
        if kind == "vehicle":
            vw, vh = o * 1.4, o * 0.4
            x0 = cx - vw / 2 * self.a
            self.rect(x0, base - vh * 0.8, x0 + vw * self.a, base - vh * 0.25, accent, radius=vh * 0.15)
            self.poly([(x0 + vw * 0.2 * self.a, base - vh * 0.8), (x0 + vw * 0.32 * self.a, base - vh * 1.25),
                       (x0 + vw * 0.68 * self.a, base - vh * 1.25), (x0 + vw * 0.82 * self.a, base - vh * 0.8)], accent)
            self.poly([(x0 + vw * 0.26 * self.a, base - vh * 0.82), (x0 + vw * 0.35 * self.a, base - vh * 1.17),
                       (x0 + vw * 0.65 * self.a, base - vh * 1.17), (x0 + vw * 0.76 * self.a, base - vh * 0.82)],
                      color_mix(p[0], (200, 225, 240), 0.5))
            for wx in (0.24, 0.76):
                self.oval(x0 + vw * wx * self.a, base - vh * 0.25, vh * 0.28, fill=(25, 25, 28))
                self.oval(x0 + vw * wx * self.a, base - vh * 0.25, vh * 0.12, fill=(180, 180, 185))
            self.oval(x0 + vw * 0.97 * self.a, base - vh * 0.6, vh * 0.07, fill=(255, 240, 180))
            self.elements += ["vehicle", "wheels"]
            return
        if kind == "boat":
            bw = o * 1.1
            y = horizon + 0.06 if o < 0.8 else 0.75
            self.poly([(cx - bw / 2 * self.a, y - bw * 0.08), (cx + bw / 2 * self.a, y - bw * 0.08),
                       (cx + bw * 0.36 * self.a, y + bw * 0.04), (cx - bw * 0.36 * self.a, y + bw * 0.04)], body)
            self.rect(cx - 0.003, y - bw * 0.7, cx + 0.003, y - bw * 0.08, (60, 50, 40))
            self.poly([(cx + 0.006 * self.a, y - bw * 0.68), (cx + 0.006 * self.a, y - bw * 0.12),
                       (cx + bw * 0.38 * self.a, y - bw * 0.12)], (245, 242, 232))
            self.elements += ["boat", "sail"]
            return
        if kind == "aircraft":
            half_w, half_h = min(0.6 * h, 0.75) * self.a * 1.6, 0.16 * min(h, 1.25)
            cy = 0.42 if h < 1.5 else 0.5
            self.oval(cx - half_w * 1.05, cy, half_h * 0.5, half_h * 0.2, fill=color_mix(accent, (255, 255, 255), 0.3))
            self.poly([(cx - half_w * 0.6, cy), (cx - half_w * 0.9, cy - half_h * 1.6), (cx - half_w * 0.2, cy)],
                      color_mix(body, accent, 0.4))
            self.oval(cx, cy, half_w / self.a, half_h, fill=body, outline=rim, width=width)
            self.oval(cx + half_w * 0.2, cy - half_h * 0.5, half_h * 0.5, half_h * 0.45,
                      fill=color_mix(p[0], (255, 255, 255), 0.5))
            self.elements += ["aircraft", "flame"]
            return
        if kind == "building":
            bw, bh = o * 0.9, o * 0.65
            x0 = cx - bw / 2 * self.a
            wall = self.tint(NATURAL["wall"], 4, 0.3)
            self.rect(x0, base - bh, x0 + bw * self.a, base, wall)
            self.poly([(x0 - bw * 0.06 * self.a, base - bh), (cx, base - bh - bw * 0.4),
                       (x0 + bw * 1.06 * self.a, base - bh)], color_mix(accent, (120, 40, 30), 0.4))
            self.rect(cx - bw * 0.08 * self.a, base - bh * 0.45, cx + bw * 0.08 * self.a, base,
                      self.tint(NATURAL["wood"], 4))
            for wx in (0.22, 0.78):
                self.rect(x0 + (wx - 0.1) * bw * self.a, base - bh * 0.8, x0 + (wx + 0.1) * bw * self.a,
                          base - bh * 0.55, (255, 228, 150))
            self.elements += ["building", "roof", "door"]
            return
        if kind == "plant":
            ph = o
            self.poly([(cx - ph * 0.18 * self.a, base - ph * 0.3), (cx + ph * 0.18 * self.a, base - ph * 0.3),
                       (cx + ph * 0.13 * self.a, base), (cx - ph * 0.13 * self.a, base)],
                      color_mix(accent, (170, 90, 60), 0.4))
            leaf = self.tint(NATURAL["foliage"], 2, 0.3)
            for k in range(5):
                angle = -math.pi / 2 + (k - 2) * 0.45
                tip = (cx + math.cos(angle) * ph * 0.45 * self.a, base - ph * 0.3 + math.sin(angle) * ph * 0.55)
                self.draw.line(self.xy([(cx, base - ph * 0.3), tip]), fill=leaf, width=max(2, int(ph * self.h * 0.02)))
                self.oval(tip[0], tip[1], ph * 0.09, ph * 0.05, fill=leaf)
            self.oval(cx, base - ph * 0.88, ph * 0.07, fill=accent)
            self.elements += ["plant", "pot", "leaves", "flower"]
            return
        if kind == "lantern":
            count = 1 if o >= 0.8 else rng.randint(4, 7)
            for k in range(count):
                size = o * 0.35 if count == 1 else rng.uniform(0.025, 0.06) * (1 + o)
                lx = 0.5 if count == 1 else rng.uniform(0.08, 0.92)
                ly = 0.5 if count == 1 else rng.uniform(0.15, max(0.2, horizon - 0.05))
                self.glow([("oval", (lx, ly, size * 1.2))], (255, 200, 120), 60)
                self.rect(lx - size * 0.5 * self.a, ly - size * 0.7, lx + size * 0.5 * self.a, ly + size * 0.7,
                          color_mix(accent, (255, 170, 80), 0.5), radius=size * 0.3)
                self.rect(lx - size * 0.3 * self.a, ly - size * 0.8, lx + size * 0.3 * self.a, ly - size * 0.7,
                          (60, 40, 30))
                self.oval(lx, ly + size * 0.2, size * 0.15, fill=(255, 245, 200))
            self.elements += ["lanterns" if count > 1 else "lantern", "glow"]

    def figure(self, cx, stand, h, body, accent, rim, robot=False):
        """A person (or a robot): head with eyes and hair, shoulders, body, legs; close shots show only the top."""
        top = stand - h if h < 0.9 else 0.12 + 0.05 * (h - 1)
        head_r = 0.11 * h
        head_cy = top + head_r
        body_top = head_cy + head_r * 1.1
        shoulder = 0.16 * h * 1.6
        outline = dict(outline=rim, width=max(2, int(self.h * 0.005)))
        if h < 0.9:  # legs: only while the whole figure is in frame
            for side in (-1, 1):
                self.rect(cx + side * shoulder * 0.35 * self.a - 0.05 * h * self.a, body_top + 0.5 * h,
                          cx + side * shoulder * 0.35 * self.a + 0.05 * h * self.a, stand, body)
        box = [(cx - shoulder * self.a) * self.w, body_top * self.h, (cx + shoulder * self.a) * self.w,
               (body_top + 0.55 * h) * self.h]
        if robot:
            self.draw.rounded_rectangle(box, radius=self.h * 0.02 * h, fill=body, **outline)
            self.draw.rounded_rectangle([(cx - head_r * self.a * 1.1) * self.w, (head_cy - head_r) * self.h,
                                         (cx + head_r * self.a * 1.1) * self.w, (head_cy + head_r) * self.h],
                                        radius=self.h * 0.01 * h, fill=color_mix(body, self.light, 0.2), **outline)
            for ex in (-0.45, 0.45):
                self.oval(cx + ex * head_r * self.a, head_cy - 0.05 * head_r, head_r * 0.18, fill=accent)
            self.draw.line(self.xy([(cx, head_cy - head_r), (cx, head_cy - head_r * 1.6)]), fill=rim,
                           width=max(2, int(self.h * 0.004 * h)))
            return
        self.draw.rounded_rectangle(box, radius=shoulder * self.h * 0.3, fill=body, **outline)
        self.rect(cx - shoulder * 0.9 * self.a, body_top + 0.35 * h, cx + shoulder * 0.9 * self.a, body_top + 0.4 * h,
                  accent)
        skin = color_mix((225, 185, 150), self.p[1], 0.2)
        self.oval(cx, head_cy, head_r, fill=skin, **outline)
        self.draw.chord([(cx - head_r * self.a * 1.02) * self.w, (head_cy - head_r * 1.05) * self.h,
                         (cx + head_r * self.a * 1.02) * self.w, (head_cy + head_r * 0.6) * self.h], 180, 360,
                        fill=color_mix(self.dark, (60, 40, 30), 0.5))  # hair
        for ex in (-0.38, 0.38):
            self.oval(cx + ex * head_r * self.a, head_cy + 0.1 * head_r, head_r * 0.09, fill=(30, 30, 35))

    def animal(self, cx, stand, h, body, accent, rim, facing=1):
        """A four-legged animal side-on: body, legs, head with ears and eye, tail."""
        bw, bh = 0.55 * h, 0.28 * h
        y_body = stand - bh * 1.5 if h < 0.9 else 0.3
        for leg in (-0.35, -0.15, 0.15, 0.35):
            lx = cx + leg * bw * self.a
            self.rect(lx - 0.03 * bw * self.a, y_body + bh * 0.5, lx + 0.03 * bw * self.a, y_body + bh * 1.5, body)
        self.oval(cx, y_body + bh / 2, bw / 2, bh / 2, fill=body, outline=rim, width=max(2, int(self.h * 0.004)))
        tail = cx - facing * bw * 0.5 * self.a
        self.draw.line(self.xy([(tail, y_body + bh * 0.4), (tail - facing * bw * 0.25 * self.a, y_body - bh * 0.1)]),
                       fill=body, width=max(2, int(bh * self.h * 0.25)))
        hx, hy = cx + facing * bw * 0.48 * self.a, y_body - bh * 0.15
        self.oval(hx, hy, 0.12 * h, 0.1 * h, fill=body, outline=rim, width=max(2, int(self.h * 0.004)))
        for ear in (-0.05, 0.05):
            ex = hx + ear * h * self.a
            self.poly([(ex - 0.03 * h * self.a, hy - 0.06 * h), (ex, hy - 0.17 * h),
                       (ex + 0.03 * h * self.a, hy - 0.06 * h)],
                      body)
        self.oval(hx + facing * 0.05 * h * self.a, hy - 0.02 * h, 0.018 * h, fill=accent)


def _vignette(image: Image.Image, strength: float = 0.3) -> Image.Image:
    w, h = image.size
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    mask = 1.0 - strength * np.clip((x * x + y * y) / 2.0, 0, 1) ** 1.5
    array = np.asarray(image, dtype=np.float32) * mask[:, :, None]
    return Image.fromarray(array.round().astype(np.uint8), "RGB")


def _reference_cutout(reference: Image.Image) -> Image.Image:
    """The studio's product or character image as RGBA: its own transparency where it has one; else a photo
    on a plain backdrop (the border all one colour) loses the backdrop; else it stays a whole picture."""
    image = reference.convert("RGBA")
    if reference.mode in ("RGBA", "LA", "PA") or "transparency" in reference.info:
        return image
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    if border.std(axis=0).max() < REFERENCE_BACKDROP_SPREAD:
        distance = np.sqrt(((rgb - np.median(border, axis=0)) ** 2).sum(axis=2))
        alpha = np.clip((distance - 18.0) / 22.0, 0.0, 1.0)
        # Only the backdrop goes: the near-backdrop areas that reach the border. A white label on the product
        # is the same colour but enclosed by it, so it stays.
        count, labels = cv2.connectedComponents((alpha < 1.0).astype(np.uint8), connectivity=4)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        backdrop = np.isin(labels, edge[edge > 0])
        alpha = np.where(backdrop, alpha, 1.0) * 255
        image.putalpha(Image.fromarray(alpha.round().astype(np.uint8), "L"))
    return image


def reference_composite(image: Image.Image, reference: Image.Image, shot_type: str, stand: float,
                        rng: random.Random) -> list[int]:
    """Place the reference where the painted subject would stand, at the shot type's scale (never so small
    that it cannot be recognised), on a soft shadow; returns its box (x0, y0, x1, y1) in `image`."""
    width, height = image.size
    cutout = _reference_cutout(reference)
    box_h = height * min(0.86, max(0.36, OBJECT_SCALE.get(shot_type, 0.6)))
    scale = min(box_h / cutout.height, width * 0.7 / cutout.width)
    cutout = cutout.resize((max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale))),
                           Image.LANCZOS)
    cx = width * rng.choice([0.36, 0.5, 0.64])
    base = min(height * 0.96, height * max(stand, 0.5) + cutout.height * 0.1)
    x0 = int(min(max(0, cx - cutout.width / 2), width - cutout.width))
    y0 = int(min(max(height * 0.03, base - cutout.height), height - cutout.height))
    shadow = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(shadow).ellipse([x0 + cutout.width * 0.1, y0 + cutout.height * 0.94,
                                    x0 + cutout.width * 0.9, y0 + cutout.height * 1.03], fill=(0, 0, 0, 110))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(2, height // 120)))
    canvas = Image.alpha_composite(image.convert("RGBA"), shadow)
    canvas.alpha_composite(cutout, (x0, y0))
    image.paste(canvas.convert("RGB"))
    return [x0, y0, x0 + cutout.width, y0 + cutout.height]


def frame_paint(shot: dict, style: dict, size: tuple[int, int], extra_text: str = "",
                organization_id=None, reference: Image.Image | None = None) -> tuple[Image.Image, dict]:
    """The shot's first frame, exactly `size`, and the record of what it shows ({"setting", "subject",
    "time", "elements"}); deterministic in the shot, the style, the shot's seed and the organization.
    With `reference` (the studio's product or character image) that image stands in for the painted subject,
    and the record says where ("reference": its box, and "reference" among the elements)."""
    rng = random.Random(shot_seed(shot, style, organization_id))
    palette = palette_colors(style)
    scene = scene_pick(f"{shot.get('description', '')} {extra_text}", (style or {}).get("name", ""))
    shot_type = shot.get("shot_type") if shot.get("shot_type") in SUBJECT_SCALE else "medium"
    horizon = HORIZON[shot_type] + rng.uniform(-0.04, 0.04)
    if scene["setting"] in WATERSIDE | {"desert", "snow", "field", "mountains", "skyline"}:
        horizon -= 0.08  # open views: more ground or water to stand on and look across

    big = (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE)
    painter = _Painter(big, palette, rng, scene["time"])
    has_subject = scene["subject"] is not None or reference is not None
    stand = painter.setting(scene["setting"], horizon, scene["river"], focus=not has_subject)
    image = painter.image
    blur = BACKGROUND_BLUR[shot_type] * big[1] / 1440
    if blur and has_subject:  # depth of field: cheap at a quarter size, smooth anyway
        small = image.reduce(4).filter(ImageFilter.GaussianBlur(blur / 4))
        painter.image = small.resize(big, Image.BILINEAR)
        painter.draw = ImageDraw.Draw(painter.image)
    if reference is None:
        painter.subject(scene["subject"], shot_type, stand, horizon)
    image = painter.image
    # Half the frames are mirrored, chosen by the seed: one more way two studios' animatics part.
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.reduce(SUPERSAMPLE) if image.size == big else image.resize(size, Image.LANCZOS)
    record = {"setting": scene["setting"], "subject": scene["subject"], "time": scene["time"],
              "elements": list(dict.fromkeys(painter.elements))}
    image = _vignette(image)
    if reference is not None:  # after the mirror: a product's label reads the right way round
        record["reference"] = reference_composite(image, reference, shot_type, stand, rng)
        record["subject"] = "reference"
        record["elements"].append("reference")
    return image, record


def render_frame(shot: dict, style: dict, size: tuple[int, int], extra_text: str = "",
                 organization_id=None) -> Image.Image:
    """The shot's first frame alone (see frame_paint)."""
    return frame_paint(shot, style, size, extra_text, organization_id)[0]


def _reference_open(path) -> Image.Image | None:
    """The reference asset (checked against the upload limits when it was uploaded), loaded, or None."""
    if not path:
        return None
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, Image.DecompressionBombError) as exc:
        raise ProviderError(f"offline image: the reference asset could not be read ({type(exc).__name__})",
                            code=GenerationErrors.PROVIDER_BAD_ANSWER) from None


class OfflineImage:
    """Paints the first frame of a shot: a PNG of exactly ctx.size. Result.usage["drawn"] records what it shows."""

    name = "offline"
    queue = "cpu"

    def frame(self, *, shot: dict, style: dict, out: Path, ctx: StageContext) -> Result:
        started = time.monotonic()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        reference = _reference_open(shot.get(REFERENCE_ASSET))
        image, drawn = frame_paint(shot, style, ctx.size, extra_text=prompt_of(ctx, "frame") or prompt_of(ctx, "image"),
                                   organization_id=ctx.organization_id, reference=reference)
        image.save(out, format="PNG", compress_level=6)
        return Result(value=out, usage={"model": "offline", "size": list(ctx.size), "drawn": drawn,
                                        "reference_used": reference is not None,
                                        "render_s": round(time.monotonic() - started, 3)})
