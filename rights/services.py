"""Protecting content: watermark every frame, sign a content credential, fingerprint, record, and
queue the on-chain registration. Used by the pipeline's protect stage, uploads and `manage.py protect`."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Organization
from config import media
from config.errors import Conflict, DomainError
from config.media import sha256_file
from config.media_limits import media_check_audio, upload_budget
from config.tenancy import dangerously_unscoped, tenant_scope
from rights import verification
from rights.credentials import credential_read, credential_sign
from rights.error_codes import RightsErrors
from rights.fingerprints import fingerprint_search, fingerprints_compute, fingerprints_store
from rights.models import Content, ContentKind, ContentSource
from rights.registry import registration_enqueue
from rights.selectors import HELD, content_claims, hold_state
from rights.verification import dangerously_contents, registration_order
from rights.watermark import MIN_FRAME_SIDE, content_id_new, watermark_detect, watermark_image, watermark_video

logger = logging.getLogger(__name__)


@dataclass
class Protected:
    content: Content
    infringements: list[dict] = field(default_factory=list)

    @property
    def held(self) -> bool:
        """An upload held for an operator (a generated output's hold is on its job)."""

        return hold_state(self.content.rights_hold) == HELD


def marked_contents(path: Path, *, frames: bool = True) -> dict:
    """{content pk: method} of the contents a file names by itself: its exact bytes, a valid content
    credential, or a watermark. A crop or a rescale can defeat the fingerprints while the watermark,
    made to survive them, still says whose the picture is. Any state: the caller decides what counts."""
    from django.db.models import Q

    digest = sha256_file(path)
    found = {content.pk: "exact_hash" for content in dangerously_contents(Q(sha256=digest) | Q(original_sha256=digest))}
    readers = (("c2pa", credential_read), ("watermark", watermark_detect)) if frames else (("c2pa", credential_read),)
    for method, read in readers:
        try:
            result = read(path) or {}
        except Exception:  # a stream one reader cannot parse must not stop the others
            logger.warning("%s read failed on an upload", method, exc_info=True)
            continue
        if result.get("content_id") and (method != "c2pa" or result.get("valid")):
            for content in dangerously_contents(content_id=result["content_id"]):
                found.setdefault(content.pk, method)
    return found


def infringement_matches(*, organization_id: int, hashes: list[int], named_by_file: dict | None = None) -> list[dict]:
    """Contents of other organizations that these fingerprints match (fraction above the threshold) and
    that stand as their claims (rights.selectors.content_claims: not revoked, held or rejected), the
    earliest first. None when the earliest standing match is the organization's own: then this is its
    later version of its own original, and a copy registered by someone else after that original (an
    operator released it) does not make the owner's re-upload an infringement. One query for the contents."""

    found = {match["content_id"]: {**match, "method": "fingerprint"}
             for match in fingerprint_search(hashes, max_distance=settings.VERIFY_MAX_DISTANCE)
             if match["matched_fraction"] >= settings.VERIFY_MIN_FRACTION}
    for pk, method in (named_by_file or {}).items():
        found.setdefault(pk, {"matched_fraction": None, "best_distance": None, "method": method})
    if not found:
        return []
    with dangerously_unscoped():
        contents = list(Content.objects.select_related("organization", "registration", "job")
                        .filter(pk__in=list(found)))
        standing = [content for content in sorted(contents, key=registration_order) if content_claims(content)]
    if not standing or standing[0].organization_id == organization_id:
        return []
    return [{"content_id": content.content_id, "owner": content.organization.public_name,
             "matched_fraction": found[content.pk]["matched_fraction"],
             "best_distance": found[content.pk]["best_distance"], "method": found[content.pk]["method"]}
            for content in standing if content.organization_id != organization_id]


def content_protect(*, organization: Organization, source: Path, kind: str, origin: str, work_dir: Path,
                    title: str = "", job=None, user=None, ingredients: list[dict] | None = None,
                    named_by_file: dict | None = None) -> Protected:
    """Protect `source` in the caller's tenant scope; returns the content and any infringement matches
    (by fingerprints, and by `named_by_file`: what `marked_contents` read from the source before protecting it)."""
    timings = {}
    started = time.perf_counter()
    content_id = content_id_new()
    if kind == ContentKind.AUDIO:  # no frames to mark or fingerprint: its credential and registration protect it
        mime = verification.sniff_audio(Path(source).read_bytes()[:16])
        suffix = verification.AUDIO_SUFFIXES[mime]
        marked, watermark = Path(source), {"applied": False, "reason": "audio carries no frames to mark"}
    else:
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
    hashes = fingerprints_compute(signed) if kind != ContentKind.AUDIO else []
    timings["fingerprint_s"] = round(time.perf_counter() - step, 3)

    meta = media.probe(signed) if kind == ContentKind.VIDEO else {}
    if kind == ContentKind.AUDIO:
        meta = {"duration_s": media_check_audio(signed)}
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
            original_suffix = suffix if kind != ContentKind.IMAGE else Path(source).suffix or ".bin"
            content.original.save(f"{content_id}-original{original_suffix}", File(original), save=False)
            content.protected.save(f"{content_id}{suffix}", File(protected), save=False)
        timings["total_s"] = round(time.perf_counter() - started, 3)
        content.timings = timings
        try:
            content.save()
        except IntegrityError:  # a content id collision: astronomically rare, and safe to report
            raise
        fingerprints_store(content=content, hashes=hashes)
    return Protected(content, infringement_matches(organization_id=organization.pk,
                                                   hashes=[value for _at, value in hashes],
                                                   named_by_file=named_by_file))


def _refuse_too_small(path: Path, kind: str) -> None:
    """An upload whose frames are too small for the watermark is refused up front (it was a 500)."""

    if kind == "image":
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
    else:
        meta = media.probe(path)
        width, height = meta.get("width") or 0, meta.get("height") or 0
    if min(width, height) < MIN_FRAME_SIDE:
        message = (f"The {kind} is {width}x{height} pixels; the watermark needs at least "
                   f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}.")
        raise DomainError(message, code=RightsErrors.TOO_SMALL, fields={"file": [message]})


@upload_budget
def asset_protect(*, organization: Organization, path: Path, title: str, user, work_dir: Path) -> Protected:
    """An uploaded existing image or video (POST /api/v1/assets and the portal's upload): checked
    against the upload limits and protected like a generated output. Queued for registration unless it
    matches another organization's content: then it is held, as a generated job is (stages.run_protect),
    unregistered, unpublished and its protected file not served, until an operator releases or rejects
    it in the admin (`asset_hold_release`, `asset_hold_reject`)."""

    mime = verification.check_upload(path, audio=True)
    kind = "audio" if mime in verification.AUDIO_TYPES else "video" if mime == verification.MP4 else "image"
    if kind != "audio":
        _refuse_too_small(path, kind)
    protected = content_protect(
        organization=organization, source=path, kind=kind,
        origin="upload", work_dir=work_dir, title=title[:200], user=user,
        named_by_file=marked_contents(path, frames=kind != "audio"))
    content = protected.content
    if protected.infringements:
        content.rights_hold = {"matches": protected.infringements, "held_at": timezone.now().isoformat()}
        content.save(update_fields=["rights_hold"])
    else:
        registration_enqueue(content=content)
    return protected


def _operator_name(actor) -> str:
    return actor.user.email if actor.user and actor.user.is_authenticated else ""


def _asset_hold_decide(*, content: Content, actor, note: str, decision: str) -> Content:
    """Record an operator's decision on a held upload, in the content's own tenant scope (the admin
    runs unscoped, a script may run in none), under a row lock so two operators cannot both decide."""

    with tenant_scope(content.organization_id), transaction.atomic():
        content = Content.objects.select_for_update().get(pk=content.pk)
        if hold_state(content.rights_hold) != HELD:
            raise Conflict("The asset has no infringement hold waiting for a decision.",
                           code=RightsErrors.NO_RIGHTS_HOLD)
        before = dict(content.rights_hold)
        at, by = ("cleared_at", "cleared_by") if decision == "release" else ("rejected_at", "rejected_by")
        content.rights_hold = {**before, at: timezone.now().isoformat(), by: _operator_name(actor),
                               "note": note[:500]}
        content.save(update_fields=["rights_hold"])
        if decision == "release":
            registration_enqueue(content=content)
        audit_record(actor=actor, action=f"content.rights_{decision}", target=content, before={"hold": before},
                     after={"hold": content.rights_hold})
    return content


def asset_hold_release(*, content: Content, actor, note: str = "") -> Content:
    """An operator decided the held upload is not an infringement (a licence, a false match): it is
    registered now, and public once the registration is confirmed. Verification still names the earlier
    content as the original and this one as a later registration."""
    return _asset_hold_decide(content=content, actor=actor, note=note, decision="release")


def asset_hold_reject(*, content: Content, actor, note: str = "") -> Content:
    """An operator decided the held upload infringes: it is never registered nor public, its protected
    file is never served, and it no longer counts as a claim in later infringement checks."""
    return _asset_hold_decide(content=content, actor=actor, note=note, decision="reject")
