"""Subtitles a person can read: phrase-aware line breaks (at most two lines of about 42 Latin or 16 CJK
characters), cues timed to the speech, and the .srt and .vtt texts."""
from __future__ import annotations

import re

MAX_LINES = 2
LINE_UNITS = 42  # a line's width in Latin characters; a CJK character counts LINE_UNITS / CJK_LINE_CHARS
CJK_LINE_CHARS = 16
_WIDE = re.compile(r"[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]")
_PUNCT_END = ",.;:!?)]\u201d\u2019\uff0c\u3002\u3001\uff1b\uff1a\uff01\uff1f\uff09\u300b\u300d"
_STRONG_END = ".;:!?\u3002\uff1b\uff01\uff1f"
# A break before these words keeps a phrase together ("… the river | and the boats").
_PHRASE_STARTS = {"and", "but", "or", "so", "yet", "because", "while", "when", "where", "which", "who", "that",
                  "then", "to", "of", "in", "on", "at", "with", "for", "from", "into", "over", "under", "after",
                  "before", "as", "if", "than", "through", "across"}
ISO639_2 = {"en": "eng", "zh": "chi"}


def text_units(text: str) -> float:
    """The width of `text` in Latin characters: a wide (CJK) character is LINE_UNITS / CJK_LINE_CHARS."""
    wide = len(_WIDE.findall(text))
    return (len(text) - wide) + wide * LINE_UNITS / CJK_LINE_CHARS


def _tokens(text: str) -> list[str]:
    """Words with their trailing space for Latin text, single characters (punctuation attached) for CJK."""
    tokens: list[str] = []
    for match in re.finditer(r"\S+\s*", text):
        word = match.group(0)
        if not _WIDE.search(word):
            tokens.append(word)
            continue
        for char in word:
            if tokens and (char in _PUNCT_END or char.isspace()):
                tokens[-1] += char  # never start a line with closing punctuation
            elif _WIDE.match(char) or not tokens or _WIDE.search(tokens[-1]):
                tokens.append(char)
            else:
                tokens[-1] += char
    return tokens


def _break_cost(before: str, after: str) -> float:
    """How bad a line break between two tokens is: 0 after strong punctuation, low before a phrase word."""
    tail = before.rstrip()
    if tail and tail[-1] in _STRONG_END:
        return 0.0
    if tail and tail[-1] in _PUNCT_END:
        return 1.0
    if after.strip().lower().strip("\"'(") in _PHRASE_STARTS:
        return 3.0
    return 8.0


def _join(tokens: list[str]) -> str:
    return "".join(tokens).strip()


def _fits(tokens: list[str]) -> bool:
    return text_units(_join(tokens)) <= LINE_UNITS


def cue_texts(text: str) -> list[list[str]]:
    """`text` cut into cues of at most two lines each, every line at most LINE_UNITS wide, breaking at
    punctuation and phrase starts where it can and balancing the two lines."""
    tokens = _tokens(" ".join((text or "").split()))
    cues: list[list[str]] = []
    while tokens:
        # The longest run of tokens that fits in two lines, ending at the best break near the limit.
        end = 0
        while end < len(tokens) and text_units(_join(tokens[:end + 1])) <= LINE_UNITS * MAX_LINES:
            end += 1
        end = max(1, end)
        if end < len(tokens):
            best, best_cost = end, None
            for cut in range(max(1, end // 2), end + 1):
                cost = _break_cost(tokens[cut - 1], tokens[cut]) + (end - cut) * 0.5
                if best_cost is None or cost < best_cost:
                    best, best_cost = cut, cost
            end = best
        chunk, tokens = tokens[:end], tokens[end:]
        cues.append(_lines(chunk))
    return cues


def _lines(tokens: list[str]) -> list[str]:
    if _fits(tokens) and text_units(_join(tokens)) <= LINE_UNITS * 0.8:
        return [_join(tokens)]
    best, best_cost = None, None
    for cut in range(1, len(tokens)):
        first, second = tokens[:cut], tokens[cut:]
        if not (_fits(first) and _fits(second)):
            continue
        balance = abs(text_units(_join(first)) - text_units(_join(second))) / LINE_UNITS
        cost = _break_cost(tokens[cut - 1], tokens[cut]) + 10 * balance
        if best_cost is None or cost < best_cost:
            best, best_cost = cut, cost
    if best is None:
        if _fits(tokens):
            return [_join(tokens)]
        # A single token wider than a line (a very long word): cut it by width.
        text, lines = _join(tokens), []
        while text and len(lines) < MAX_LINES:
            size = len(text)
            while text_units(text[:size]) > LINE_UNITS:
                size -= 1
            lines.append(text[:size].strip())
            text = text[size:]
        return lines
    return [_join(tokens[:best]), _join(tokens[best:])]


def cues_for_line(text: str, start: float, end: float) -> list[dict]:
    """The cues of one spoken line between `start` and `end` seconds, shared by text width."""
    parts = cue_texts(text)
    if not parts:
        return []
    weights = [max(1.0, text_units(" ".join(lines))) for lines in parts]
    cues, at = [], start
    for lines, weight in zip(parts, weights):
        length = (end - start) * weight / sum(weights)
        cues.append({"start": round(at, 3), "end": round(at + length, 3), "lines": lines})
        at += length
    return cues


def line_overflows(cue: dict) -> bool:
    lines = cue.get("lines") or []
    return len(lines) > MAX_LINES or any(text_units(line) > LINE_UNITS for line in lines)


def _stamp(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3600000)
    minutes, rest = divmod(rest, 60000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt_text(cues: list[dict]) -> str:
    blocks = [f"{index}\n{_stamp(cue['start'], ',')} --> {_stamp(cue['end'], ',')}\n" + "\n".join(cue["lines"])
              for index, cue in enumerate(cues, start=1)]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def vtt_text(cues: list[dict], language: str = "en") -> str:
    blocks = [f"{_stamp(cue['start'], '.')} --> {_stamp(cue['end'], '.')}\n" + "\n".join(cue["lines"])
              for cue in cues]
    return f"WEBVTT\nLanguage: {language}\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")
