"""After migrations, put row level security on every tenant table (PostgreSQL only)."""
from django.db import connections
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from accounts.tenancy import rls_apply


@receiver(post_migrate)
def apply_row_level_security(sender, using="default", **kwargs) -> None:
    # Run once per migrate, after the last app: post_migrate fires for each app config.
    if sender.name == "accounts":
        rls_apply(connection=connections[using])
