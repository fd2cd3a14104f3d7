"""Who owns this content? Public verification by exact hash, content credential, watermark and
fingerprints. Everything here reads across organizations on purpose (that is the question asked),
and answers only public facts: the content id, the owner's public name and slug, and the proof.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db.models import Q

from config import media, media_limits
from config.error_codes import KernelErrors
from config.errors import DomainError, NotFound
from config.media import sha256_file
from config.tenancy import dangerously_unscoped
from rights.credentials import credential_read
from rights.error_codes import RightsErrors
from rights.fingerprints import fingerprint_search, fingerprints_compute
from rights.models import Content, RecipientMark, RegistrationStatus
from rights.registry import proof_verify_onchain
from rights.watermark import forensic_detect, watermark_detect

logger = logging.getLogger(__name__)

PNG, JPEG, MP4 = "image/png", "image/jpeg", "video/mp4"
# Audio is taken as an asset (a music track a job's bed can be), never verified: it carries no frames to
# watermark or fingerprint, so only its credential and its registration protect it.
WAV, MP3, FLAC = "audio/wav", "audio/mpeg", "audio/flac"
AUDIO_TYPES = (WAV, MP3, FLAC)
AUDIO_SUFFIXES = {WAV: ".wav", MP3: ".mp3", FLAC: ".flac"}


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


def sniff_audio(head: bytes) -> str | None:
    """An audio file's real type from its first bytes (WAV, MP3 with or without an ID3 tag, FLAC)."""
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return WAV
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE6 == 0xE2):
        return MP3  # an ID3 tag, or an MPEG audio frame sync with layer III
    if head.startswith(b"fLaC"):
        return FLAC
    return None


def check_upload(path: Path, *, audio: bool = False) -> str:
    """Refuse what we will not decode, before decoding it: unknown types, images whose header claims
    more than MEDIA_MAX_IMAGE_PIXELS, videos over the media limits or in an unexpected stream layout
    (config.media_limits.media_check_video), files Pillow or ffmpeg cannot read. Returns the mime type.
    Every upload path calls it: verification, asset uploads (API and portal) and `manage.py protect`.
    With `audio` (asset uploads) WAV, MP3 and FLAC are taken too, checked by media_check_audio."""
    size = path.stat().st_size
    if size == 0:
        raise VerifyRefused("The file is empty.", code=RightsErrors.EMPTY_FILE)
    with open(path, "rb") as handle:
        head = handle.read(16)
    mime = sniff(head)
    if mime is None and audio and (mime := sniff_audio(head)) is not None:
        media_limits.media_check_audio(path)
        return mime
    if mime is None:
        if audio:
            raise VerifyRefused("Only PNG, JPEG, MP4, WAV, MP3 and FLAC files are taken as assets.",
                                code=RightsErrors.UNSUPPORTED_TYPE)
        raise VerifyRefused("Only PNG, JPEG and MP4 files can be verified.", code=RightsErrors.UNSUPPORTED_TYPE)
    if mime in (PNG, JPEG):
        from PIL import Image

        try:
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
        except Image.DecompressionBombError:
            raise VerifyRefused("The image is too large.", code=RightsErrors.IMAGE_TOO_LARGE) from None
        except Exception:
            raise VerifyRefused("The image cannot be read.", code=KernelErrors.UNREADABLE_FILE) from None
        if width * height > settings.MEDIA_MAX_IMAGE_PIXELS:
            raise VerifyRefused(f"The image is too large ({width}x{height}).", code=RightsErrors.IMAGE_TOO_LARGE)
        try:
            with Image.open(path) as image:  # in this process, so only once the size is known to be bounded
                image.load()
        except Exception:
            raise VerifyRefused("The image is truncated or damaged.", code=KernelErrors.UNREADABLE_FILE) from None
    else:
        media_limits.media_check_video(path)
        # The decoder's view of the stream (ffmpeg decodes its first frames here), bounded in memory and
        # time: a coded frame size larger than the container declared is refused too.
        try:
            with media_limits.media_budget(settings.MEDIA_PROBE_TIMEOUT_S):
                meta = media.probe(path)
        except DomainError:
            raise
        except Exception:
            raise VerifyRefused("The video cannot be read.", code=KernelErrors.UNREADABLE_FILE) from None
        if not meta.get("width") or not meta.get("duration_s"):
            raise VerifyRefused("The video is truncated or has no picture.", code=KernelErrors.UNREADABLE_FILE)
        media_limits.media_check_frame(meta["width"], meta["height"], limit=settings.MEDIA_MAX_PIXELS)
    return mime


@dataclass
class Match:
    content: Content
    method: str
    confidence: float


def dangerously_contents(*conditions, **lookup) -> list[Content]:
    """Contents of every organization, whatever their state (held, rejected, revoked): a read past the
    tenant scope, for the global checks that need it (the infringement check, and verification, which
    narrows it to public_contents below). Never for an answer shown as is."""
    with dangerously_unscoped():
        return list(Content.objects.select_related("organization", "registration", "registration__batch")
                    .filter(*conditions, **lookup))


def public_contents(*conditions, **lookup) -> list[Content]:
    """The contents a public answer may name: those whose registration is confirmed on chain. A held
    content has no registration yet, a rejected one never gets one, a pending or anchored one is not
    settled, and a revoked one was withdrawn: none of them is anyone's public claim of ownership."""
    return dangerously_contents(*conditions, registration__status=RegistrationStatus.CONFIRMED, **lookup)


def find_by_hash(sha256: str) -> list[Match]:
    """One query: the protected file's hash, or the original's (an asset uploaded as it was)."""
    sha256 = sha256.lower()
    contents = public_contents(Q(sha256=sha256) | Q(original_sha256=sha256))
    contents.sort(key=lambda content: content.sha256 != sha256)  # the protected file's own first
    return [Match(content, "exact_hash", 1.0) for content in contents]


def find_by_credential(path: Path) -> list[Match]:

    manifest = credential_read(path)
    if not manifest or not manifest.get("valid") or not manifest.get("content_id"):
        return []
    return [Match(c, "c2pa", 0.99) for c in public_contents(content_id=manifest["content_id"])]


def find_by_watermark(path: Path) -> list[Match]:

    found = watermark_detect(path)
    if not found.get("content_id"):
        return []
    return [Match(c, "watermark", round(float(found.get("confidence", 0)), 3))
            for c in public_contents(content_id=found["content_id"])]


def find_by_fingerprint(path: Path) -> list[Match]:

    hashes = [value for _at, value in fingerprints_compute(path)]
    if not hashes:
        return []
    searched = fingerprint_search(hashes, max_distance=settings.VERIFY_MAX_DISTANCE)
    found = {match["content_id"]: match for match in searched if match["matched_fraction"] >= settings.VERIFY_MIN_FRACTION}
    matches = []
    for content in public_contents(pk__in=list(found)) if found else []:
        hit = found[content.pk]
        confidence = hit["matched_fraction"] * (1 - hit["best_distance"] / 64)
        matches.append(Match(content, "fingerprint", round(confidence, 3)))
    return matches


METHODS = [("c2pa", find_by_credential), ("watermark", find_by_watermark), ("fingerprint", find_by_fingerprint)]


def verify_file(path: Path) -> list[Match]:
    """Every match for an uploaded file. Anonymous and heavy, so it waits for one of the process's
    VERIFY_CONCURRENCY slots and all its media work shares a VERIFY_DECODE_TIMEOUT_S budget."""
    with media_limits.verify_slot(), media_limits.media_budget(settings.VERIFY_DECODE_TIMEOUT_S):
        return _verify_checked_file(path)


def _verify_checked_file(path: Path) -> list[Match]:
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


def verify_for_owner(path: Path, *, organization_id: int) -> tuple[dict, RecipientMark | None]:
    """For a member of `organization_id` (in its tenant scope): the public answer for the file, and the
    recipient whose copy it is when it carries the forensic mark of one of that organization's share links
    (rights.watermark.forensic_detect; accepted only when the payload's CRC checks). A mark given out by
    another organization is not found here, so no one learns another studio's recipients."""
    with media_limits.verify_slot(), media_limits.media_budget(settings.VERIFY_DECODE_TIMEOUT_S):
        matches = _verify_checked_file(path)
        try:
            found = forensic_detect(path)
        except DomainError:
            raise
        except Exception:
            logger.warning("forensic read failed", exc_info=True)
            found = {}
    recipient = None
    if found.get("mark_id"):
        recipient = RecipientMark.objects.filter(organization_id=organization_id, mark_id=found["mark_id"]).first()
        if recipient is not None:
            recipient.confidence = round(float(found.get("confidence", 0)), 3)
    return verification_answer(matches), recipient


def _best_per_content(matches: list[Match]) -> list[Match]:
    """One entry per (content, method), the contents in registration order (the original first, see
    `registration_order`), each content's methods strongest first. Confidence ranks evidence within a
    content, never one content above an earlier one: a copy that matches a crop better is still a copy."""
    seen, result = set(), []
    for match in sorted(matches, key=lambda m: (registration_order(m.content), -m.confidence)):
        key = (match.content.pk, match.method)
        if key not in seen:
            seen.add(key)
            result.append(match)
    return result


def registration_order(content: Content) -> tuple:
    """Who came first: the time the platform recorded the content (it was fingerprinted and its
    claim queued then, and later copies are checked against it from that moment), then when its
    registration was queued; the content id breaks exact ties, so the answer never depends on the
    order rows come back in."""
    registration = getattr(content, "registration", None)
    return (content.created_at, registration.created_at if registration else content.created_at,
            content.content_id)


# How a later registration relates to the original the answer names.
LATER_VERSION = "later_version"  # the original's owner registered it again: an edit, a re-upload
LATER_COPY = "later_copy"  # another organization registered it later: a possible infringement


def verification_answer(matches: list[Match]) -> dict:
    """The public answer to "who owns this?": the earliest confirmed registration among the contents
    found is the original, and its owner is the one `owner`. `matches` is the original's evidence (one
    entry per method, the fields the answer always had); every other content found is listed under
    `later_registrations` with its `relation` to the original, `registered_by` instead of `owner`."""
    ranked = _best_per_content(matches)
    if not ranked:
        return {"verdict": "not_found", "owner": None, "original": None, "matches": [], "later_registrations": []}
    facts: dict = {}  # content pk -> its public facts, the on-chain proof checked once per content
    evidence: dict = {}
    for match in ranked:
        if match.content.pk not in facts:
            facts[match.content.pk] = content_public(match.content)
        evidence.setdefault(match.content.pk, []).append({"method": match.method, "confidence": match.confidence})
    original = ranked[0].content
    later = []
    for pk, shown in facts.items():
        if pk == original.pk:
            continue
        content = next(m.content for m in ranked if m.content.pk == pk)
        same_owner = content.organization_id == original.organization_id
        later.append({
            "content_id": shown["content_id"], "registered_by": shown["owner"],
            "registered_at": shown["registered_at"], "registration": shown["registration"],
            "relation": LATER_VERSION if same_owner else LATER_COPY, "possible_infringement": not same_owner,
            "original": original.content_id, "evidence": evidence[pk]})
    return {
        "verdict": "registered",
        "owner": facts[original.pk]["owner"],
        "original": {**facts[original.pk], "evidence": evidence[original.pk]},
        "matches": [match_public(match, facts[original.pk]) for match in ranked if match.content.pk == original.pk],
        "later_registrations": later,
    }


def content_public(content: Content) -> dict:
    """What anyone may learn of a public content: no project, topic or user names."""
    return {
        "content_id": content.content_id,
        "owner": {"name": content.organization.public_name, "slug": content.organization.slug},
        "registered_at": content.created_at.isoformat(),
        "registration": registration_public(getattr(content, "registration", None)),
    }


def match_public(match: Match, facts: dict | None = None) -> dict:
    """One piece of evidence for a content, with the content's public facts (computed once by the caller
    when it shows several)."""
    facts = facts or content_public(match.content)
    return {"content_id": facts["content_id"], "method": match.method, "confidence": match.confidence,
            "owner": facts["owner"], "registered_at": facts["registered_at"], "registration": facts["registration"]}


# A certificate is one content's page, not a ranking: it may show a registration on its way to the chain
# (marked pending), since only a content that passed the infringement check gets a registration at all.
CERTIFIED = (RegistrationStatus.PENDING, RegistrationStatus.ANCHORED, RegistrationStatus.CONFIRMED)


def certificate_content(content_id: str) -> Content:
    """The content behind a public certificate: registered (confirmed, or pending and shown so). A held or
    rejected content (no registration) and a revoked one answer exactly like an unknown id."""
    contents = dangerously_contents(content_id=content_id[:16], registration__status__in=CERTIFIED)
    if not contents:
        raise NotFound("No such content.")
    return contents[0]


def registration_public(registration) -> dict | None:
    if registration is None:
        return None
    batch = registration.batch
    on_chain = None
    if registration.status in ("anchored", "confirmed", "revoked"):
        try:
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
