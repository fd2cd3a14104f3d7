"""python manage.py protect INPUT OUTPUT --org SLUG: protect and register an existing file."""
import shutil
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from config.tenancy import tenant_scope
from config.errors import DomainError
from config.media_limits import media_budget
from rights.verification import MP4, check_upload


class Command(BaseCommand):
    help = "Watermark, sign, fingerprint and register an image or video; write the protected file to OUTPUT."

    def add_arguments(self, parser):
        parser.add_argument("input", type=Path)
        parser.add_argument("output", type=Path)
        parser.add_argument("--org", required=True, help="organization slug (the owner)")
        parser.add_argument("--title", default="", help="private title")
        parser.add_argument("--no-anchor", action="store_true", help="leave the registration in the outbox")

    def handle(self, *args, input: Path, output: Path, org: str, title: str, no_anchor: bool, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organization with slug {org!r}")
        if not input.is_file():
            raise CommandError(f"{input} is not a file")
        started = time.perf_counter()
        # The limits of an upload through the API: the same checks, and the same time budget for the
        # whole protection (an operator's file can be hostile too).
        try:
            with media_budget(settings.MEDIA_DECODE_TIMEOUT_S):
                content, registration, infringements = self._protect(organization, input, output, title)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        anchored = ""
        if not no_anchor:
            from rights.registry import registrations_anchor

            registrations_anchor()
            with tenant_scope(organization):
                registration.refresh_from_db()
            anchored = f" tx {registration.tx_hash} block {registration.block_number}"
        timings = " ".join(f"{key}={value}" for key, value in content.timings.items())
        self.stdout.write(f"content id {content.content_id}")
        self.stdout.write(f"registration {registration.status}{anchored}")
        self.stdout.write(f"timings {timings} total_with_registration={time.perf_counter() - started:.2f}s")
        if infringements:
            owners = ", ".join(sorted({m["owner"] for m in infringements}))
            self.stderr.write(f"warning: matches content registered by {owners}")

    def _protect(self, organization, input: Path, output: Path, title: str):
        from rights.registry import registration_enqueue
        from rights.services import content_protect

        mime = check_upload(input)
        work = Path(tempfile.mkdtemp(prefix="protect-"))
        try:
            with tenant_scope(organization):
                protected = content_protect(organization=organization, source=input,
                                            kind="video" if mime == MP4 else "image", origin="upload",
                                            work_dir=work, title=title or input.name)
                content = protected.content
                registration = registration_enqueue(content=content)
                with content.protected.open("rb") as source, open(output, "wb") as out:
                    shutil.copyfileobj(source, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return content, registration, protected.infringements
