"""python manage.py create_org <slug> --name NAME --owner EMAIL [--password PW]"""
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import User
from config.errors import DomainError


class Command(BaseCommand):
    help = "Create an organization and its owner (the owner is created when the email is new)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--public-name", default="")
        parser.add_argument("--owner", required=True, help="the owner's email")
        parser.add_argument("--password", help="password for a new owner; without it the owner cannot sign in yet")

    def handle(self, *args, slug, name, public_name, owner, password, **options):
        try:
            user = User.objects.filter(email=owner.lower()).first()
            if user is None:
                user = services.user_create(email=owner, password=password)
            organization = services.organization_create(name=name, slug=slug, owner=user, public_name=public_name)
        except DomainError as exc:
            raise CommandError(f"{exc.message} {exc.fields or ''}".strip())
        except Exception as exc:  # model validation of the slug
            raise CommandError(str(exc))
        self.stdout.write(f"created organization {organization.slug} (id {organization.pk}) owned by {user.email}")
