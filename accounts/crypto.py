"""Encryption of secrets we must read back (provider API keys, webhook signing secrets).

Fernet (AES-128-CBC with HMAC-SHA256). The key comes from ENCRYPTION_KEY, or is derived from
SECRET_KEY when that is unset, so the database never holds these secrets in plain text.
Several comma-separated keys in ENCRYPTION_KEY allow rotation: the first encrypts, all decrypt.
"""
from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: str, secret_key: str) -> MultiFernet:
    if keys:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"platform-secrets", info=b"fernet").derive(
        secret_key.encode()
    )
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])


def _box() -> MultiFernet:
    return _fernet(settings.ENCRYPTION_KEY, settings.SECRET_KEY)


def secret_encrypt(plain: str) -> str:
    return _box().encrypt(plain.encode()).decode() if plain else ""


def secret_decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _box().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("a stored secret cannot be decrypted with the configured ENCRYPTION_KEY") from None
