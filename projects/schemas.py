"""JSON schemas every text provider's output must satisfy (offline or a model), and the style catalogue."""
from __future__ import annotations

import jsonschema

CAMERA_MOVEMENTS = ["static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out", "tracking", "dolly"]
SHOT_TYPES = ["extreme_wide", "wide", "full", "medium_wide", "medium", "medium_close", "close", "extreme_close"]
STYLE_NAMES = ["cinematic", "documentary", "animated", "minimalist", "vintage", "futuristic", "nature", "urban",
               "commercial", "artistic", "scifi", "fantasy"]

LANGUAGES = ["en", "zh"]

_COLOR = {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}
# The language a script or storyboard is written in; later stages pick the voice and subtitle font by it.
# Optional: artifacts written before it existed, and other providers' outputs, may lack it.
_LANGUAGE = {"enum": LANGUAGES}

STYLE = {
    "type": "object",
    "required": ["name", "tags", "visual_description", "mood", "palette"],
    "properties": {
        "name": {"enum": STYLE_NAMES},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 1, "maxItems": 12},
        "visual_description": {"type": "string", "minLength": 1, "maxLength": 1000},
        "mood": {"type": "string", "minLength": 1, "maxLength": 200},
        "palette": {"type": "array", "items": _COLOR, "minItems": 3, "maxItems": 8},
    },
}

SCRIPT = {
    "type": "object",
    "required": ["title", "synopsis", "scenes"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "synopsis": {"type": "string", "minLength": 1, "maxLength": 2000},
        "language": _LANGUAGE,
        "scenes": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["description", "narration", "duration_s", "visual_notes", "audio_notes"],
                "properties": {
                    "description": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "narration": {"type": "string", "maxLength": 2000},
                    "dialogue": {"type": "string", "maxLength": 2000},
                    "duration_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
                    "visual_notes": {"type": "string", "maxLength": 1000},
                    "audio_notes": {"type": "string", "maxLength": 1000},
                },
            },
        },
    },
}

SHOT = {
    "type": "object",
    "required": ["number", "description", "dialogue", "camera_movement", "shot_type", "duration_s",
                 "composition", "lighting"],
    "properties": {
        "number": {"type": "integer", "minimum": 1},
        "description": {"type": "string", "minLength": 1, "maxLength": 2000},
        "dialogue": {"type": "string", "maxLength": 2000},
        "camera_movement": {"enum": CAMERA_MOVEMENTS},
        "shot_type": {"enum": SHOT_TYPES},
        "duration_s": {"type": "number", "minimum": 0.5, "maximum": 120},
        "composition": {"type": "string", "maxLength": 1000},
        "lighting": {"type": "string", "maxLength": 1000},
    },
}

STORYBOARD = {
    "type": "object",
    "required": ["shots"],
    "properties": {"language": _LANGUAGE,
                   "shots": {"type": "array", "minItems": 1, "maxItems": 50, "items": SHOT}},
}


class SchemaError(ValueError):
    pass


def validate(data, schema: dict, what: str) -> dict:
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(part) for part in exc.absolute_path)
        raise SchemaError(f"{what} is invalid at '{path}': {exc.message}") from None
    return data
