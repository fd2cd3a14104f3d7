"""Base views of the API. `OrganizationAPIView` resolves the organization before any handler runs,
activates its tenant scope for the whole request, and leaves the scope check to `HasScope`.

The organization comes from the API key, or for a signed-in user from the `X-Organization` header
(a slug) or the organization chosen in the portal.
"""
from __future__ import annotations

from contextlib import ExitStack

from rest_framework import exceptions, generics
from rest_framework.views import APIView

from accounts.audit import Actor, client_ip
from accounts.error_codes import AccountsErrors
from accounts.middleware import SESSION_ORGANIZATION_KEY
from accounts.models import ApiKey
from accounts.roles import scopes_for_role
from accounts.selectors import membership_of, memberships_of_user
from config.tenancy import tenant_scope


def organization_for_user(request):
    """The membership a signed-in user acts through on this request, or None."""
    slug = request.headers.get("X-Organization", "").strip()
    if slug:
        memberships = [m for m in memberships_of_user(user=request.user) if m.organization.slug == slug]
        if not memberships:
            raise exceptions.NotFound("No such organization.")
        return memberships[0]
    chosen = request.session.get(SESSION_ORGANIZATION_KEY) if hasattr(request, "session") else None
    if chosen is not None:
        membership = membership_of(user=request.user, organization_id=chosen)
        if membership is not None:
            return membership
    memberships = memberships_of_user(user=request.user)
    return memberships[0] if len(memberships) == 1 else None


class OrganizationAPIView(generics.GenericAPIView):
    """Every tenant endpoint derives from this. Subclasses declare `required_scopes`."""

    required_scopes: dict[str, str | None] = {}
    # A detail view names its thing's access helper (`access = staticmethod(selectors.access_member)`) and
    # the URL's id (`lookup_url_kwarg`): get_object() is then the object of this organization, or the same
    # 404 for a missing id and another organization's, as in the portal.
    access = None

    def get_object(self):
        if self.access is None:
            return super().get_object()
        return self.access(self.request.actor, self.kwargs[self.lookup_url_kwarg])

    def dispatch(self, request, *args, **kwargs):
        with ExitStack() as scope_stack:
            self.scope_stack = scope_stack
            return super().dispatch(request, *args, **kwargs)

    def perform_authentication(self, request):
        request.organization, request.scopes = None, frozenset()
        user, key = request.user, request.auth
        if isinstance(key, ApiKey):
            organization, scopes = key.organization, frozenset(key.scopes)
        elif user.is_authenticated:
            membership = organization_for_user(request._request)
            if membership is None:
                return
            organization, scopes = membership.organization, scopes_for_role(membership.role)
        else:
            return
        if organization.is_suspended:
            raise exceptions.PermissionDenied("This organization is suspended.",
                                              code=AccountsErrors.ORGANIZATION_SUSPENDED)
        request.organization, request.scopes = organization, scopes
        request.actor = Actor(
            user=user if user.is_authenticated else None,
            api_key=key if isinstance(key, ApiKey) else None,
            ip_address=client_ip(request),
            scopes=scopes,
        )
        self.scope_stack.enter_context(tenant_scope(organization))


class PublicAPIView(APIView):
    """Endpoints anyone may call (health, verification, accepting an invitation)."""

    authentication_classes: list = []
    required_scopes: dict[str, str | None] = {}
