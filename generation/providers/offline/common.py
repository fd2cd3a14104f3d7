"""What the offline providers share: deterministic seeds and the words of a prompt."""
from __future__ import annotations

import hashlib
import json
import re

from generation.providers.base import StageContext


def digest_int(*parts) -> int:
    """A stable 64-bit seed from any JSON-serialisable parts (Python's hash() is salted per process)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def word_stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def text_clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def mid_sentence(topic: str) -> str:
    first, _, rest = topic.partition(" ")
    return f"{first.lower()} {rest}".strip() if first.lower() in LEADING_LOWER else topic


def prompt_of(ctx: StageContext, key: str) -> str:
    value = (ctx.prompts or {}).get(key) or ""
    return text_clip(str(value), 400)


def shot_seed(shot: dict, style: dict, organization_id=None) -> int:
    """What makes a frame (and its clip's particles) unique: the shot's content, number, style and seed,
    and the organization it is made for."""
    return digest_int(
        "shot", shot.get("number"), shot.get("description"), shot.get("shot_type"), shot.get("seed", 0),
        (style or {}).get("name"), (style or {}).get("palette"), organization_id,
    )
SMALL_WORDS = {"a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "for", "with", "by", "from"}
# Leading words lowercased when the topic is used mid-sentence ("This is a fox ...").
LEADING_LOWER = SMALL_WORDS | {"how", "why", "what", "when", "where", "who", "our", "my", "your", "their", "this",
                               "these", "those", "some", "every", "one"}
