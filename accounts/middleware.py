"""Portal entry point of tenant scoping: the signed-in user's active organization is resolved
once per request and its scope wraps the view. The API and the admin have their own entry points."""
from __future__ import annotations

from django.shortcuts import render

from accounts.selectors import membership_of, memberships_of_user
from config.tenancy import tenant_scope

SESSION_ORGANIZATION_KEY = "organization_id"
UNSCOPED_PREFIXES = ("/api/", "/admin/", "/static/", "/media/")


def active_membership(user, session):
    """The organization chosen in this session, or the user's first one."""
    chosen = session.get(SESSION_ORGANIZATION_KEY)
    if chosen is not None:
        membership = membership_of(user=user, organization_id=chosen)
        if membership is not None:
            return membership
    memberships = memberships_of_user(user=user)
    return memberships[0] if memberships else None


class PortalOrganizationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership, request.organization, request.scopes = None, None, frozenset()
        if request.path.startswith(UNSCOPED_PREFIXES) or not request.user.is_authenticated:
            return self.get_response(request)
        membership = active_membership(request.user, request.session)
        if membership is None:
            return self.get_response(request)
        if membership.organization.is_suspended and request.path != "/logout/":
            return render(request, "errors/suspended.html", {"organization": membership.organization}, status=403)
        request.membership, request.organization = membership, membership.organization
        request.scopes = membership.scopes
        with tenant_scope(membership.organization):
            return self.get_response(request)
