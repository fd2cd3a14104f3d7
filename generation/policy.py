"""An organization's generation policy, and the content check run on topics, scripts and storyboards.

Blocked terms match case-insensitively as whole words or phrases. Scripts written without spaces
between words (Chinese, Japanese, Thai ...) have no word boundaries, so terms in them match anywhere.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

from config.errors import DomainError
from config.tenancy import tenant_scope
from generation.error_codes import GenerationErrors
from generation.models import GenerationPolicy

Moderation = Callable[[str], "tuple[bool, str]"]

# Scripts without spaces between words: Thai, Lao, Myanmar, Khmer, kana, CJK ideographs.
_NO_SPACE_SCRIPTS = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
_HAS_NO_SPACE_SCRIPT = re.compile(f"[{_NO_SPACE_SCRIPTS}]")
# A letter or digit that continues a word. CJK characters next to a Latin term don't extend it.
_WORD_CHAR = f"[^\\W{_NO_SPACE_SCRIPTS}]"
_WHITESPACE, _ANY_WHITESPACE = r"\s+", r"\s*"


class ContentRefused(DomainError):
    code = GenerationErrors.CONTENT_REFUSED


class ModerationUnavailable(DomainError):
    """The moderation the policy asks for could not run: the content is neither passed nor refused."""

    code = GenerationErrors.MODERATION_UNAVAILABLE


def policy_for(organization_id: int) -> GenerationPolicy:
    """The organization's policy, or an unsaved default one (no limits, no blocked terms)."""
    with tenant_scope(organization_id):
        return GenerationPolicy.objects.filter(organization_id=organization_id).first() or GenerationPolicy(
            organization_id=organization_id
        )


def _normalize(text: str) -> str:
    """Compatibility forms folded (full-width letters), case folded, invisible format characters
    (zero-width spaces, soft hyphens) dropped, so they can't be used to slip a term through."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


@lru_cache(maxsize=256)
def _matcher(terms: tuple[str, ...]) -> tuple[re.Pattern | None, tuple[str, ...]]:
    """One regex for all terms, one group per term; and the terms in group order."""
    cleaned = {}
    for term in terms:
        normalized = " ".join(_normalize(str(term)).split())
        if normalized:
            cleaned.setdefault(normalized, str(term).strip())
    # Longest first, so a phrase wins over a term it contains.
    ordered = sorted(cleaned, key=len, reverse=True)
    bounded = [term for term in ordered if not _HAS_NO_SPACE_SCRIPT.search(term)]
    anywhere = [term for term in ordered if _HAS_NO_SPACE_SCRIPT.search(term)]
    alternatives = []
    if bounded:
        groups = "|".join(f"({_WHITESPACE.join(map(re.escape, term.split()))})" for term in bounded)
        alternatives.append(f"(?<!{_WORD_CHAR})(?:{groups})(?!{_WORD_CHAR})")
    if anywhere:
        alternatives.append("|".join(f"({_ANY_WHITESPACE.join(map(re.escape, term.split()))})" for term in anywhere))
    if not alternatives:
        return None, ()
    originals = tuple(cleaned[term] for term in bounded + anywhere)
    return re.compile("|".join(alternatives)), originals


def blocked_term_find(terms, text: str) -> str | None:
    """The first blocked term found in `text`, as the policy spells it; None when there is none."""
    pattern, originals = _matcher(tuple(str(term) for term in terms or ()))
    if pattern is None or not text:
        return None
    match = pattern.search(_normalize(text))
    return originals[match.lastindex - 1] if match else None


def content_policy_check(
    *,
    organization_id: int,
    texts: dict[str, str],
    moderation: Moderation | None = None,
    policy: GenerationPolicy | None = None,
) -> None:
    """Refuse (422 `content_refused`) texts holding one of the organization's blocked terms, or that
    `moderation` flags. `texts` maps where a text comes from ("topic", "storyboard shot 3") to the text.
    A moderation callable that raises is not caught: an outage must not wave content through."""
    policy = policy or policy_for(organization_id)
    for field, text in texts.items():
        term = blocked_term_find(policy.blocked_terms, text or "")
        if term is not None:
            message = f'The {field} contains the blocked term "{term}".'
            raise ContentRefused(message, fields={field: [message]})
    if moderation is not None:
        combined = "\n\n".join(text for text in texts.values() if text)
        if combined:
            flagged, reason = moderation(combined)
            if flagged:
                message = f"Moderation refused the content: {reason or 'flagged'}."
                raise ContentRefused(message)


def script_texts(script: dict) -> dict[str, str]:
    """A script (projects.schemas.SCRIPT) as content_policy_check's texts, one entry per scene."""
    texts = {"script": "\n".join(filter(None, [script.get("title"), script.get("synopsis")]))}
    for number, scene in enumerate(script.get("scenes") or [], start=1):
        parts = [scene.get(key) for key in ("description", "narration", "dialogue", "visual_notes", "audio_notes")]
        texts[f"script scene {number}"] = "\n".join(filter(None, parts))
    return texts


def storyboard_texts(storyboard: dict) -> dict[str, str]:
    """A storyboard (projects.schemas.STORYBOARD) as content_policy_check's texts, one per shot."""
    texts = {}
    for index, shot in enumerate(storyboard.get("shots") or [], start=1):
        parts = [shot.get(key) for key in ("description", "dialogue", "composition", "lighting")]
        texts[f"storyboard shot {shot.get('number') or index}"] = "\n".join(filter(None, parts))
    return texts
