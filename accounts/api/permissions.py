"""The one API permission check: the view declares a scope per method, the caller must hold it."""
from __future__ import annotations

from rest_framework import exceptions, permissions

from accounts.error_codes import AccountsErrors

PUBLIC = None  # a method declared with this scope needs no authentication


def required_scope(view, method: str) -> str | None:
    """The scope `view` declares for `method`; KeyError when it declares nothing (refused)."""
    declared = view.required_scopes
    if method == "HEAD":
        method = "GET"
    if method == "OPTIONS" and "OPTIONS" not in declared:
        method = "GET" if "GET" in declared else next(iter(declared))
    return declared[method]


class HasScope(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        try:
            scope = required_scope(view, request.method)
        except (AttributeError, KeyError, StopIteration):
            # A method without a declared scope is closed, not open.
            raise exceptions.MethodNotAllowed(request.method)
        if scope is PUBLIC:
            return True
        if not getattr(request, "organization", None):
            raise exceptions.NotAuthenticated("Send an API key (Authorization: Bearer ...) or sign in.")
        if scope not in request.scopes:
            raise exceptions.PermissionDenied(f"This needs the {scope} scope.", code=AccountsErrors.MISSING_SCOPE)
        return True
