"""How long stored files live: the intermediate artifacts of finished jobs are deleted after
ARTIFACT_RETENTION_DAYS, and their rows with them, so that an identical step later recomputes its
output instead of reusing a digest whose file is gone.

Intermediate: files no job shows or needs once it has finished, that is the shot frames and clips
(the compose step turns them into the video), and files no job refers to any more (the earlier video
and thumbnail of a job whose shots were edited, the files of deleted jobs). Never deleted: the composed
video of any job and the files made with it (its thumbnail and subtitles: its download before
protection, and what protect and review read),
the rights files (originals and protected outputs live on `rights.Content`, not here), the JSON
outputs (style, script, storyboard: rows, not files, shown on the job page), and anything used by a
job that is not finished, such as one awaiting approval, or used by any step within the window.
Narration is not stored: it lives in the compose step's working folder only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from config.tenancy import dangerously_unscoped
from generation.models import TERMINAL_JOB_STATUSES, Artifact, Job, JobStatus, Stage, Step, StepStatus

logger = logging.getLogger(__name__)

INTERMEDIATE_STAGES = (Stage.FRAME, Stage.CLIP)
BATCH = 200
# The sweep runs the cleanup once per interval across every process (a shared cache key), and
# deletes at most this many artifacts per run; the command has no limit.
SWEEP_INTERVAL_S = 3600
SWEEP_LIMIT = 2000
SWEEP_CACHE_KEY = "generation:artifact-cleanup"


@dataclass
class Cleanup:
    artifacts: int = 0
    bytes: int = 0
    dry_run: bool = False
    older_than_days: int = 0


def _needing(cutoff) -> Q:
    """Steps that keep an artifact: of a job not finished, of a stage whose output is final, or used
    (made or reused) within the retention window."""
    return (~Q(job__status__in=TERMINAL_JOB_STATUSES) | ~Q(stage__in=INTERMEDIATE_STAGES)
            | Q(finished_at__gte=cutoff) | Q(finished_at__isnull=True))


def _still_needed(cutoff):
    return Step.objects.filter(artifact_id=OuterRef("pk")).filter(_needing(cutoff))


def _expired(cutoff):
    return Artifact.objects.filter(created_at__lt=cutoff).exclude(file="").exclude(Exists(_still_needed(cutoff)))


def _named_by_jobs(ids: list[str]) -> set[str]:
    """Of these artifact ids, those a job's output names (the final video and thumbnail of a completed job)."""
    named = set()
    for output in Job.objects.filter(Q(output__video_artifact__in=ids) | Q(output__thumbnail_artifact__in=ids)
                                     ).values_list("output", flat=True):
        named.update(str(output.get(key)) for key in ("video_artifact", "thumbnail_artifact"))
    return named


def derived_files(data) -> list[str]:
    """The ids of the files a video's compose step made beside it (its thumbnail, its subtitles)."""
    if not isinstance(data, dict):
        return []
    subtitles = data.get("subtitle_artifacts") if isinstance(data.get("subtitle_artifacts"), dict) else {}
    return [str(pk) for pk in (data.get("thumbnail_artifact"), *subtitles.values()) if pk]


def _derived_of(ids: list[str]) -> Q:
    return (Q(data__thumbnail_artifact__in=ids) | Q(data__subtitle_artifacts__srt__in=ids)
            | Q(data__subtitle_artifacts__vtt__in=ids))


def _referenced_elsewhere(ids: list[str], cutoff, *, videos_going: bool = True) -> set[str]:
    """Of these artifact ids, those still named elsewhere: by a job's output, or by the data of a video
    that stays (its thumbnail and subtitles). In the listing a video that goes in this same cleanup does
    not keep them; at the delete itself (videos_going=False) any video still there does: the video goes
    first, its files right after it (artifacts_cleanup)."""
    named = _named_by_jobs(ids)
    videos = list(Artifact.objects.filter(_derived_of(ids)).values_list("pk", "data"))
    if videos and not videos_going:
        named.update(pk for _, data in videos for pk in derived_files(data))
    elif videos:
        video_ids = [str(pk) for pk, _ in videos]
        going = {str(pk) for pk in _expired(cutoff).filter(pk__in=video_ids).values_list("pk", flat=True)}
        going -= _named_by_jobs(video_ids)
        named.update(derived for pk, data in videos if str(pk) not in going for derived in derived_files(data))
    return named


def _expired_page(cutoff, after: tuple | None) -> tuple[list[Artifact], tuple | None]:
    """The next page of expired artifacts after `after` (created_at, pk), oldest first, and where the
    page ended; (.., None) when there are no more. Unscoped: the cleanup serves every tenant."""
    with dangerously_unscoped():
        page = _expired(cutoff).order_by("created_at", "pk").only("pk", "file", "size", "created_at")
        if after is not None:
            page = page.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], pk__gt=after[1]))
        batch = list(page[:BATCH])
        if not batch:
            return [], None
        named = _referenced_elsewhere([str(a.pk) for a in batch], cutoff)
    return [a for a in batch if str(a.pk) not in named], (batch[-1].created_at, batch[-1].pk)


def artifacts_cleanup(*, older_than_days: int, dry_run: bool = False, limit: int | None = None) -> Cleanup:
    """Delete the expired artifacts' files and rows, page by page; returns how many and how many bytes."""
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    result = Cleanup(dry_run=dry_run, older_than_days=older_than_days)
    cutoff = timezone.now() - timedelta(days=older_than_days)
    after, more = None, True
    while more and (limit is None or result.artifacts < limit):
        batch, after = _expired_page(cutoff, after)
        more = after is not None
        for artifact in batch[:None if limit is None else limit - result.artifacts]:
            pending = [artifact if dry_run else _artifact_delete(artifact.pk, cutoff)]
            while pending:
                deleted = pending.pop(0)
                if deleted is None:
                    continue
                result.artifacts += 1
                result.bytes += deleted.size
                # A video's thumbnail and subtitles are deleted after it, never before: a video that stays
                # (reused meanwhile, or past the sweep's cap) never names a file that is gone.
                if not dry_run:
                    pending += [_artifact_delete(pk, cutoff) for pk in derived_files(deleted.data)]
    if result.artifacts and not dry_run:
        logger.info("artifact cleanup: deleted %d files (%d bytes) unused for %d days", result.artifacts,
                    result.bytes, older_than_days)
    return result


def _artifact_delete(artifact_id, cutoff) -> Artifact | None:
    """Delete one artifact's row, then (after commit) its file; returns it, or None when it stays.
    Checked again under a lock: a job may have started using it since it was listed. The row goes
    first: a file without a row is only space, a row without its file would be a broken reuse."""
    with dangerously_unscoped(), transaction.atomic():
        artifact = _expired(cutoff).select_for_update().filter(pk=artifact_id).first()
        steps = Step.objects.filter(artifact_id=artifact_id)
        # Asked again now that the row is locked: the query above judged the steps as they were when it
        # began, and a step that took the artifact (job_advance's reuse) may have committed while it
        # waited for the lock. From here on a step taking it waits for this transaction, then fails.
        if (artifact is None or steps.filter(_needing(cutoff)).exists()
                or str(artifact.pk) in _referenced_elsewhere([str(artifact.pk)], cutoff, videos_going=False)):
            return None
        # A failed or cancelled job can be retried: its step runs again rather than reading nothing.
        steps.filter(job__status__in=[JobStatus.FAILED, JobStatus.CANCELLED]).update(
            status=StepStatus.BLOCKED, artifact=None, reused=False, finished_at=None)
        # A completed job keeps its finished steps; a shot edit puts every shot step back to blocked.
        steps.update(artifact=None)
        name, storage = artifact.file.name, artifact.file.storage
        Artifact.objects.filter(pk=artifact.pk).delete()
        transaction.on_commit(lambda: _file_delete(storage, name))
    return artifact


def _file_delete(storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:  # the row is gone already: a leftover object only takes space
        logger.exception("artifact cleanup: could not delete %s from storage", name)


def artifacts_cleanup_due() -> int:
    """From every worker's sweep: the cleanup with ARTIFACT_RETENTION_DAYS, at most once per
    SWEEP_INTERVAL_S across all processes (a shared cache key). Returns the artifacts deleted; 0 when
    not due, when retention is off (0), or when it failed (logged; the next interval tries again)."""
    days = settings.ARTIFACT_RETENTION_DAYS
    if days <= 0 or not cache.add(SWEEP_CACHE_KEY, timezone.now().isoformat(), SWEEP_INTERVAL_S):
        return 0
    try:
        return artifacts_cleanup(older_than_days=days, limit=SWEEP_LIMIT).artifacts
    except Exception:
        logger.exception("artifact cleanup failed")
        return 0
