"""What a language-model text provider asks at each stage (the user prompt) and how it checks an answer
beyond the stage's JSON Schema; shared by the openai and transformers providers, so both ask alike."""
from __future__ import annotations

import json
from collections.abc import Callable

from projects import schemas

Check = Callable[[dict], "str | None"]


def catalogue_names(catalogue) -> list[str]:
    """The known style names of a catalogue given as a dict, a list of names or a list of entries."""
    if isinstance(catalogue, dict):
        names = list(catalogue)
    elif isinstance(catalogue, (list, tuple)):
        names = [item.get("name") if isinstance(item, dict) else item for item in catalogue]
    else:
        names = []
    return [name for name in names if name in schemas.STYLE_NAMES]


def style_request(*, topic: str, names: list[str], catalogue_json: str) -> tuple[str, Check]:
    user = (f"Topic: {topic}\n\nChoose the visual style that fits this topic best. Use one of these style "
            f"names exactly: {', '.join(names or schemas.STYLE_NAMES)}.\n"
            f"Style catalogue: {catalogue_json}\n"
            "Give 3 to 8 palette colours as #rrggbb and a visual description an image model can follow.")

    def check(data: dict) -> str | None:
        if names and data["name"] not in names:
            return f"style name '{data['name']}' is not in the catalogue; use one of: {', '.join(names)}"
        return None

    return user, check


def script_request(*, topic: str, style: dict, duration_s: float, shots: int) -> str:
    return (f"Topic: {topic}\nStyle: {json.dumps(style, ensure_ascii=False)}\n\n"
            f"Write the script of a {duration_s:g}-second video in about {shots} scenes. Scene durations "
            f"(duration_s, seconds) must add up to {duration_s:g}. Narration is spoken at about 2.5 words "
            "per second, so keep each scene's narration within its duration.")


def storyboard_request(*, script: dict, style: dict, shots: int, duration_s: float) -> tuple[str, Check]:
    user = (f"Script: {json.dumps(script, ensure_ascii=False)}\nStyle: {json.dumps(style, ensure_ascii=False)}\n\n"
            f"Break the script into exactly {shots} shots numbered 1 to {shots}, whose durations (duration_s, "
            f"seconds, at least 0.5 each) add up to {duration_s:g}. Each description is the shot's first frame "
            "as an image model should draw it. camera_movement is one of "
            f"{', '.join(schemas.CAMERA_MOVEMENTS)}; shot_type is one of {', '.join(schemas.SHOT_TYPES)}.")

    def check(data: dict) -> str | None:
        if len(data["shots"]) != shots:
            return f"expected exactly {shots} shots, got {len(data['shots'])}"
        return None

    return user, check


def storyboard_normalise(data: dict, duration_s: float) -> dict:
    """Number shots 1..n and scale their durations to add up to duration_s (models are loose with both)."""
    shots = data["shots"]
    for number, shot in enumerate(shots, start=1):
        shot["number"] = number
    total = sum(shot["duration_s"] for shot in shots)
    if duration_s > 0 and total > 0 and abs(total - duration_s) > 0.01 * duration_s:
        factor = duration_s / total
        for shot in shots:
            shot["duration_s"] = min(120.0, max(0.5, round(shot["duration_s"] * factor, 2)))
    return data
