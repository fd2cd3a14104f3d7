"""OfflineText: the style by keyword scoring, a beat-structured script, and a storyboard whose shot durations sum exactly to the requested duration."""
from __future__ import annotations

import math
import random
import re

from generation.providers.base import ProviderRefused, Result, StageContext
from generation.providers.offline.common import (
    SMALL_WORDS,
    capitalized,
    digest_int,
    mid_sentence,
    prompt_of,
    text_clip,
    word_stem,
    words_of,
)
from generation.styles import STYLE_CATALOGUE
from projects import schemas

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
        text = f"{topic} {prompt_of(ctx, 'style')}".lower()
        words = set(words_of(text))
        stems = {word_stem(word) for word in words}
        scores: dict[str, float] = {}
        for name, entry in catalogue.items():
            score = 0.0
            for weight, tag in [(3.0, name)] + [(2.0, tag) for tag in entry.get("tags", [])]:
                tag = tag.lower()
                if " " in tag:
                    score += weight if tag in text else 0
                elif tag in words or word_stem(tag) in stems:
                    score += weight
            scores[name] = score
        names = list(catalogue)
        best = max(names, key=lambda name: (scores[name], -names.index(name)))
        how = "keywords"
        if scores[best] <= 0:
            best = sorted(names)[digest_int("style", topic) % len(names)]
            how = "hash"
        chosen = schemas.validate(dict(catalogue[best], name=best), schemas.STYLE, "style")
        return Result(value=chosen, usage={"model": "offline", "method": how, "score": scores.get(best, 0)})

    def script(self, *, topic: str, style: dict, duration_s: float, shots: int, ctx: StageContext) -> Result:
        duration_s, shots = _check_plan(duration_s, shots)
        topic_text = mid_sentence(text_clip(topic, 120).rstrip(".!? ")) or "our subject"
        rng = random.Random(digest_int("script", topic, style.get("name"), duration_s, shots, ctx.organization_id))
        mood = (style.get("mood") or "memorable").split(",")[0].strip() or "memorable"
        direction = prompt_of(ctx, "script")
        n_scenes = min(5, shots, max(1, math.ceil(shots / 2)))
        shots_per_scene = [shots // n_scenes + (1 if i < shots % n_scenes else 0) for i in range(n_scenes)]
        durations = _equal_split(duration_s, n_scenes, [float(n) for n in shots_per_scene])
        fill = {"topic": topic_text, "Topic": capitalized(topic_text), "mood": mood}
        scenes = []
        for beat_name, scene_duration in zip(BEAT_ORDER[n_scenes], durations):
            beat = BEATS[beat_name]
            variant = rng.randrange(2)
            narration = capitalized(beat["narration"][variant].format(**fill))
            scenes.append({
                "description": text_clip(capitalized(beat["description"][variant].format(**fill)), 2000),
                "narration": narration,
                "dialogue": text_clip(narration, 80),
                "duration_s": scene_duration,
                "visual_notes": text_clip(
                    f"{style.get('name', 'cinematic')} look: {style.get('visual_description', '')} "
                    f"Light: {beat['lighting']}." + (f" Direction: {direction}" if direction else ""), 1000),
                "audio_notes": text_clip(f"Narration in a {mood} tone; {beat['audio']}.", 1000),
            })
        title = " ".join(word if word in SMALL_WORDS and i else capitalized(word)
                         for i, word in enumerate(topic_text.split()))
        synopsis = (f"A {duration_s:g}-second {style.get('name', '')} short about {topic_text}, told in "
                    f"{n_scenes} scene{'s' if n_scenes > 1 else ''} and {shots} shot{'s' if shots > 1 else ''}; "
                    f"the mood is {style.get('mood', mood)}.")
        if direction:
            synopsis += f" Direction: {direction}"
        value = {"title": text_clip(title, 200), "synopsis": text_clip(synopsis, 2000), "scenes": scenes}
        return Result(value=schemas.validate(value, schemas.SCRIPT, "script"), usage={"model": "offline"})

    def storyboard(self, *, script: dict, style: dict, shots: int, duration_s: float, ctx: StageContext) -> Result:
        duration_s, shots = _check_plan(duration_s, shots)
        scenes = script.get("scenes") or [{"description": script.get("synopsis") or "A scene.", "narration": "",
                                           "duration_s": duration_s}]
        rng = random.Random(digest_int("storyboard", script, style.get("name"), shots, duration_s, ctx.organization_id))
        direction = prompt_of(ctx, "storyboard")

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
            scene_text = text_clip(scene.get("description") or "", 600)
            description = f"{SHOT_LABELS[shot_type]}, {SHOT_FOCUS[shot_type]}: {scene_text}"
            if direction:
                description += f" Direction: {direction}"
            composition = COMPOSITION[shot_type].format(side=rng.choice(["left", "right"]))
            beat_light = _scene_lighting(scene)
            out.append({
                "number": i + 1,
                "description": text_clip(description, 2000),
                "dialogue": text_clip(lines.get(i, ""), 120),
                "camera_movement": movements[i],
                "shot_type": shot_type,
                "duration_s": durations[i],
                "composition": text_clip(composition + (f"; {direction}" if direction else ""), 1000),
                "lighting": text_clip(f"{lighting_base}; {beat_light}" if beat_light else lighting_base, 1000),
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
