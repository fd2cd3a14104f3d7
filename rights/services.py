"""Protecting content: watermark every frame, sign a content credential, fingerprint, record, and
queue the on-chain registration. Used by the pipeline's protect stage, uploads and `manage.py protect`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction

from accounts.models import Organization
from generation.media import sha256_file
from rights.models import Content, ContentKind, ContentSource


@dataclass
class Protected:
    content: Content
    infringements: list[dict] = field(default_factory=list)


def infringement_matches(*, organization_id: int, hashes: list[int]) -> list[dict]:
    """Contents of other organizations that these fingerprints match (fraction above the threshold)."""
    from rights.fingerprints import fingerprint_search
    from rights.verification import _contents_by_id

    found = []
    for match in fingerprint_search(hashes, max_distance=settings.VERIFY_MAX_DISTANCE):
        if match["organization_id"] == organization_id or match["matched_fraction"] < settings.VERIFY_MIN_FRACTION:
            continue
        for content in _contents_by_id(pk=match["content_id"]):
            found.append({"content_id": content.content_id, "owner": content.organization.public_name,
                          "matched_fraction": match["matched_fraction"], "best_distance": match["best_distance"]})
    return found


def content_protect(*, organization: Organization, source: Path, kind: str, origin: str, work_dir: Path,
                    title: str = "", job=None, user=None, ingredients: list[dict] | None = None) -> Protected:
    """Protect `source` in the caller's tenant scope; returns the content and any infringement matches."""
    from rights.credentials import credential_sign
    from rights.fingerprints import fingerprints_compute, fingerprints_store
    from rights.watermark import content_id_new, watermark_image, watermark_video

    timings = {}
    started = time.perf_counter()
    content_id = content_id_new()
    suffix, mime = (".mp4", "video/mp4") if kind == ContentKind.VIDEO else (".png", "image/png")
    marked = work_dir / f"marked{suffix}"
    watermark = (watermark_video if kind == ContentKind.VIDEO else watermark_image)(source, marked, content_id)
    timings["watermark_s"] = round(time.perf_counter() - started, 3)

    step = time.perf_counter()
    signed = work_dir / f"protected{suffix}"
    credential = credential_sign(
        marked, signed, mime_type=mime, author=organization.public_name, title=content_id,
        ingredients=[{"title": "source", "sha256": sha256_file(source)}, *(ingredients or [])],
        ai_generated=origin == ContentSource.GENERATED, content_id=content_id)
    timings["c2pa_s"] = round(time.perf_counter() - step, 3)

    step = time.perf_counter()
    hashes = fingerprints_compute(signed)
    timings["fingerprint_s"] = round(time.perf_counter() - step, 3)

    from generation import media

    meta = media.probe(signed) if kind == ContentKind.VIDEO else {}
    if kind == ContentKind.IMAGE:
        from PIL import Image

        with Image.open(signed) as image:
            meta = {"width": image.width, "height": image.height, "duration_s": 0}
    with transaction.atomic():
        content = Content(organization=organization, content_id=content_id, kind=kind, source=origin, job=job,
                          title=title[:200], sha256=sha256_file(signed), original_sha256=sha256_file(source), mime_type=mime,
                          width=meta.get("width") or 0, height=meta.get("height") or 0,
                          duration_s=meta.get("duration_s") or 0, watermark=watermark if isinstance(
                              watermark, dict) else {}, c2pa=credential, fingerprint_count=len(hashes),
                          created_by=user)
        with open(source, "rb") as original, open(signed, "rb") as protected:
            content.original.save(f"{content_id}-original{suffix if kind == ContentKind.VIDEO else Path(source).suffix or '.bin'}",
                                  File(original), save=False)
            content.protected.save(f"{content_id}{suffix}", File(protected), save=False)
        timings["total_s"] = round(time.perf_counter() - started, 3)
        content.timings = timings
        try:
            content.save()
        except IntegrityError:  # a content id collision: astronomically rare, and safe to report
            raise
        fingerprints_store(content=content, hashes=hashes)
    return Protected(content, infringement_matches(organization_id=organization.pk,
                                                   hashes=[value for _at, value in hashes]))


def _refuse_too_small(path: Path, kind: str) -> None:
    """An upload whose frames are too small for the watermark is refused up front (it was a 500)."""
    from config.errors import DomainError
    from rights.watermark import MIN_FRAME_SIDE

    if kind == "image":
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
    else:
        from generation import media

        meta = media.probe(path)
        width, height = meta.get("width") or 0, meta.get("height") or 0
    if min(width, height) < MIN_FRAME_SIDE:
        message = (f"The {kind} is {width}x{height} pixels; the watermark needs at least "
                   f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}.")
        raise DomainError(message, code="too_small", fields={"file": [message]})


def asset_protect(*, organization: Organization, path: Path, title: str, user, work_dir: Path) -> Protected:
    """An uploaded existing image or video (POST /api/v1/assets and the portal's upload): checked
    against the upload limits, protected like a generated output, and queued for registration."""
    from rights import verification
    from rights.registry import registration_enqueue

    mime = verification.check_upload(path)
    kind = "video" if mime == verification.MP4 else "image"
    _refuse_too_small(path, kind)
    protected = content_protect(
        organization=organization, source=path, kind=kind,
        origin="upload", work_dir=work_dir, title=title[:200], user=user)
    registration_enqueue(content=protected.content)
    return protected
