"""Signals of the accounts app: after migrations, row level security on every tenant table (PostgreSQL
only); and the domain events that higher apps subscribe to."""
from django.db import connections
from django.db.models.signals import post_migrate
from django.dispatch import Signal, receiver

from config.tenancy import rls_apply


@receiver(post_migrate)
def apply_row_level_security(sender, using="default", **kwargs) -> None:
    # Run once per migrate, after the last app: post_migrate fires for each app config.
    if sender.name == "accounts":
        rls_apply(connection=connections[using])


# Sent after the commit that reinstates a suspended organization (accounts.services), with
# `organization_id`; the generation app subscribes and wakes the steps that waited meanwhile.
organization_reinstated = Signal()
