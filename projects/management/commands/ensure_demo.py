"""Used by `make run`: the public template library, and on first run a demo organization and owner
(printing the login)."""
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts import services
from accounts.models import Organization
from projects.templates import ensure_public_library

DEMO_EMAIL = "owner@demo.studio"


class Command(BaseCommand):
    help = "Create the demo organization and its owner if no organization exists yet; print the login."

    def handle(self, *args, **options):
        ensure_public_library()
        login_file = settings.VAR_DIR / "demo-login.txt"
        if Organization.objects.exclude(slug="platform").exists():
            if login_file.exists():
                self.stdout.write(login_file.read_text().strip())
            return
        password = secrets.token_urlsafe(12)
        owner = services.user_create(email=DEMO_EMAIL, password=password, full_name="Demo Owner")
        services.organization_create(name="Demo Studio", slug="demo", owner=owner)
        login = f"demo login: {DEMO_EMAIL} / {password}"
        login_file.write_text(login + "\n")
        login_file.chmod(0o600)
        self.stdout.write(login)
