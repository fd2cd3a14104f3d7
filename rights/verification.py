"""Who owns this content? Public verification by exact hash, content credential, watermark and
fingerprints. Everything here reads across organizations on purpose (that is the question asked),
and answers only public facts: the content id, the owner's public name and slug, and the proof.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from accounts.tenancy import dangerously_unscoped
from config.errors import DomainError
from generation.media import sha256_file
from rights.models import Content

logger = logging.getLogger(__name__)

PNG, JPEG, MP4 = "image/png", "image/jpeg", "video/mp4"
MAX_IMAGE_PIXELS = 40_000_000  # 8K x 5K; larger headers are refused before decoding


class VerifyRefused(DomainError):
    status = 400


def sniff(head: bytes) -> str | None:
    """The file's real type from its first bytes; the declared content type is not trusted."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return MP4
    return None


def check_upload(path: Path) -> str:
    """Refuse what we will not decode: unknown types, images whose header claims too many pixels,
    videos ffmpeg cannot read. Returns the mime type."""
    size = path.stat().st_size
    if size == 0:
        raise VerifyRefused("The file is empty.", code="empty_file")
    with open(path, "rb") as handle:
        mime = sniff(handle.read(16))
    if mime is None:
        raise VerifyRefused("Only PNG, JPEG and MP4 files can be verified.", code="unsupported_type", status=415)
    if mime in (PNG, JPEG):
        from PIL import Image

        try:
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
        except Image.DecompressionBombError:
            raise VerifyRefused("The image is too large.", code="image_too_large", status=413) from None
        except Exception:
            raise VerifyRefused("The image cannot be read.", code="unreadable_file") from None
        if width * height > MAX_IMAGE_PIXELS:
            raise VerifyRefused(f"The image is too large ({width}x{height}).", code="image_too_large", status=413)
        try:
            with Image.open(path) as image:
                image.load()
        except Exception:
            raise VerifyRefused("The image is truncated or damaged.", code="unreadable_file") from None
    else:
        from generation import media

        try:
            meta = media.probe(path)
        except Exception:
            raise VerifyRefused("The video cannot be read.", code="unreadable_file") from None
        if not meta.get("width") or not meta.get("duration_s"):
            raise VerifyRefused("The video is truncated or has no picture.", code="unreadable_file")
    return mime


@dataclass
class Match:
    content: Content
    method: str
    confidence: float


def _contents_by_id(**lookup) -> list[Content]:
    with dangerously_unscoped():
        return list(Content.objects.select_related("organization", "registration", "registration__batch")
                    .filter(**lookup))


def find_by_hash(sha256: str) -> list[Match]:
    contents = _contents_by_id(sha256=sha256.lower()) or _contents_by_id(original_sha256=sha256.lower())
    return [Match(content, "exact_hash", 1.0) for content in contents]


def find_by_credential(path: Path) -> list[Match]:
    from rights.credentials import credential_read

    manifest = credential_read(path)
    if not manifest or not manifest.get("valid") or not manifest.get("content_id"):
        return []
    return [Match(c, "c2pa", 0.99) for c in _contents_by_id(content_id=manifest["content_id"])]


def find_by_watermark(path: Path) -> list[Match]:
    from rights.watermark import watermark_detect

    found = watermark_detect(path)
    if not found.get("content_id"):
        return []
    return [Match(c, "watermark", round(float(found.get("confidence", 0)), 3))
            for c in _contents_by_id(content_id=found["content_id"])]


def find_by_fingerprint(path: Path) -> list[Match]:
    from rights.fingerprints import fingerprint_search, fingerprints_compute

    hashes = [value for _at, value in fingerprints_compute(path)]
    if not hashes:
        return []
    matches = []
    for found in fingerprint_search(hashes, max_distance=settings.VERIFY_MAX_DISTANCE):
        if found["matched_fraction"] < settings.VERIFY_MIN_FRACTION:
            continue
        for content in _contents_by_id(pk=found["content_id"]):
            confidence = found["matched_fraction"] * (1 - found["best_distance"] / 64)
            matches.append(Match(content, "fingerprint", round(confidence, 3)))
    return matches


METHODS = [("c2pa", find_by_credential), ("watermark", find_by_watermark), ("fingerprint", find_by_fingerprint)]


def verify_file(path: Path) -> list[Match]:
    check_upload(path)
    matches = find_by_hash(sha256_file(path))
    for name, method in METHODS:
        try:
            matches += method(path)
        except DomainError:
            raise
        except Exception:  # one method failing (a damaged stream) must not hide the others' answers
            logger.warning("verification method %s failed", name, exc_info=True)
    return _best_per_content(matches)


def _best_per_content(matches: list[Match]) -> list[Match]:
    """Every method that found a content, strongest first; one entry per (content, method)."""
    seen, result = set(), []
    for match in sorted(matches, key=lambda m: -m.confidence):
        key = (match.content.pk, match.method)
        if key not in seen:
            seen.add(key)
            result.append(match)
    return result


def match_public(match: Match) -> dict:
    """What anyone may learn: no project, topic or user names."""
    content = match.content
    registration = getattr(content, "registration", None)
    return {
        "content_id": content.content_id,
        "method": match.method,
        "confidence": match.confidence,
        "owner": {"name": content.organization.public_name, "slug": content.organization.slug},
        "registered_at": content.created_at.isoformat(),
        "registration": registration_public(registration),
    }


def registration_public(registration) -> dict | None:
    if registration is None:
        return None
    batch = registration.batch
    on_chain = None
    if registration.status in ("anchored", "confirmed", "revoked"):
        try:
            from rights.registry import proof_verify_onchain

            on_chain = proof_verify_onchain(registration)
        except Exception:
            logger.warning("on-chain proof check failed", exc_info=True)
            on_chain = None  # unknown now (chain unreachable), not false
    return {
        "status": registration.status,
        "chain_id": batch.chain_id if batch else None,
        "contract": batch.contract if batch else None,
        "tx_hash": registration.tx_hash or None,
        "block_number": registration.block_number,
        "merkle_root": batch.merkle_root if batch else None,
        "leaf": registration.leaf,
        "proof": registration.proof,
        "on_chain": on_chain,
    }
