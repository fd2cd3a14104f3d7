"""The portal's scope check, reading the same role map as the API's `HasScope`."""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import render


def requires_scope(scope: str):
    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if request.organization is None:
                return render(request, "accounts/no_organization.html", status=403)
            if scope not in request.scopes:
                raise PermissionDenied(f"needs {scope}")
            return view(request, *args, **kwargs)

        wrapped.required_scope = scope
        return wrapped

    return decorator
