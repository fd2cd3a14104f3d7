"""Fail-closed tenant scoping.

Every tenant-owned model uses `TenantManager`, which refuses to build a query unless a scope is
active: one organization (`tenant_scope`) or, for operators and cross-tenant system work, an
explicit `dangerously_unscoped()`. The scope lives in a context variable, so it follows the request
or task through threads started by asgiref and Channels. On PostgreSQL the same scope drives row
level security (see `rls_settings` and config/db/postgresql), a second wall under the ORM.
"""
from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import models

from config.errors import NotFound

UNSCOPED = "*"

_scope: contextvars.ContextVar[int | str | None] = contextvars.ContextVar("tenant_scope", default=None)


class ScopeError(RuntimeError):
    """A tenant-owned model was used with no scope, or with another tenant's scope."""


@contextmanager
def tenant_scope(organization) -> Iterator[None]:
    """Limit every tenant-owned query inside the block to one organization (object or id)."""
    organization_id = getattr(organization, "pk", organization)
    if not isinstance(organization_id, int):
        raise ScopeError(f"tenant_scope needs an organization or its integer id, not {organization!r}")
    token = _scope.set(organization_id)
    try:
        yield
    finally:
        _scope.reset(token)


@contextmanager
def dangerously_unscoped() -> Iterator[None]:
    """Lift tenant scoping inside the block. For the operators' admin, management commands
    and system tasks that must see every tenant; grep for this name to audit the bypasses."""
    token = _scope.set(UNSCOPED)
    try:
        yield
    finally:
        _scope.reset(token)


def current_scope() -> int | str | None:
    """The active organization id, UNSCOPED, or None when no scope is active."""
    return _scope.get()


def rls_settings() -> tuple[str, str]:
    """The values of `app.organization_id` and `app.unscoped` that PostgreSQL should see now."""
    scope = _scope.get()
    if scope is None:
        return ("", "off")
    if scope == UNSCOPED:
        return ("", "on")
    return (str(scope), "off")


class TenantManager(models.Manager):
    use_in_migrations = False

    def get_queryset(self) -> models.QuerySet:
        scope = _scope.get()
        if scope is None:
            raise ScopeError(f"{self.model.__name__} was queried outside a tenant scope")
        queryset = super().get_queryset()
        if scope == UNSCOPED:
            return queryset
        return queryset.filter(organization_id=scope)


class TenantModel(models.Model):
    """Base of every row owned by one organization."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", editable=False
    )

    objects = TenantManager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        scope = _scope.get()
        if scope is None:
            raise ScopeError(f"{type(self).__name__} was saved outside a tenant scope")
        if scope != UNSCOPED:
            if self.organization_id is None:
                self.organization_id = scope
            elif self.organization_id != scope:
                raise ScopeError(f"{type(self).__name__} of another organization was saved in this scope")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        scope = _scope.get()
        if scope is None or (scope != UNSCOPED and self.organization_id != scope):
            raise ScopeError(f"{type(self).__name__} was deleted outside its tenant scope")
        return super().delete(*args, **kwargs)


def tenant_models() -> list[type[models.Model]]:
    """Every concrete model whose default manager is tenant-scoped."""
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if isinstance(model._default_manager, TenantManager) and not model._meta.proxy
    ]


RLS_POLICY = """
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON {table};
CREATE POLICY tenant_isolation ON {table}
    USING (current_setting('app.unscoped', true) = 'on'
           OR organization_id = NULLIF(current_setting('app.organization_id', true), '')::bigint)
    WITH CHECK (current_setting('app.unscoped', true) = 'on'
           OR organization_id = NULLIF(current_setting('app.organization_id', true), '')::bigint);
"""


def rls_apply(*, connection) -> list[str]:
    """Enable row level security on every tenant table (idempotent); returns the tables."""
    if connection.vendor != "postgresql":
        return []
    tables = []
    with connection.cursor() as cursor:
        for model in tenant_models():
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(RLS_POLICY.format(table=table))
            tables.append(model._meta.db_table)
    return tables


def scoped_object(queryset, pk, *, what: str):
    """The object `pk` of `queryset` under the active tenant scope, or NotFound: a missing object and
    another organization's answer the same. Each app's `access_<thing>(actor, id)` helper is this, with
    the thing's queryset; the API answers 404 and the portal its 404 page."""
    found = queryset.filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No such {what}.")
    return found
