"""python manage.py create_api_key --org SLUG --name NAME [--scopes a,b,...]; prints only the key."""
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.audit import Actor
from accounts.models import Organization
from accounts.roles import SCOPES
from config.tenancy import tenant_scope
from config.errors import DomainError


class Command(BaseCommand):
    help = "Create an API key for an organization and print it (only the key, once)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", default="", help=f"comma-separated; default all of: {', '.join(SCOPES)}")

    def handle(self, *args, org, name, scopes, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organization with slug {org!r}")
        wanted = [scope.strip() for scope in scopes.split(",") if scope.strip()] or list(SCOPES)
        # An operator at the console may grant any scope.
        actor = Actor(scopes=frozenset(SCOPES))
        try:
            with tenant_scope(organization):
                _key, plain = services.api_key_create(organization=organization, name=name, scopes=wanted, actor=actor)
        except DomainError as exc:
            raise CommandError(f"{exc.message} {exc.fields}")
        self.stdout.write(plain)
