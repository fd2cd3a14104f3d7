"""Reads of the rights app."""
from __future__ import annotations

from rights.models import Content


def content_rights(*, job=None, content: Content | None = None, request=None) -> dict | None:
    """The rights block shown with a job or an asset: the content's evidence and registration."""
    if content is None:
        content = Content.objects.select_related("registration", "registration__batch").filter(job=job).order_by(
            "-created_at").first()
    if content is None:
        return {"hold": job.rights_hold} if job is not None and job.rights_hold else None
    from rights.verification import registration_public

    registration = getattr(content, "registration", None)
    certificate = f"/certificates/{content.content_id}/"
    return {
        "content_id": content.content_id,
        "sha256": content.sha256,
        "watermark": content.watermark,
        "fingerprint_count": content.fingerprint_count,
        "c2pa": content.c2pa,
        "registration": registration_public(registration) if registration else None,
        "certificate_url": request.build_absolute_uri(certificate) if request else certificate,
        "hold": job.rights_hold if job is not None else {},
    }
