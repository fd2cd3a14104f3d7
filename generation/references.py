"""A job's references to the studio's uploaded assets: a product or character image (the reference of image
providers; composited by the offline renderer) for every shot or one shot, a logo (a corner of every
frame, or an end card), and a music track (the bed, in place of the generated one). They name assets by
their public content id; only the job's own organization's assets of the right kind qualify, and none held
for a possible infringement or rejected by an operator.

    job.options["references"] = {"image": "<content id>", "logo": "<content id>", "logo_placement": "corner",
                                 "music": "<content id of an audio asset>"}
    job.shot_edits["3"]["reference"] = "<content id>"   # shot 3's own image; "" for none
"""
from __future__ import annotations

import shutil
from pathlib import Path

from config.errors import DomainError
from rights.models import Content, ContentKind

# The kind of asset each reference takes.
ASSET_KEYS = {"image": ContentKind.IMAGE, "logo": ContentKind.IMAGE, "music": ContentKind.AUDIO}
LOGO_PLACEMENTS = ("corner", "end_card")
REFERENCE_KEYS = (*ASSET_KEYS, "logo_placement")
# A shot edit's key for the shot's own image reference.
SHOT_REFERENCE = "reference"


def _asset(organization_id: int, content_id, kind: str = ContentKind.IMAGE) -> tuple[Content | None, str]:
    """The organization's usable asset of that content id and kind, or None and why not."""
    if not isinstance(content_id, str) or not content_id.strip():
        return None, f"a content id of one of the studio's {kind} assets"
    content = Content.objects.filter(organization_id=organization_id, content_id=content_id.strip()).first()
    if content is None:
        return None, "no such asset in this studio"
    why = asset_problem(content, kind)
    return (None, why) if why else (content, "")


def asset_problem(content: Content, kind: str = ContentKind.IMAGE) -> str:
    """Why a job cannot build on this content ("" when it can): another kind, held or rejected, no file."""
    if content.kind != kind:
        needed = "an image" if kind == ContentKind.IMAGE else "a music track"
        return f"the asset is a {content.kind}; {needed} is needed"
    hold = content.rights_hold or {}
    if hold.get("rejected_at") or (hold.get("matches") and not hold.get("cleared_at")):
        return "the asset is held for a possible infringement"
    if not (content.original or content.protected):
        return "the asset has no file"
    return ""


def references_validate(*, organization_id: int, value) -> dict:
    """The job's references, normalized ({} for none). Raises DomainError 400 with the errors under
    `fields.options.references`."""
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise DomainError("Some options are invalid.", fields={"options": {"references": ["Expected an object."]}})
    errors: dict = {key: ["Unknown key."] for key in value if key not in REFERENCE_KEYS}
    references = {}
    for key, kind in ASSET_KEYS.items():
        if value.get(key) in (None, ""):
            continue
        content, why = _asset(organization_id, value[key], kind)
        if content is None:
            errors[key] = [why]
        else:
            references[key] = content.content_id
    placement = value.get("logo_placement") or "corner"
    if placement not in LOGO_PLACEMENTS:
        errors["logo_placement"] = [f"one of {', '.join(LOGO_PLACEMENTS)}"]
    elif "logo" in references:
        references["logo_placement"] = placement
    if errors:
        raise DomainError("Some options are invalid.", fields={"options": {"references": errors}})
    return references


def shot_reference_validate(*, organization_id: int, value) -> str:
    """A shot edit's reference: "" (the shot uses none, not even the job's) or a usable image asset's id."""
    if value == "":
        return ""
    content, why = _asset(organization_id, value)
    if content is None:
        raise DomainError("The shot changes are invalid.", fields={SHOT_REFERENCE: [why]})
    return content.content_id


def shot_image_reference(job, shot: dict) -> str:
    """The content id of the image a shot's frame builds on ("" for none): the shot's own, else the job's."""
    if SHOT_REFERENCE in shot:
        return shot[SHOT_REFERENCE] or ""
    return (job.options.get("references") or {}).get("image", "")


def logo_reference(job) -> tuple[str, str]:
    """The job's logo content id ("" for none) and its placement."""
    references = job.options.get("references") or {}
    return references.get("logo", ""), references.get("logo_placement", "corner")


def music_reference(job) -> str:
    """The content id of the job's own music track ("" for the generated bed)."""
    return (job.options.get("references") or {}).get("music", "")


def reference_sha256(organization_id: int, content_id: str) -> str:
    """What a step's digest holds of a reference: the asset's original bytes, so a replaced file reruns."""
    content = Content.objects.filter(organization_id=organization_id, content_id=content_id).first()
    return (content.original_sha256 or content.sha256) if content else f"missing:{content_id}"


def reference_file(organization_id: int, content_id: str, work_dir: Path, name: str) -> Path:
    """A local copy of the asset's original (the protected file where no original was kept)."""
    content = Content.objects.get(organization_id=organization_id, content_id=content_id)
    stored = content.original or content.protected
    target = Path(work_dir) / f"{name}{Path(stored.name).suffix or '.png'}"
    with stored.open("rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target
