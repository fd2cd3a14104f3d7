"""Review and delivery: a job's versions, comments pinned to frames, reviewers' decisions, notifications,
and share links for people without an account, each serving a copy with its own forensic watermark.

A version is a composed output of the job (`JobVersion`, v1, v2, ...), recorded by the pipeline when compose
makes a video the latest version does not have (`version_record`, inside job_advance's lock). The job's
current version is its latest one. With `approval_required`, the template's `approval_rule` says whether one
assigned reviewer (`any`, the default; any member with job:approve when none is assigned) or every assigned
reviewer (`all`) must approve the current version before it is protected and registered; a request for
changes sends the job back to editing (status `changes_requested`) until a shot is edited or regenerated
and the next version renders.

A share link names one version (or the current one), is reached by a token stored hashed, and may need a
passphrase (hashed, wrong ones throttled per link and address), expire, allow downloads and comments. The
file it serves is made once per link and version (`ShareCopy`): the version's protected video (or, before
protection, its composed one) with the link's forensic mark in the luma plane (rights.watermark), and,
unless turned off, a visible "DRAFT - <recipient>" line. Every view, download, comment and wrong passphrase
is logged with time, address and user agent (`ShareAccess`).
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.files import File
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.api.throttling import rate_hit
from accounts.audit import Actor, audit_record
from accounts.models import Membership
from accounts.roles import scopes_for_role
from config.errors import Conflict, DomainError, Forbidden, NotFound
from config.media import sha256_file
from config.tenancy import dangerously_unscoped, tenant_scope
from generation import events
from generation.error_codes import GenerationErrors
from generation.media import font_path
from generation.models import (
    Comment,
    Job,
    JobReviewer,
    JobStatus,
    JobVersion,
    Notification,
    ReviewDecision,
    ReviewOutcome,
    ShareAccess,
    ShareAction,
    ShareCopy,
    ShareLink,
    Stage,
    StepStatus,
)
from projects.templates import APPROVAL_RULES
from rights.models import Content, RecipientMark
from rights.watermark import content_id_new, watermark_forensic_video

logger = logging.getLogger(__name__)

COMMENT_MAX = 4000
REGION_MAX_POINTS = 500
MENTION = re.compile(r"@([\w.+-]+@[\w-]+(?:\.[\w-]+)+|[\w.+-]+)")


class Gone(DomainError):
    status = 410
    code = GenerationErrors.SHARE_LINK_GONE


def _who(actor: Actor) -> str:
    if actor.user is not None and actor.user.is_authenticated:
        return actor.user.email
    if actor.api_key is not None:
        return f"API key {actor.api_key.name}"
    return "system"


def _user(actor: Actor):
    return actor.user if actor.user is not None and actor.user.is_authenticated else None


# --- versions ---------------------------------------------------------------------------------------


def version_current(job: Job) -> JobVersion | None:
    return job.versions.order_by("-number").first()


def version_get(job: Job, number: int | None) -> JobVersion:
    """Version `number` of the job, or its current one for None; NotFound for a number it does not have."""
    version = version_current(job) if number is None else job.versions.filter(number=number).first()
    if version is None:
        if number is None:
            raise Conflict("The job has no composed version yet.", code=GenerationErrors.NO_VERSION)
        raise NotFound(f"The job has no version {number}.")
    return version


def change_note(job: Job, entry: dict) -> None:
    """Remember a shot edit, regeneration or restore for the next version's change list (the caller
    saves `pending_changes` with the job)."""
    job.pending_changes = [*job.pending_changes, {**entry, "at": timezone.now().isoformat()}]


def version_record(job: Job, steps: dict) -> JobVersion | None:
    """Record the composed video as the next version when the latest version is another video (or a
    restore asked for a new number). Runs inside job_advance, the job locked."""
    compose = steps.get((Stage.COMPOSE, 0))
    if compose is None or compose.status != StepStatus.SUCCEEDED or compose.artifact_id is None:
        return None
    latest = version_current(job)
    restore = next((c for c in job.pending_changes if c.get("change") == "restored"), None)
    if latest is not None and latest.artifact_id == compose.artifact_id and restore is None:
        return None
    regenerations = {f"{stage}:{shot}": step.regeneration for (stage, shot), step in steps.items()
                     if stage in (Stage.FRAME, Stage.CLIP) and step.regeneration}
    by = next((c.get("user") for c in reversed(job.pending_changes) if c.get("user")), None) or job.created_by_id
    version = JobVersion.objects.create(
        organization_id=job.organization_id, job=job, number=(latest.number + 1) if latest else 1,
        artifact_id=compose.artifact_id, changes=[{k: v for k, v in c.items() if k != "user"}
                                                  for c in job.pending_changes],
        restored_from=restore.get("from") if restore else None, shot_edits=job.shot_edits,
        regenerations=regenerations, created_by_id=by)
    job.pending_changes = []
    Job.objects.filter(pk=job.pk).update(pending_changes=[])
    events.job_event(job, "version.created", version_summary(version))
    if job.template_snapshot.get("settings", {}).get("approval_required"):
        for reviewer in reviewer_users(job):
            notify(user=reviewer, job=job, kind="review.awaiting",
                   message=f"{job.topic[:120]}: v{version.number} awaits your review")
    return version


def version_summary(version: JobVersion) -> dict:
    return {"number": version.number, "changes": version.changes, "restored_from": version.restored_from,
            "created_at": version.created_at.isoformat()}


def version_content(version: JobVersion) -> Content | None:
    """The version's protected content (its own rights record), once the rights stages made it."""
    return (Content.objects.filter(job_id=version.job_id, original_sha256=version.artifact.content_hash)
            .exclude(protected="").order_by("created_at").first())


def version_contents(job: Job, versions: list[JobVersion]) -> dict:
    """Each version's protected content, in one query: version pk -> Content."""
    by_hash = {}
    hashes = [v.artifact.content_hash for v in versions]
    for content in (Content.objects.filter(job_id=job.pk, original_sha256__in=hashes)
                    .exclude(protected="").order_by("-created_at")):
        by_hash[content.original_sha256] = content  # the oldest wins, as version_content
    return {v.pk: by_hash[v.artifact.content_hash] for v in versions if v.artifact.content_hash in by_hash}


def version_file(version: JobVersion):
    """The file that leaves the platform for this version: its protected video, else the composed one."""
    content = version_content(version)
    return content.protected if content is not None else version.artifact.file


def version_download_name(job: Job, version: JobVersion, extension: str = "mp4") -> str:
    title = re.sub(r"[^\w\- ]+", "", job.topic, flags=re.UNICODE).strip()[:80] or "video"
    return f"{title} v{version.number}.{extension}"


def version_restore_prepare(*, job: Job, number: int, actor: Actor) -> JobVersion:
    """Put the job (locked by the caller) back to version `number`'s shot edits and regeneration counters,
    so that every step's digest finds the artifacts that version was made of (no re-render); the caller
    reruns the shots, and the pipeline records the result as the next version."""
    version = version_get(job, number)
    current = version_current(job)
    if current is not None and current.number == version.number:
        raise Conflict(f"v{number} is already the current version.")
    job.shot_edits = version.shot_edits
    for step in job.steps.filter(stage__in=[Stage.FRAME, Stage.CLIP]):
        wanted = version.regenerations.get(f"{step.stage}:{step.shot}", 0)
        if step.regeneration != wanted:
            step.regeneration = wanted
            step.save(update_fields=["regeneration"])
    change_note(job, {"change": "restored", "from": number, "by": _who(actor),
                      "user": getattr(_user(actor), "pk", None)})
    return version


# --- reviewers and decisions --------------------------------------------------------------------------


def reviewer_users(job: Job) -> list:
    return [assignment.user for assignment in job.reviewers.select_related("user")]


def reviewers_set(*, job: Job, emails: list[str], actor: Actor) -> list[str]:
    """Assign the members with these emails as the job's reviewers (replacing the assignment). Each must be
    a member whose role may approve."""
    emails = sorted({email.strip().lower() for email in emails if email.strip()})
    members = {m.user.email.lower(): m for m in Membership.objects.filter(user__email__in=emails)
               .select_related("user")}
    unknown = [email for email in emails if email not in members]
    cannot = [email for email in emails if email in members and "job:approve" not in
              scopes_for_role(members[email].role)]
    if unknown or cannot:
        raise DomainError("Some reviewers cannot be assigned.", fields={"reviewers": (
            [f"{email}: not a member" for email in unknown]
            + [f"{email}: their role cannot approve" for email in cannot])})
    with transaction.atomic():
        job.reviewers.exclude(user__in=[m.user for m in members.values()]).delete()
        current = version_current(job) if job.status == JobStatus.AWAITING_APPROVAL else None
        for member in members.values():
            _assignment, new = JobReviewer.objects.get_or_create(organization_id=job.organization_id, job=job,
                                                                 user=member.user)
            if new and current is not None:  # a version already awaits them
                notify(user=member.user, job=job, kind="review.awaiting",
                       message=f"{job.topic[:120]}: v{current.number} awaits your review")
        audit_record(actor=actor, action="job.reviewers_set", target=job, after={"reviewers": emails})
    return emails


def approval_rule(job: Job) -> str:
    return job.template_snapshot.get("settings", {}).get("approval_rule", "any")


def decisions_latest(version: JobVersion) -> dict:
    """Each reviewer's latest decision on the version: reviewer key -> decision (oldest first, so later wins)."""
    latest = {}
    for decision in sorted(version.decisions.all(), key=lambda d: d.created_at):  # prefetched by lists
        latest[decision.reviewer_id or decision.reviewer_name] = decision
    return latest


def reviewers_assigned(job: Job) -> dict:
    return {a.user_id: a.user.email for a in job.reviewers.select_related("user")}


def approval_state(job: Job, version: JobVersion | None, *, assigned: dict | None = None) -> dict:
    """Who approved the version, who must still, and whether the rule is met (`assigned`: the job's
    reviewers_assigned, when the caller shows several versions)."""
    assigned = reviewers_assigned(job) if assigned is None else assigned
    if version is None:
        return {"rule": approval_rule(job), "approved": False, "approved_by": [], "waiting_for": [],
                "changes_requested": False}
    latest = decisions_latest(version)
    approved = {key for key, d in latest.items() if d.outcome == ReviewOutcome.APPROVED}
    changes = any(d.outcome == ReviewOutcome.CHANGES_REQUESTED for d in latest.values())
    rule = approval_rule(job)
    if assigned:
        met = set(assigned) <= approved if rule == "all" else bool(set(assigned) & approved)
        waiting = [email for pk, email in assigned.items() if pk not in approved] if not met else []
    else:
        met, waiting = bool(approved), []
    return {"rule": rule, "approved": met and not (changes and rule == "all"),
            "approved_by": [{"reviewer": d.reviewer_name, "at": d.created_at.isoformat()}
                            for d in latest.values() if d.outcome == ReviewOutcome.APPROVED],
            "waiting_for": waiting, "changes_requested": changes}


def _decide(job: Job, actor: Actor, version_number: int | None, outcome: str, note: str) -> tuple[Job, JobVersion]:
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status not in (JobStatus.AWAITING_APPROVAL, JobStatus.CHANGES_REQUESTED):
        raise Conflict("The job is not waiting for approval.", code=GenerationErrors.NOT_AWAITING_APPROVAL)
    current = version_get(job, None)
    if version_number is not None and version_number != current.number:
        raise Conflict(f"v{version_number} is not the current version (v{current.number}).",
                       code=GenerationErrors.VERSION_NOT_CURRENT)
    assigned = set(job.reviewers.values_list("user_id", flat=True))
    user = _user(actor)
    if assigned and (user is None or user.pk not in assigned):
        raise Forbidden("Reviewers are assigned to this job and you are not one of them.",
                        code=GenerationErrors.NOT_A_REVIEWER)
    ReviewDecision.objects.create(organization_id=job.organization_id, job=job, version=current, reviewer=user,
                                  reviewer_name=_who(actor), outcome=outcome, note=note[:2000])
    return job, current


def decision_approve(*, job: Job, actor: Actor, version: int | None = None, note: str = "") -> Job:
    """Record the actor's approval of the current version (the job locked by the caller, who advances the
    pipeline after); once the template's rule is met, the job is approved and goes on to protection."""
    job, current = _decide(job, actor, version, ReviewOutcome.APPROVED, note)
    state = approval_state(job, current)
    audit_record(actor=actor, action="job.approve", target=job,
                 after={"version": current.number, "rule_met": state["approved"]})
    events.job_event(job, "review.approved", {"version": current.number, "by": _who(actor),
                                              "rule_met": state["approved"], "waiting_for": state["waiting_for"]})
    _notify_producer(job, actor, f"{_who(actor)} approved v{current.number} of {job.topic[:120]}")
    if state["approved"]:
        job.approved_at, job.approved_by = timezone.now(), _user(actor)
        job.save(update_fields=["approved_at", "approved_by"])
        events.job_event(job, "approved", {"by": _who(actor), "version": current.number})
    return job


def decision_request_changes(*, job: Job, actor: Actor, version: int | None = None, note: str = "") -> Job:
    """The reviewer wants changes: the job goes back to editing (`changes_requested`, once the caller advances
    the pipeline) with the version's open comments for the producer; an edited or regenerated shot renders
    the next version."""
    job, current = _decide(job, actor, version, ReviewOutcome.CHANGES_REQUESTED, note)
    job.approved_at, job.approved_by = None, None
    job.save(update_fields=["approved_at", "approved_by"])
    open_comments = current.comments.filter(resolved_at__isnull=True, parent__isnull=True).count()
    audit_record(actor=actor, action="job.request_changes", target=job,
                 after={"version": current.number, "note": note[:500], "open_comments": open_comments})
    events.job_event(job, "review.changes_requested", {"version": current.number, "by": _who(actor),
                                                       "note": note[:500], "open_comments": open_comments})
    _notify_producer(job, actor, f"{_who(actor)} requested changes to v{current.number} of {job.topic[:120]}")
    return job


def changes_requested(job: Job) -> bool:
    """Whether the latest decision on the current version asks for changes (the job then waits for edits)."""
    current = version_current(job)
    if current is None:
        return False
    latest = current.decisions.order_by("-created_at", "-id").first()
    return latest is not None and latest.outcome == ReviewOutcome.CHANGES_REQUESTED


# --- notifications -------------------------------------------------------------------------------------


def notify(*, user, job: Job | None, kind: str, message: str) -> Notification:
    """A portal notification for `user`, and the same by email after commit."""
    note = Notification.objects.create(organization_id=job.organization_id if job else None, user=user, job=job,
                                       kind=kind, message=message[:300])
    email = user.email
    transaction.on_commit(lambda: _mail(email, message))
    return note


def _mail(email: str, message: str) -> None:
    try:
        send_mail(subject=message[:120], message=message, from_email=settings.DEFAULT_FROM_EMAIL,
                  recipient_list=[email], fail_silently=False)
    except Exception:  # a mail server down must not undo the review; the portal notification stays
        logger.warning("notification email to %s failed", email, exc_info=True)


def _notify_producer(job: Job, actor: Actor, message: str) -> None:
    producer = job.created_by
    if producer is not None and producer != _user(actor):
        notify(user=producer, job=job, kind="review.outcome", message=message)


def notifications_for(user, *, limit: int = 50) -> list[Notification]:
    return list(Notification.objects.filter(user=user).select_related("job").order_by("-id")[:limit])


def notifications_read(user) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())


# --- comments ------------------------------------------------------------------------------------------


def _fps(job: Job) -> int:
    return int(job.options.get("fps") or 24)


def _frames_of(version: JobVersion) -> int | None:
    metadata = (version.artifact.data or {}).get("metadata") or {}
    duration = metadata.get("duration_s")
    return int(round(float(duration) * _fps(version.job))) if duration else None


def _region_check(region) -> dict | None:
    if region in (None, {}):
        return None
    if not isinstance(region, dict) or region.get("type") not in ("rect", "points"):
        raise DomainError("A region is {type: rect, x, y, w, h} or {type: points, points: [[x, y], ...]}, "
                          "in 0..1 of the picture.", fields={"region": ["rect or points"]})

    def unit(value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise DomainError("Region coordinates are fractions of the picture, 0 to 1.",
                              fields={"region": ["coordinates from 0 to 1"]})
        return round(float(value), 5)

    if region["type"] == "rect":
        x, y, w, h = (unit(region.get(key)) for key in ("x", "y", "w", "h"))
        if w <= 0 or h <= 0 or x + w > 1.00001 or y + h > 1.00001:
            raise DomainError("The rectangle must have a size and lie inside the picture.",
                              fields={"region": ["inside the picture"]})
        return {"type": "rect", "x": x, "y": y, "w": w, "h": h}
    points = region.get("points")
    if not isinstance(points, list) or not 2 <= len(points) <= REGION_MAX_POINTS or \
            any(not isinstance(p, list) or len(p) != 2 for p in points):
        raise DomainError(f"A freehand region has 2 to {REGION_MAX_POINTS} [x, y] points.",
                          fields={"region": [f"2 to {REGION_MAX_POINTS} points"]})
    return {"type": "points", "points": [[unit(x), unit(y)] for x, y in points]}


def _mentions(job: Job, body: str) -> list:
    """Members named in the text as @email or @the part of their email before the @."""
    words = {match.lower() for match in MENTION.findall(body)}
    if not words:
        return []
    found = []
    for member in Membership.objects.filter(organization_id=job.organization_id).select_related("user"):
        email = member.user.email.lower()
        if email in words or email.split("@")[0] in words:
            found.append(member.user)
    return found


def comment_create(*, job: Job, actor: Actor | None, body: str, version: int | None = None,
                   frame: int | None = None, time_s: float | None = None, frame_end: int | None = None,
                   shot: int | None = None, region=None, parent=None, share_link: ShareLink | None = None,
                   author_name: str = "", author_email: str = "") -> Comment:
    """A comment on a version (the current one unless named), pinned to a frame at the job's fps (given as
    a frame or a time in seconds), optionally to a range, a shot and a drawn region; or a reply in a thread."""
    body = (body or "").strip()
    if not body or len(body) > COMMENT_MAX:
        raise DomainError(f"A comment has 1 to {COMMENT_MAX} characters.", fields={"body": ["1 to 4000 characters"]})
    target = version_get(job, version) if share_link is None or share_link.version_id is None else share_link.version
    if parent is not None:
        root = job.comments.filter(pk=parent).select_related("version").first()
        if root is None:
            raise NotFound("No such comment.")
        if root.parent_id:  # threads are one level deep: a reply to a reply joins the thread
            root = root.parent
        target, frame, frame_end, shot, region = root.version, None, None, None, None
    elif frame is None and time_s is not None:
        if isinstance(time_s, bool) or not isinstance(time_s, (int, float)) or time_s < 0:
            raise DomainError("`time_s` is a time in seconds from 0.", fields={"time_s": ["seconds from 0"]})
        frame = int(round(float(time_s) * _fps(job)))
    total = _frames_of(target)
    for name, value in (("frame", frame), ("frame_end", frame_end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0
                                  or (total is not None and value >= total)):
            raise DomainError(f"`{name}` is a frame of the version, 0 to {(total or 1) - 1}.",
                              fields={name: [f"0 to {(total or 1) - 1}"]})
    if frame_end is not None and (frame is None or frame_end < frame):
        raise DomainError("A range ends at or after its first frame.", fields={"frame_end": ["after frame"]})
    shots = int(job.options.get("shots", 8))
    if shot is not None and (isinstance(shot, bool) or not isinstance(shot, int) or not 1 <= shot <= shots):
        raise DomainError(f"The job has shots 1 to {shots}.", fields={"shot": ["a shot number"]})
    user = _user(actor) if actor is not None else None
    mentioned = _mentions(job, body) if share_link is None else []
    comment = Comment.objects.create(
        organization_id=job.organization_id, job=job, version=target, parent=root if parent is not None else None,
        author=user, author_name=(author_name or (user.email if user else _who(actor) if actor else ""))[:200],
        author_email=(author_email or (user.email if user else ""))[:254], share_link=share_link,
        body=body, frame=frame, frame_end=frame_end, shot=shot, region=_region_check(region),
        mentions=[u.email for u in mentioned])
    events.job_event(job, "comment.created", comment_summary(comment))
    for member in mentioned:
        if member != user:
            notify(user=member, job=job, kind="comment.mention",
                   message=f"{comment.author_name} mentioned you on v{target.number} of {job.topic[:120]}")
    if job.created_by is not None and job.created_by != user and job.created_by not in mentioned:
        notify(user=job.created_by, job=job, kind="comment.created",
               message=f"{comment.author_name} commented on v{target.number} of {job.topic[:120]}")
    return comment


def comment_summary(comment: Comment) -> dict:
    fps = _fps(comment.job)
    return {"id": str(comment.pk), "version": comment.version.number, "parent": str(comment.parent_id or "") or None,
            "author": comment.author_name, "body": comment.body, "frame": comment.frame,
            "frame_end": comment.frame_end, "time_s": round(comment.frame / fps, 3) if comment.frame is not None
            else None, "shot": comment.shot, "region": comment.region, "mentions": comment.mentions,
            "resolved": comment.resolved_at is not None, "created_at": comment.created_at.isoformat(),
            "edited_at": comment.edited_at.isoformat() if comment.edited_at else None,
            "via_share_link": comment.share_link_id is not None}


def comment_edit(*, comment: Comment, actor: Actor, body: str) -> Comment:
    user = _user(actor)
    if user is None or comment.author_id != user.pk:
        raise Forbidden("Only its author can edit a comment.")
    if timezone.now() - comment.created_at > timedelta(seconds=settings.COMMENT_EDIT_WINDOW_S):
        raise Conflict("Comments can be edited for a short while only.", code=GenerationErrors.COMMENT_EDIT_CLOSED)
    body = (body or "").strip()
    if not body or len(body) > COMMENT_MAX:
        raise DomainError(f"A comment has 1 to {COMMENT_MAX} characters.", fields={"body": ["1 to 4000 characters"]})
    comment.body, comment.edited_at = body, timezone.now()
    comment.save(update_fields=["body", "edited_at"])
    events.job_event(comment.job, "comment.edited", comment_summary(comment))
    return comment


def comment_resolve(*, comment: Comment, actor: Actor, resolved: bool) -> Comment:
    comment.resolved_at, comment.resolved_by = (timezone.now(), _user(actor)) if resolved else (None, None)
    comment.save(update_fields=["resolved_at", "resolved_by"])
    audit_record(actor=actor, action="comment.resolve" if resolved else "comment.reopen", target=comment.job,
                 after={"comment": str(comment.pk)})
    events.job_event(comment.job, "comment.resolved" if resolved else "comment.reopened", comment_summary(comment))
    return comment


def comments_of(job: Job, *, version: int | None = None, share_link: ShareLink | None = None) -> list[Comment]:
    """The job's comments (of one version when asked; only a link's own when it is a guest's view), threads
    in order: each root then its replies. Two queries whatever their number."""
    rows = job.comments.select_related("version", "job")
    if version is not None:
        rows = rows.filter(version__number=version)
    if share_link is not None:
        rows = rows.filter(share_link=share_link)
    rows = list(rows.order_by("created_at", "id"))
    roots = [c for c in rows if c.parent_id is None]
    replies: dict = {}
    for c in rows:
        if c.parent_id is not None:
            replies.setdefault(c.parent_id, []).append(c)
    ordered = []
    for root in roots:
        ordered.append(root)
        ordered += replies.get(root.pk, [])
    return ordered


# --- share links ---------------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def share_link_create(*, job: Job, actor: Actor, recipient: str, version: int | None = None, passphrase: str = "",
                      expires_in_hours: float | None = None, allow_download: bool = False,
                      allow_comments: bool = True, visible_watermark: bool = True) -> tuple[ShareLink, str]:
    """A share link for one version (or the current one); returns it and its token, shown once."""
    recipient = (recipient or "").strip()
    if not recipient or len(recipient) > 200:
        raise DomainError("Say who the link is for (1 to 200 characters).", fields={"recipient": ["required"]})
    if passphrase and not 6 <= len(passphrase) <= 200:
        raise DomainError("A passphrase has 6 to 200 characters.", fields={"passphrase": ["6 to 200 characters"]})
    if expires_in_hours is not None and not 0 < expires_in_hours <= 24 * 365:
        raise DomainError("A link expires within a year.", fields={"expires_in_hours": ["0 to 8760 hours"]})
    pinned = version_get(job, version) if version is not None else None
    if pinned is None:
        version_get(job, None)  # there must be something to show
    token = secrets.token_urlsafe(24)
    with transaction.atomic():
        for _attempt in range(5):  # a forensic id is 40 random bits: a clash is rare, and retried
            mark_id = content_id_new()
            try:
                with transaction.atomic():
                    link = ShareLink.objects.create(
                        organization_id=job.organization_id, job=job, version=pinned, recipient=recipient,
                        token_hash=_token_hash(token), token_prefix=token[:8], mark_id=mark_id,
                        passphrase_hash=make_password(passphrase) if passphrase else "",
                        expires_at=timezone.now() + timedelta(hours=expires_in_hours) if expires_in_hours else None,
                        allow_download=allow_download, allow_comments=allow_comments,
                        visible_watermark=visible_watermark, created_by=_user(actor))
                    RecipientMark.objects.create(organization_id=job.organization_id, mark_id=mark_id,
                                                 recipient=recipient, reference=str(link.pk))
                break
            except IntegrityError:
                continue
        else:
            raise Conflict("Could not give the link a forensic id; try again.")
        audit_record(actor=actor, action="share_link.create", target=job,
                     after={"link": str(link.pk), "recipient": recipient, "version": pinned.number if pinned else None,
                            "passphrase": bool(passphrase), "expires_at": link.expires_at.isoformat()
                            if link.expires_at else None, "allow_download": allow_download})
    return link, token


def share_link_revoke(*, link: ShareLink, actor: Actor) -> ShareLink:
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="share_link.revoke", target=link.job, after={"link": str(link.pk)})
    return link


def share_link_state(link: ShareLink) -> str:
    if link.revoked_at is not None:
        return "revoked"
    if link.expires_at is not None and link.expires_at <= timezone.now():
        return "expired"
    return "active"


def share_open(token: str) -> ShareLink:
    """The link a token opens, its organization's scope to be entered by the caller; NotFound for an unknown
    token, Gone (410) once it expired or was revoked. The one read past the tenant scope: the token is it."""
    with dangerously_unscoped():
        link = (ShareLink.objects.select_related("job", "version", "organization", "job__project")
                .filter(token_hash=_token_hash(token or "")).first())
    if link is None:
        raise NotFound("No such share link.")
    if share_link_state(link) != "active":
        raise Gone("This link expired or was revoked.")
    return link


def share_passphrase_check(link: ShareLink, passphrase: str, *, ip: str | None, user_agent: str) -> None:
    """Refuse a wrong passphrase (logged), and every try once SHARE_PASSPHRASE_RATE wrong ones came from the
    address for the link (429 with the wait)."""
    if not link.passphrase_hash:
        return
    wait = rate_hit("share-pass-check", f"{link.pk}:{ip or 'unknown'}", settings.SHARE_PASSPHRASE_CHECK_RATE)
    if wait:
        error = DomainError("Too many passphrase tries; wait, then try again.", code=GenerationErrors.SHARE_THROTTLED)
        error.retry_after = max(1, int(wait + 0.999))
        raise error
    if check_password(passphrase or "", link.passphrase_hash):
        return
    share_log(link, ShareAction.PASSPHRASE_FAILED, ip=ip, user_agent=user_agent)
    raise Forbidden("The passphrase is wrong.", code=GenerationErrors.SHARE_PASSPHRASE)


def share_log(link: ShareLink, action: str, *, ip: str | None, user_agent: str) -> ShareAccess:
    with tenant_scope(link.organization_id):
        return ShareAccess.objects.create(organization_id=link.organization_id, link=link, action=action,
                                          ip=ip or None, user_agent=(user_agent or "")[:300])


def share_version(link: ShareLink) -> JobVersion:
    if link.version_id is not None:
        return link.version
    version = version_current(link.job)
    if version is None:
        raise Conflict("The shared job has no version yet.", code=GenerationErrors.SHARE_NOT_READY)
    return version


def _visible_filter(link: ShareLink, width: int, height: int) -> str | None:
    """ffmpeg's drawtext for "DRAFT - <recipient>" in the corner, from the fonts we ship (never downloaded)."""
    if not link.visible_watermark or font_path() is None:
        return None
    text = f"DRAFT - {link.recipient}"[:80]
    escaped = text.replace("\\", "\\\\").replace("'", "\u2019").replace(":", "\\:").replace("%", "\\%")
    size = max(12, height // 24)
    return (f"drawtext=fontfile='{font_path()}':text='{escaped}':fontsize={size}:fontcolor=white@0.55:"
            f"borderw=1:bordercolor=black@0.35:x=w-tw-{size}:y={size}")


def share_copy(link: ShareLink, version: JobVersion) -> ShareCopy:
    """The link's copy of the version, made once (the first view or download waits for it): the version's
    file with the link's forensic mark and, unless turned off, its visible line. Two requests at once make
    it once: the second waits on the first's lock and finds its row."""
    with tenant_scope(link.organization_id):
        existing = ShareCopy.objects.filter(link=link, version=version).first()
        if existing is not None:
            return existing
        with transaction.atomic():
            ShareLink.objects.select_for_update().filter(pk=link.pk).first()
            existing = ShareCopy.objects.filter(link=link, version=version).first()
            if existing is not None:
                return existing
            source_file = version_file(version)
            if not source_file:
                raise Conflict("The shared version has no video yet.", code=GenerationErrors.SHARE_NOT_READY)
            work = Path(tempfile.mkdtemp(prefix="share-"))
            try:
                source = work / "source.mp4"
                with source_file.open("rb") as handle, open(source, "wb") as out:
                    shutil.copyfileobj(handle, out)
                from config.media import probe

                info = probe(source)
                started = time.perf_counter()
                marked = work / "copy.mp4"
                watermark_forensic_video(source, marked, link.mark_id,
                                         vf=_visible_filter(link, info["width"], info["height"]))
                seconds = round(time.perf_counter() - started, 3)
                copy = ShareCopy(organization_id=link.organization_id, link=link, version=version,
                                 sha256=sha256_file(marked), seconds=seconds)
                with open(marked, "rb") as handle:
                    copy.file.save(f"share-{link.pk}-v{version.number}.mp4", File(handle), save=False)
                copy.save()
                logger.info("share copy for link %s v%s made in %.2f s", link.pk, version.number, seconds)
                return copy
            finally:
                shutil.rmtree(work, ignore_errors=True)
