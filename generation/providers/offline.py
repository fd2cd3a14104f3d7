"""The default provider: plans and renders a watchable animatic with nothing but Python, Pillow and ffmpeg.

Everything is deterministic: the same input (topic, shot, style, and the shot's optional integer "seed",
which the pipeline bumps to regenerate) gives the same output bytes within one organization. The
organization is part of every seed, so two studios that ask for the same topic with the same options get
animatics of their own, not byte-identical files that the rights check would flag as copies of each other
(the pipeline reuses artifacts only within an organization, so its content addressing is unaffected).
Nothing is downloaded, nothing is billed: every Result has cost 0.

- OfflineText plans: style by keyword scoring, a beat-structured script, and a storyboard whose shot
  durations sum exactly to the requested duration.
- OfflineImage paints a shot's first frame (a PNG of exactly ctx.size) from the description's keywords,
  the style palette and the shot type (the subject grows from extreme_wide to extreme_close).
- OfflineVideo animates that PNG: the camera movement moves a crop window (zoom 1 to MAX_ZOOM) over the
  frame and scales it back to ctx.size, so the PNG needs no margin; particles, a light sweep or passing
  foreground add life. Raw RGB frames are piped to ffmpeg's libx264.
- OfflineVoice speaks through espeak-ng/espeak when installed, and returns Result(None) otherwise.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from projects import schemas
from config.media import ffmpeg_exe
from generation.providers.base import ProviderError, ProviderRefused, Result, StageContext
from generation.styles import STYLE_CATALOGUE

# The deepest a camera move crops into the frame (1.2 = a window of 1/1.2 of the frame, scaled back up).
MAX_ZOOM = 1.2
CANCEL_CHECK_EVERY = 10  # frames between ctx.is_cancelled() checks
FFMPEG_TIMEOUT_S = 600
SUPERSAMPLE = 2  # frames are painted at this multiple of ctx.size and downsampled (anti-aliasing)


def _digest(*parts) -> int:
    """A stable 64-bit seed from any JSON-serialisable parts (Python's hash() is salted per process)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _clip_text(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _mid_sentence(topic: str) -> str:
    first, _, rest = topic.partition(" ")
    return f"{first.lower()} {rest}".strip() if first.lower() in LEADING_LOWER else topic


def _prompt(ctx: StageContext, key: str) -> str:
    value = (ctx.prompts or {}).get(key) or ""
    return _clip_text(str(value), 400)


def _shot_seed(shot: dict, style: dict, organization_id=None) -> int:
    """What makes a frame (and its clip's particles) unique: the shot's content, number, style and seed,
    and the organization it is made for."""
    return _digest(
        "shot", shot.get("number"), shot.get("description"), shot.get("shot_type"), shot.get("seed", 0),
        (style or {}).get("name"), (style or {}).get("palette"), organization_id,
    )


# --- Text: style, script, storyboard ---------------------------------------------------------------

# What each story beat says; {topic}, {Topic} and {mood} are filled in. Two variants each, chosen by seed.
BEATS = {
    "opening": {
        "description": ["An establishing view that introduces {topic}.", "The world of {topic} opens up before us."],
        "narration": ["This is {topic}.", "Let us begin with {topic}."],
        "audio": "music fades in softly under the first words",
        "lighting": "soft early light",
    },
    "detail": {
        "description": ["A closer look at the details that define {topic}.",
                        "We move in on what makes {topic} unique."],
        "narration": ["Look closer, and every detail of {topic} tells part of the story.",
                      "Up close, {topic} reveals what we usually miss."],
        "audio": "music builds with a light rhythm",
        "lighting": "clear, revealing light",
    },
    "turn": {
        "description": ["Something changes, and {topic} shows a new side.",
                        "A turning point: {topic} seen in a new way."],
        "narration": ["Then something changes, and {topic} shows a side we did not expect.",
                      "But there is more to {topic} than first meets the eye."],
        "audio": "music shifts, a held note marks the change",
        "lighting": "contrasting light with deeper shadows",
    },
    "peak": {
        "description": ["The high point, where {topic} is at its most {mood}.",
                        "Everything comes together around {topic}."],
        "narration": ["At its peak, {topic} feels truly {mood}.",
                      "This is the moment {topic} was building towards."],
        "audio": "music swells to its fullest",
        "lighting": "the brightest, most saturated light of the piece",
    },
    "resolution": {
        "description": ["A closing view that leaves {topic} in a lasting image.",
                        "We pull back and let {topic} settle into a final picture."],
        "narration": ["And so {topic} stays with us, long after the moment passes.",
                      "That is {topic}: worth a second look."],
        "audio": "music resolves and fades out",
        "lighting": "warm evening glow",
    },
}
BEAT_ORDER = {
    1: ["opening"],
    2: ["opening", "resolution"],
    3: ["opening", "turn", "resolution"],
    4: ["opening", "detail", "turn", "resolution"],
    5: ["opening", "detail", "turn", "peak", "resolution"],
}
STYLE_LIGHTING = {
    "cinematic": "warm golden backlight, deep contrast, soft haze",
    "documentary": "soft natural daylight, even exposure",
    "animated": "bright flat light with cheerful highlights",
    "minimalist": "soft diffuse light, gentle gradients, no harsh shadows",
    "vintage": "warm faded sunlight with soft bloom and vignette",
    "futuristic": "cool neon rim light over dark gradients",
    "nature": "golden-hour sunlight filtering through the scene",
    "urban": "mixed sodium and neon street light with reflections",
    "commercial": "bright high-key studio light, crisp highlights",
    "artistic": "expressive coloured light with painterly contrast",
    "scifi": "cool starlight cut by a warm engine glow",
    "fantasy": "magical glowing light through drifting mist",
}
SHOT_LABELS = {
    "extreme_wide": "Extreme wide shot", "wide": "Wide shot", "full": "Full shot", "medium_wide": "Medium wide shot",
    "medium": "Medium shot", "medium_close": "Medium close-up", "close": "Close-up",
    "extreme_close": "Extreme close-up",
}
SHOT_FOCUS = {
    "extreme_wide": "the vast setting", "wide": "the whole scene", "full": "the subject seen whole",
    "medium_wide": "the subject in its surroundings", "medium": "the heart of the action",
    "medium_close": "the subject's character", "close": "a telling detail", "extreme_close": "the finest detail",
}
SMALL_WORDS = {"a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "for", "with", "by", "from"}
# Leading words lowercased when the topic is used mid-sentence ("This is a fox ...").
LEADING_LOWER = SMALL_WORDS | {"how", "why", "what", "when", "where", "who", "our", "my", "your", "their", "this",
                               "these", "those", "some", "every", "one"}
COMPOSITION = {
    "extreme_wide": "vast establishing frame, subject tiny on the lower third, horizon on the upper third",
    "wide": "subject on a third line with the whole setting visible",
    "full": "subject seen whole, with room around it",
    "medium_wide": "subject from the knees up, background still readable",
    "medium": "subject from the waist up on the {side} third",
    "medium_close": "chest-up framing on the {side} third, shallow depth of field",
    "close": "the face or key detail fills the frame, background soft",
    "extreme_close": "a single detail fills the frame",
}
OPENING_MOVES = ["zoom_in", "pan_right", "tilt_down", "dolly"]
CLOSING_MOVES = ["zoom_out", "static", "pan_left", "tilt_up"]


def _equal_split(total: float, parts: int, weights: list[float] | None = None) -> list[float]:
    """`parts` durations (2 decimals) proportional to weights, summing exactly to `total` (the last absorbs
    the rounding)."""
    weights = weights or [1.0] * parts
    scale = total / sum(weights)
    values = [round(w * scale, 2) for w in weights[:-1]]
    values.append(round(total - sum(values), 2))
    return values


BREAK_BEFORE = {"and", "but", "or", "so", "then", "that", "than", "which", "where", "when", "while", "with",
                "of", "in", "on", "at", "to", "for", "from", "into", "across", "through", "every", "long", "after"}


def _split_words(text: str, parts: int) -> list[str]:
    """Split text into `parts` consecutive word groups of near-equal size (empty strings when short), cutting
    preferably after punctuation, else before a conjunction or preposition, so each subtitle reads well."""
    words = text.split()
    cuts, start = [], 0
    for index in range(1, parts):
        ideal = len(words) * index / parts
        candidates = range(start + 1, max(start + 1, len(words) - (parts - index)) + 1)

        def cost(cut: int) -> float:
            if cut >= len(words):
                return abs(cut - ideal) + 3
            if words[cut - 1][-1:] in ",.;:!?":
                return abs(cut - ideal)
            dangling = 2.0 if words[cut - 1].lower() in {"a", "an", "the"} else 0.0  # never end on an article
            return abs(cut - ideal) + dangling + (1.0 if words[cut].lower() in BREAK_BEFORE else 2.5)

        cut = min(candidates, key=lambda c: (cost(c), c)) if len(words) > start else start
        cuts.append(cut)
        start = cut
    bounds = [0] + cuts + [len(words)]
    return [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:])]


class OfflineText:
    """A deterministic planner: no model, just keyword scoring and story beats."""

    name = "offline"
    queue = "cpu"

    def style(self, *, topic: str, catalogue: dict, ctx: StageContext) -> Result:
        catalogue = catalogue or STYLE_CATALOGUE
        text = f"{topic} {_prompt(ctx, 'style')}".lower()
        words = set(_words(text))
        stems = {_stem(word) for word in words}
        scores: dict[str, float] = {}
        for name, entry in catalogue.items():
            score = 0.0
            for weight, tag in [(3.0, name)] + [(2.0, tag) for tag in entry.get("tags", [])]:
                tag = tag.lower()
                if " " in tag:
                    score += weight if tag in text else 0
                elif tag in words or _stem(tag) in stems:
                    score += weight
            scores[name] = score
        names = list(catalogue)
        best = max(names, key=lambda name: (scores[name], -names.index(name)))
        how = "keywords"
        if scores[best] <= 0:
            best = sorted(names)[_digest("style", topic) % len(names)]
            how = "hash"
        chosen = schemas.validate(dict(catalogue[best], name=best), schemas.STYLE, "style")
        return Result(value=chosen, usage={"model": "offline", "method": how, "score": scores.get(best, 0)})

    def script(self, *, topic: str, style: dict, duration_s: float, shots: int, ctx: StageContext) -> Result:
        duration_s, shots = _check_plan(duration_s, shots)
        topic_text = _mid_sentence(_clip_text(topic, 120).rstrip(".!? ")) or "our subject"
        rng = random.Random(_digest("script", topic, style.get("name"), duration_s, shots, ctx.organization_id))
        mood = (style.get("mood") or "memorable").split(",")[0].strip() or "memorable"
        direction = _prompt(ctx, "script")
        n_scenes = min(5, shots, max(1, math.ceil(shots / 2)))
        shots_per_scene = [shots // n_scenes + (1 if i < shots % n_scenes else 0) for i in range(n_scenes)]
        durations = _equal_split(duration_s, n_scenes, [float(n) for n in shots_per_scene])
        fill = {"topic": topic_text, "Topic": _capitalize(topic_text), "mood": mood}
        scenes = []
        for beat_name, scene_duration in zip(BEAT_ORDER[n_scenes], durations):
            beat = BEATS[beat_name]
            variant = rng.randrange(2)
            narration = _capitalize(beat["narration"][variant].format(**fill))
            scenes.append({
                "description": _clip_text(_capitalize(beat["description"][variant].format(**fill)), 2000),
                "narration": narration,
                "dialogue": _clip_text(narration, 80),
                "duration_s": scene_duration,
                "visual_notes": _clip_text(
                    f"{style.get('name', 'cinematic')} look: {style.get('visual_description', '')} "
                    f"Light: {beat['lighting']}." + (f" Direction: {direction}" if direction else ""), 1000),
                "audio_notes": _clip_text(f"Narration in a {mood} tone; {beat['audio']}.", 1000),
            })
        title = " ".join(word if word in SMALL_WORDS and i else _capitalize(word)
                         for i, word in enumerate(topic_text.split()))
        synopsis = (f"A {duration_s:g}-second {style.get('name', '')} short about {topic_text}, told in "
                    f"{n_scenes} scene{'s' if n_scenes > 1 else ''} and {shots} shot{'s' if shots > 1 else ''}; "
                    f"the mood is {style.get('mood', mood)}.")
        if direction:
            synopsis += f" Direction: {direction}"
        value = {"title": _clip_text(title, 200), "synopsis": _clip_text(synopsis, 2000), "scenes": scenes}
        return Result(value=schemas.validate(value, schemas.SCRIPT, "script"), usage={"model": "offline"})

    def storyboard(self, *, script: dict, style: dict, shots: int, duration_s: float, ctx: StageContext) -> Result:
        duration_s, shots = _check_plan(duration_s, shots)
        scenes = script.get("scenes") or [{"description": script.get("synopsis") or "A scene.", "narration": "",
                                           "duration_s": duration_s}]
        rng = random.Random(_digest("storyboard", script, style.get("name"), shots, duration_s, ctx.organization_id))
        direction = _prompt(ctx, "storyboard")

        # Shot durations: gently varied, establishing and closing shots a little longer, summing exactly.
        weights = [rng.uniform(0.85, 1.15) * (1.15 if i in (0, shots - 1) and shots > 2 else 1.0)
                   for i in range(shots)]
        durations = _equal_split(duration_s, shots, weights)
        if min(durations) < 0.5:
            durations = _equal_split(duration_s, shots)

        # Each shot belongs to the scene playing at its midpoint on the script's (rescaled) timeline.
        scene_total = sum(float(scene.get("duration_s") or 0) for scene in scenes) or 1.0
        bounds, acc = [], 0.0
        for scene in scenes:
            acc += float(scene.get("duration_s") or 0) / scene_total * duration_s
            bounds.append(acc)
        owner, start = [], 0.0
        for d in durations:
            middle = start + d / 2
            owner.append(next((i for i, bound in enumerate(bounds) if middle < bound), len(scenes) - 1))
            start += d
        members: dict[int, list[int]] = {}
        for shot_index, scene_index in enumerate(owner):
            members.setdefault(scene_index, []).append(shot_index)

        shot_types = _plan_shot_types(owner, rng)
        movements = _plan_movements(shots, rng)
        lighting_base = STYLE_LIGHTING.get(style.get("name"), "soft natural light")
        lines: dict[int, str] = {}
        for scene_index, shot_indexes in members.items():
            scene = scenes[scene_index]
            text = scene.get("narration") or scene.get("dialogue") or ""
            for shot_index, line in zip(shot_indexes, _split_words(text, len(shot_indexes))):
                lines[shot_index] = line

        out = []
        for i in range(shots):
            scene = scenes[owner[i]]
            shot_type = shot_types[i]
            scene_text = _clip_text(scene.get("description") or "", 600)
            description = f"{SHOT_LABELS[shot_type]}, {SHOT_FOCUS[shot_type]}: {scene_text}"
            if direction:
                description += f" Direction: {direction}"
            composition = COMPOSITION[shot_type].format(side=rng.choice(["left", "right"]))
            beat_light = _scene_lighting(scene)
            out.append({
                "number": i + 1,
                "description": _clip_text(description, 2000),
                "dialogue": _clip_text(lines.get(i, ""), 120),
                "camera_movement": movements[i],
                "shot_type": shot_type,
                "duration_s": durations[i],
                "composition": _clip_text(composition + (f"; {direction}" if direction else ""), 1000),
                "lighting": _clip_text(f"{lighting_base}; {beat_light}" if beat_light else lighting_base, 1000),
            })
        value = schemas.validate({"shots": out}, schemas.STORYBOARD, "storyboard")
        return Result(value=value, usage={"model": "offline"})


def _check_plan(duration_s, shots) -> tuple[float, int]:
    try:
        duration_s, shots = float(duration_s), int(shots)
    except (TypeError, ValueError):
        raise ProviderRefused("duration_s and shots must be numbers") from None
    if not 1 <= shots <= 50:
        raise ProviderRefused(f"shots must be between 1 and 50, not {shots}")
    if duration_s < 0.5 * shots or duration_s > 600:
        raise ProviderRefused(f"{duration_s:g} s cannot hold {shots} shots of at least 0.5 s (and at most 600 s)")
    return duration_s, shots


def _scene_lighting(scene: dict) -> str:
    notes = scene.get("visual_notes") or ""
    match = re.search(r"Light: ([^.]+)\.", notes)
    return match.group(1) if match else ""


def _plan_shot_types(owner: list[int], rng: random.Random) -> list[str]:
    """Within a scene, start wide and move closer shot by shot; the film opens extreme wide and ends wide."""
    types, position, previous_scene = [], 0, None
    for i, scene_index in enumerate(owner):
        if scene_index != previous_scene:
            position = 0 if i == 0 else rng.choice([1, 2, 3])
        elif position >= 7:
            position = rng.choice([1, 2, 3])
        else:
            position = min(7, position + rng.choice([2, 3, 3, 4]))
        previous_scene = scene_index
        types.append(schemas.SHOT_TYPES[position])
    if len(types) > 2:
        types[-1] = "wide"
    return types


def _plan_movements(shots: int, rng: random.Random) -> list[str]:
    """A varied, seeded sequence: an opening move, a shuffled cycle of all movements, a closing move."""
    order = list(schemas.CAMERA_MOVEMENTS)
    rng.shuffle(order)
    moves = [rng.choice(OPENING_MOVES)]
    cycle = [move for move in order if move != moves[0]]
    while len(moves) < shots:
        moves.append(cycle[(len(moves) - 1) % len(cycle)])
    if shots > 2:
        closing = [move for move in CLOSING_MOVES if move != moves[-2]]
        moves[-1] = rng.choice(closing)
    return moves[:shots]


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


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def palette_colors(style: dict | None) -> list[tuple[int, int, int]]:
    """The style's palette as RGB tuples (the default palette when missing or malformed), at least five."""
    raw = [c for c in (style or {}).get("palette") or [] if isinstance(c, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", c)]
    colors = [_rgb(c) for c in (raw if len(raw) >= 3 else DEFAULT_PALETTE)]
    while len(colors) < 5:
        colors.append(_mix(colors[len(colors) - 1], colors[0], 0.5))
    return colors


def _keywords(*texts: str) -> set[str]:
    return {_stem(word) for text in texts for word in _words(text)}


def _pick(words: set[str], table: dict[str, set[str]], default: str) -> str:
    hits = {kind: len(words & {_stem(w) for w in vocabulary}) for kind, vocabulary in table.items()}
    best = max(hits, key=lambda kind: (hits[kind], -list(table).index(kind)))
    return best if hits[best] else default


class _Painter:
    """Draws one frame on a supersampled canvas; coordinates are fractions of the width/height."""

    def __init__(self, size: tuple[int, int], palette, rng: random.Random):
        self.w, self.h = size
        self.p = palette
        self.rng = rng
        self.dark = min(palette, key=_luma)
        self.light = max(palette, key=_luma)

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
        far = _mix(p[2], p[0], 0.55)  # atmospheric perspective: distant shapes fade into the sky
        near = _mix(p[2], self.dark, 0.3)
        ground = _mix(p[2], p[1], 0.15)
        sun = (rng.uniform(0.15, 0.85), rng.uniform(0.12, max(0.15, horizon - 0.25)), rng.uniform(0.04, 0.07))
        body = _mix(self.light, (255, 250, 230), 0.5)
        if kind == "space":
            image = self.base(_mix(p[2], p[0], 0.3), p[0], p[0], p[0], 1.0, sun, _mix(p[3], p[0], 0.4))
        else:
            image = self.base(p[0], _mix(p[1], p[0], 0.35), ground, _mix(ground, self.dark, 0.35), horizon, sun,
                              _mix(body, p[1], 0.3))
        draw = ImageDraw.Draw(image)
        sx, sy, sr = sun
        draw.ellipse([(sx - sr * self.h / self.w) * self.w, (sy - sr) * self.h,
                      (sx + sr * self.h / self.w) * self.w, (sy + sr) * self.h], fill=body)

        if kind == "space":
            for _ in range(220):
                x, y, r = rng.random() * self.w, rng.random() * self.h, rng.uniform(0.6, 2.2) * self.h / 720
                draw.ellipse([x - r, y - r, x + r, y + r], fill=_mix(self.light, (255, 255, 255), rng.random()))
            px, py, pr = rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.2)
            draw.ellipse(self.box(px - pr * 1.9 * self.h / self.w, py - pr * 0.35, px + pr * 1.9 * self.h / self.w,
                                  py + pr * 0.35), outline=p[3], width=max(2, self.h // 180))
            draw.ellipse(self.box(px - pr * self.h / self.w, py - pr, px + pr * self.h / self.w, py + pr), fill=p[4])
            draw.pieslice(self.box(-0.4, horizon, 1.4, horizon + 1.2), 180, 360, fill=_mix(p[1], p[2], 0.6))
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
            stone = _mix(self.dark, p[0], 0.35)
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
                color = _mix(far if rng.random() < 0.5 else near, self.dark, rng.uniform(0, 0.3))
                draw.rectangle(self.box(x, horizon - height, x + width, horizon), fill=color)
                for wy in np.arange(horizon - height + 0.02, horizon - 0.02, 0.04):
                    for wx in np.arange(x + 0.008, x + width - 0.015, 0.02):
                        if rng.random() < 0.45:
                            draw.rectangle(self.box(wx, wy, wx + 0.009, wy + 0.018), fill=p[3])
                x += width + rng.uniform(0.0, 0.02)
        if kind == "sea":
            water_top, water_bottom = _mix(p[0], p[2], 0.35), _mix(p[2], self.dark, 0.5)
            draw.rectangle(self.box(0, horizon, 1, 1), fill=water_top)
            rows = 14
            for row in range(rows):
                y = horizon + (1 - horizon) * (row + 0.5) / rows
                color = _mix(water_top, water_bottom, row / rows)
                draw.rectangle(self.box(0, y, 1, y + (1 - horizon) / rows), fill=color)
                phase, amplitude = rng.random() * 6.28, 0.004 + 0.01 * row / rows
                points = [(x * self.w / 60, (y + amplitude * math.sin(x / 4 + phase)) * self.h) for x in range(61)]
                draw.line(points, fill=_mix(color, self.light, 0.4), width=max(1, self.h // 500))
            draw.rectangle(self.box(sx - 0.02, horizon, sx + 0.02, 1), fill=_mix(water_top, body, 0.35))
        elif kind == "forest":
            for layer, color in ((0, far), (1, _mix(far, near, 0.5)), (2, near)):
                base = horizon + 0.03 * layer
                for _ in range(14 + 6 * layer):
                    x, height = rng.uniform(-0.05, 1.05), rng.uniform(0.12, 0.3) * (1 + 0.35 * layer)
                    half = height * 0.28 * self.h / self.w
                    draw.rectangle(self.box(x - half * 0.1, base - height * 0.25, x + half * 0.1, base - height * 0.12),
                                   fill=_mix(color, self.dark, 0.5))
                    draw.polygon([((x - half) * self.w, (base - height * 0.2) * self.h), (x * self.w,
                                  (base - height) * self.h), ((x + half) * self.w, (base - height * 0.2) * self.h)],
                                 fill=color)
        elif kind in ("hills", "castle", "mountain"):
            for layer in range(3):
                color = _mix(ground, self.dark, 0.12 * layer)
                y = horizon + 0.06 * layer
                for _ in range(3):
                    cx, rx = rng.uniform(-0.2, 1.2), rng.uniform(0.3, 0.6)
                    draw.ellipse(self.box(cx - rx, y - 0.05, cx + rx, y + 0.4), fill=color)
                draw.rectangle(self.box(0, y + 0.1, 1, 1), fill=color)
        elif kind == "city":
            draw.rectangle(self.box(0, horizon + 0.05, 1, horizon + 0.07), fill=_mix(ground, self.light, 0.3))
        return image

    def subject(self, image: Image.Image, kind: str, shot_type: str, horizon: float) -> None:
        draw = ImageDraw.Draw(image)
        p, rng = self.p, self.rng
        scale = SUBJECT_SCALE.get(shot_type, 0.6)
        cx = rng.choice([1 / 3, 0.5, 2 / 3]) if scale < 1.5 else rng.uniform(0.42, 0.58)
        body = _mix(p[4], self.dark, 0.25)
        accent = p[3]
        rim = _mix(self.light, (255, 255, 255), 0.4)
        h, aspect = scale, self.h / self.w  # h: subject height in frame heights; aspect converts to widths
        if kind == "ship":
            cy = 0.45 if scale < 1.5 else 0.5
            half_w, half_h = min(0.6 * h, 0.75) * aspect * 1.6, 0.16 * min(h, 1.25)
            draw.ellipse(self.box(cx - half_w * 1.15, cy - half_h * 0.2, cx - half_w * 0.7, cy + half_h * 0.2),
                         fill=_mix(accent, (255, 255, 255), 0.3))
            draw.polygon([((cx - half_w * 0.6) * self.w, cy * self.h),
                          ((cx - half_w * 0.9) * self.w, (cy - half_h * 1.6) * self.h),
                          ((cx - half_w * 0.2) * self.w, cy * self.h)], fill=_mix(body, accent, 0.4))
            draw.ellipse(self.box(cx - half_w, cy - half_h, cx + half_w, cy + half_h), fill=body, outline=rim,
                         width=max(2, int(self.h * 0.004)))
            draw.ellipse(self.box(cx - half_w * 0.1, cy - half_h * 1.3, cx + half_w * 0.45, cy + half_h * 0.1),
                         fill=_mix(p[0], (255, 255, 255), 0.5))
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
                                   fill=_mix(body, self.light, 0.2), **outline)
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
                              head_cy + head_r), fill=_mix(body, self.light, 0.15), **outline)


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
    rng = random.Random(_shot_seed(shot, style, organization_id))
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
        image = render_frame(shot, style, ctx.size, extra_text=_prompt(ctx, "frame") or _prompt(ctx, "image"),
                             organization_id=ctx.organization_id)
        image.save(out, format="PNG", compress_level=6)
        return Result(value=out, usage={"model": "offline", "size": list(ctx.size),
                                        "render_s": round(time.monotonic() - started, 3)})


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
        light = max(palette, key=_luma)
        self.dark = _mix(min(palette, key=_luma), (0, 0, 0), 0.55)
        self.particles = [
            (rng.random(), rng.random(), rng.uniform(0.8, 2.6) * self.h / 720, rng.uniform(-0.08, 0.08),
             rng.uniform(-0.12, -0.02), _mix(light, (255, 255, 255), rng.uniform(0.2, 0.8)))
            for _ in range(36)
        ]
        self.glow = None
        if movement == "static":
            self.glow = self._glow_strip(_mix(light, (255, 240, 200), 0.5))
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
    preset = "veryfast"
    crf = 23

    def clip(self, *, shot: dict, style: dict, frame: Path, fps: int, out: Path, ctx: StageContext) -> Result:
        started = time.monotonic()
        width, height = ctx.size
        fps = int(fps)
        if fps <= 0:
            raise ProviderRefused(f"fps must be positive, not {fps}")
        frames = max(1, round(float(shot.get("duration_s") or 0) * fps))
        movement = shot.get("camera_movement") or "static"
        rng = random.Random(_digest("clip", _shot_seed(shot, style, ctx.organization_id), movement))
        try:
            source = Image.open(frame).convert("RGB")
        except (OSError, ValueError) as exc:
            raise ProviderError(f"cannot read the frame {frame}: {exc}") from exc
        if source.size != (width, height):
            source = _cover(source, (width, height))
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
                        picture = source.resize((width, height), Image.BILINEAR, box=(x0, y0, x0 + box_w, y0 + box_h))
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
