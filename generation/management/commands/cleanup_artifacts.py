"""`manage.py cleanup_artifacts [--dry-run] [--older-than DAYS]`: delete the intermediate artifacts
(shot frames and clips of finished jobs, files no job refers to) unused for DAYS, as every worker's
sweep does once an hour with ARTIFACT_RETENTION_DAYS (generation/retention.py says what is kept)."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.retention import artifacts_cleanup


def size_text(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


class Command(BaseCommand):
    help = "Delete intermediate artifacts (frames, clips) of finished jobs unused for --older-than days."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument("--older-than", type=int, default=None, metavar="DAYS",
                            help="days since last use (default: ARTIFACT_RETENTION_DAYS)")

    def handle(self, *args, dry_run=False, older_than=None, **options):
        days = settings.ARTIFACT_RETENTION_DAYS if older_than is None else older_than
        if older_than is None and days <= 0:
            self.stdout.write("ARTIFACT_RETENTION_DAYS is 0: artifacts are kept forever (pass --older-than DAYS "
                              "to clean up anyway); nothing deleted")
            return
        if days < 1:
            raise CommandError("--older-than must be at least 1 day")
        result = artifacts_cleanup(older_than_days=days, dry_run=dry_run)
        verb, freed = ("would delete", "would be freed") if dry_run else ("deleted", "freed")
        self.stdout.write(f"{verb} {result.artifacts} artifacts unused for {days} days, "
                          f"{size_text(result.bytes)} ({result.bytes} bytes) {freed}")
