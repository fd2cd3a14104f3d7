"""Public verification: the answer's shape, nothing private in it, and bad input refused fast."""
import io
import os
import struct
import time
import zlib

import pytest
from rest_framework.test import APIClient

URL = "/api/v1/verify"


def test_sha256_lookup_names_the_owner_and_nothing_private(registered, tenant_a):
    response = APIClient().post(URL, {"sha256": "A" * 64}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["verdict"] == "registered"
    match = body["matches"][0]
    assert match["content_id"] == "ABCD2345" and match["method"] == "exact_hash" and match["confidence"] == 1.0
    assert match["owner"] == {"name": tenant_a.organization.public_name, "slug": tenant_a.slug}
    text = response.content.decode()
    assert "Confidential" not in text and "secret" not in text and "@" not in text


def test_unknown_hash_is_not_found(db):
    body = APIClient().post(URL, {"sha256": "b" * 64}, format="json").json()
    assert body == {"verdict": "not_found", "owner": None, "original": None, "matches": [],
                    "later_registrations": []}


def test_public_certificate_of_a_content_id(registered, tenant_a):
    client = APIClient()
    body = client.get("/api/v1/certificates/ABCD2345").json()
    assert body["content_id"] == "ABCD2345" and body["owner"]["slug"] == tenant_a.slug
    assert client.get("/api/v1/certificates/NOPE0000").status_code == 404


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def upload(content: bytes, name="file.bin"):
    return APIClient().post(URL, {"file": io.BytesIO(content)}, format="multipart")


@pytest.mark.parametrize("label, content, status, code", [
    ("random bytes", os.urandom(4096), 415, "unsupported_type"),
    ("huge PNG header", png_claiming(100_000, 100_000), 413, "image_too_large"),
    ("truncated MP4", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + os.urandom(2000), 400, "unreadable_file"),
    ("empty file", b"", 400, None),
])
def test_bad_files_get_a_quick_4xx_json_error(db, label, content, status, code):
    started = time.monotonic()
    response = upload(content)
    assert time.monotonic() - started < 10, label
    assert response.status_code == status, (label, response.content[:300])
    error = response.json()["error"]
    assert code is None or error["code"] == code


def test_empty_body_and_bad_hash_are_400(db):
    client = APIClient()
    assert client.post(URL, {}, format="json").status_code == 400
    assert client.post(URL, {"sha256": "xyz"}, format="json").json()["error"]["fields"]["sha256"]
    response = client.post(URL, b"", content_type="application/json")
    assert response.status_code == 400


def test_file_over_the_limit_is_413_before_it_is_read(db, settings):
    settings.VERIFY_MAX_BYTES = 1024
    response = upload(b"\x89PNG\r\n\x1a\n" + os.urandom(5000))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_verification_is_rate_limited(db, settings):
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "verify": "2/min"}
    client = APIClient()
    for _ in range(2):
        assert client.post(URL, {"sha256": "c" * 64}, format="json").status_code == 200
    limited = client.post(URL, {"sha256": "c" * 64}, format="json")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
