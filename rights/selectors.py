"""Reads of the rights app."""
from __future__ import annotations

from accounts.audit import Actor
from config.tenancy import scoped_object
from rights.models import Content, RegistrationStatus
from rights.verification import CERTIFIED, registration_public

HELD, RELEASED, REJECTED = "held", "released", "rejected"


def content_hold(content: Content, *, job=None) -> dict:
    """The infringement hold on a content: an upload's own, or its job's for a generated output."""
    if content.rights_hold:
        return content.rights_hold
    job = job if job is not None else (content.job if content.job_id else None)
    return (job.rights_hold or {}) if job is not None else {}


def hold_state(hold: dict) -> str:
    """'' (never held), held (waiting for an operator), released or rejected."""
    if not hold.get("matches"):
        return ""
    if hold.get("rejected_at"):
        return REJECTED
    return RELEASED if hold.get("cleared_at") else HELD


def content_claims(content: Content) -> bool:
    """Whether the content stands as its organization's claim, against which later uploads and outputs
    are checked for infringement: not revoked, not waiting on a hold and not rejected. A pending
    registration counts (its content was recorded first, and a copy must not slip in before it settles)."""
    registration = getattr(content, "registration", None)
    if registration is not None and registration.status == RegistrationStatus.REVOKED:
        return False
    return hold_state(content_hold(content)) not in (HELD, REJECTED)


def content_rights(*, job=None, content: Content | None = None, request=None) -> dict | None:
    """The rights block shown with a job or an asset: the content's evidence and registration."""
    if content is None:
        content = Content.objects.select_related("registration", "registration__batch").filter(job=job).order_by(
            "-created_at").first()
    if content is None:
        return {"hold": job.rights_hold} if job is not None and job.rights_hold else None

    registration = getattr(content, "registration", None)
    hold = content_hold(content, job=job)
    # The certificate is public once the content is registered (rights.verification.certificate_content).

    public = registration is not None and registration.status in CERTIFIED
    certificate = f"/certificates/{content.content_id}/"
    return {
        "content_id": content.content_id,
        "sha256": content.sha256,
        "watermark": content.watermark,
        "fingerprint_count": content.fingerprint_count,
        "c2pa": content.c2pa,
        "registration": registration_public(registration) if registration else None,
        "certificate_url": (request.build_absolute_uri(certificate) if request else certificate) if public else None,
        "hold": hold,
        "hold_state": hold_state(hold),
    }


def access_asset(actor: Actor | None, asset_id) -> Content:
    """A content of the active organization (an upload or a job's output), or NotFound."""
    return scoped_object(asset_list(), asset_id, what="asset")


def asset_list():
    """The organization's contents, newest first, with their registrations (the tenant scope limits them)."""
    return Content.objects.select_related("registration", "registration__batch", "created_by").order_by("-created_at")
