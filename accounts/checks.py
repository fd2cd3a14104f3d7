"""System checks that keep tenancy impossible to forget."""
from django.apps import apps
from django.core import checks
from django.db import connections

from config.tenancy import TenantManager

# Rows that point at an organization but are not owned by one.
NOT_TENANT_OWNED: set[str] = set()


@checks.register(checks.Tags.models)
def tenant_models_are_scoped(app_configs=None, **kwargs):
    errors = []
    organization = apps.get_model("accounts", "Organization")
    for model in apps.get_models():
        points_at_org = any(
            getattr(field, "related_model", None) is organization and field.many_to_one for field in model._meta.fields
        )
        if points_at_org and model._meta.label not in NOT_TENANT_OWNED:
            if not isinstance(model._default_manager, TenantManager):
                errors.append(
                    checks.Error(
                        f"{model._meta.label} belongs to an organization but its default manager is not scoped",
                        hint="Derive it from config.tenancy.TenantModel.",
                        obj=model,
                        id="accounts.E001",
                    )
                )
    return errors


@checks.register(checks.Tags.database, deploy=True)
def database_role_cannot_bypass_rls(app_configs=None, databases=None, **kwargs):
    warnings = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
            (bypasses,) = cursor.fetchone()
        if bypasses:
            warnings.append(
                checks.Warning(
                    "The database role is a superuser or has BYPASSRLS: row level security is not enforced.",
                    hint="Connect as an ordinary role that owns the tables (see README, Production).",
                    id="accounts.W001",
                )
            )
    return warnings
