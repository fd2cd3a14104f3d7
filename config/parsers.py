"""Request parsing that is safe against hostile nesting."""
from __future__ import annotations

import io
import re

from rest_framework import exceptions, parsers

from config.json_input import JSONBody

MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON document nests deeper than `limit`, measured before it is decoded.

    Decoding must not be what finds out: some libraries we load (py_ecc, via the chain client)
    raise Python's recursion limit to 100,000, and the C JSON decoder then overflows the stack and
    kills the process instead of raising RecursionError."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", body)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing too deeply nested documents as malformed (see json_depth_exceeds).
    An object it decodes comes as a JSONBody, so the serializers check its types strictly."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        if json_depth_exceeds(body):
            raise exceptions.ParseError(f"JSON parse error - the document nests deeper than {MAX_JSON_DEPTH} levels.")
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.")
        return JSONBody(data) if isinstance(data, dict) else data
