"""Secrets handed to people (API keys, invitation links): made here, stored only as SHA-256.

An API key reads `sk_<8 prefix chars>_<40 secret chars>`. The prefix is stored in clear so a key
can be found and shown as `sk_AbCd1234…wxyz`; the secret part has 238 bits of entropy, so a
plain SHA-256 of the whole key is a safe stored form.
"""
from __future__ import annotations

import hashlib
import secrets
import string

API_KEY_PREFIX = "sk"
_ALPHABET = string.ascii_letters + string.digits
_PREFIX_LEN, _SECRET_LEN = 8, 40


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def random_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def api_key_generate() -> tuple[str, str, str]:
    """A new key as (stored prefix, last four characters, plain key)."""
    prefix, secret = f"{API_KEY_PREFIX}_{random_string(_PREFIX_LEN)}", random_string(_SECRET_LEN)
    return prefix, secret[-4:], f"{prefix}_{secret}"


def api_key_prefix(plain: str) -> str | None:
    """The stored prefix of a well-formed key, or None for anything malformed."""
    parts = plain.split("_")
    if (
        len(parts) != 3
        or parts[0] != API_KEY_PREFIX
        or len(parts[1]) != _PREFIX_LEN
        or len(parts[2]) != _SECRET_LEN
        or not all(char in _ALPHABET for char in parts[1] + parts[2])
    ):
        return None
    return f"{parts[0]}_{parts[1]}"
