"""`manage.py setup_ca`: create the deployment's private CA and content-credentials signing certificate.

Idempotent: with the files already in RIGHTS_KEYS_DIR it only prints the root's fingerprint.
"""
from django.core.management.base import BaseCommand

from rights.credentials import ca_ensure


class Command(BaseCommand):
    help = "Create the private CA (root + C2PA signing certificate) in RIGHTS_KEYS_DIR unless it exists."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true",
            help="Replace an existing CA. Credentials signed under the old root stop reading as trusted; "
                 "the old files are moved to a retired-<time>/ folder.",
        )

    def handle(self, *args, force: bool = False, **options):
        info = ca_ensure(force=force)
        if info["created"]:
            self.stdout.write(self.style.SUCCESS(f"Created the content-credentials CA in {info['keys_dir']}"))
        else:
            self.stdout.write(f"The content-credentials CA already exists in {info['keys_dir']} (--force replaces it)")
        self.stdout.write(f"Root: {info['root_subject']}")
        self.stdout.write(f"Signer: {info['signer_subject']} (valid until {info['signer_not_after']})")
        self.stdout.write(f"Root SHA-256 fingerprint: {info['root_fingerprint']}")
