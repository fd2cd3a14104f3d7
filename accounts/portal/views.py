"""Portal pages of the accounts app: sign in and out, password reset, switching organization, accepting
an invitation, and the team pages (members, invitations, API keys, the audit log). The dashboard is the
composition root's (config/dashboard.py), the webhook pages the generation app's
(generation/portal/webhooks.py); both are served in this app's `accounts` namespace.

Like the API views (accounts/api/views.py, generation/api/webhooks.py), they read through selectors,
act through services and check the same scopes; the services enforce the rules (owner rules, the
scopes a key may carry, the addresses a webhook may call). Another organization's object answers
404, like a missing one."""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.audit import client_ip
from accounts.decorators import requires_scope
from accounts.forms import (
    ROLE_LABELS,
    ApiKeyForm,
    AuditFilterForm,
    InvitationAcceptForm,
    InvitationForm,
    LoginForm,
    MemberRoleForm,
    login_locked_message,
)
from accounts.middleware import SESSION_ORGANIZATION_KEY
from accounts.portal.base import flash_refused, form_submit, page_of, portal_actor
from accounts.roles import SCOPES
from accounts.selectors import membership_of
from config.errors import DomainError

INVITATION_STATUS_LABELS = {
    "pending": gettext_lazy("pending"), "accepted": gettext_lazy("accepted"),
    "revoked": gettext_lazy("revoked"), "expired": gettext_lazy("expired"),
}

# --- signing in and out ------------------------------------------------------------------------


def login_view(request):
    if request.user.is_authenticated:
        return redirect("accounts:dashboard")
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            user = services.login_authenticate(request=request, email=form.cleaned_data["email"],
                                               password=form.cleaned_data["password"])
        except services.LoginLocked as exc:
            wait = exc.retry_after
            form.add_error(None, login_locked_message(wait))
            status = 429
        else:
            if user is None:
                form.add_error(None, _("The email or password is wrong."))
                status = 401
            else:
                login(request, user)
                target = request.POST.get("next") or request.GET.get("next") or ""
                if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
                    target = reverse("accounts:dashboard")
                return HttpResponseRedirect(target)
    response = render(request, "accounts/login.html", {"form": form, "next": request.GET.get("next", "")}, status=status)
    if status == 429:
        response["Retry-After"] = str(wait)
    return response


@require_POST
def logout_view(request):
    logout(request)
    return redirect("accounts:login")


@login_required
@require_POST
def organization_switch(request):
    membership = membership_of(user=request.user, organization_id=_int(request.POST.get("organization")))
    if membership is None:
        return render(request, "404.html", status=404)
    request.session[SESSION_ORGANIZATION_KEY] = membership.organization_id
    return redirect("accounts:dashboard")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- password reset: Django's views, our templates and route names ------------------------------


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password-reset-done")

    def form_valid(self, form):
        # Over the limit the answer is the same as always (the "sent" page), only no mail goes out.
        if services.password_reset_allowed(email=form.cleaned_data["email"], ip=client_ip(self.request)):
            return super().form_valid(form)
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """The link carries the user and token in its query (`?uid=&token=`), not in the path: the route
    then has no path parameters naming an object, which the tenant isolation walk would expect to
    answer 404 across organizations (a reset link belongs to a person, not to an organization)."""

    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password-reset-complete")

    def dispatch(self, request, *args, **kwargs):
        uid, token = request.GET.get("uid", ""), request.GET.get("token", "")
        response = super().dispatch(request, uidb64=uid, token=token)
        if isinstance(response, HttpResponseRedirect) and not self.validlink:
            # Django moved the token into the session; the form's address keeps only the user.
            query = urlencode({"uid": uid, "token": self.reset_url_token})
            return HttpResponseRedirect(f"{request.path}?{query}")
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"


# --- invitations (the public side) ----------------------------------------------------------------


def invitation_accept(request, token: str):
    try:
        invitation = services.invitation_by_token(token)
    except DomainError as exc:
        return render(request, "accounts/invitation_invalid.html", {"error": exc}, status=exc.status)
    form = InvitationAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.invitation_accept(
                token=token, user=request.user, ip=client_ip(request),
                password=form.cleaned_data["password"] or None, full_name=form.cleaned_data["full_name"],
            )
        except DomainError as exc:
            for message in exc.fields.get("password", []) if exc.fields else []:
                form.add_error("password", message)
            form.add_error(None, exc.message)
        else:
            if not request.user.is_authenticated:
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_ORGANIZATION_KEY] = membership.organization_id
            messages.success(request, _("Welcome to %(organization)s.") % {"organization": invitation.organization.name})
            return redirect("accounts:dashboard")
    return render(request, "accounts/invitation_accept.html", {
        "invitation": invitation, "form": form, "role_label": ROLE_LABELS.get(invitation.role, invitation.role),
    })


# --- team: members and invitations ------------------------------------------------------------


def _page(request, queryset, param: str):
    """A page of a second list on the same page, with its own `?<param>=`."""
    return Paginator(queryset, 25).get_page(request.GET.get(param))


def _team_page(request, *, invite_form=None, invitation_link=None, status=200):
    can_manage = "members:manage" in request.scopes
    members = page_of(request, selectors.member_list())
    for member in members:
        member.role_label = ROLE_LABELS.get(member.role, member.role)
        member.is_me = member.user_id == request.user.pk
    invitations = _page(request, selectors.invitation_list().filter(accepted_at=None, revoked_at=None), "invitations")
    for invitation in invitations:
        invitation.role_label = ROLE_LABELS.get(invitation.role, invitation.role)
        invitation.status_label = INVITATION_STATUS_LABELS.get(invitation.status, invitation.status)
    return render(request, "accounts/team.html", {
        "members": members, "invitations": invitations, "can_manage": can_manage,
        "invite_form": invite_form or (InvitationForm(auto_id="invite-%s") if can_manage else None),
        "role_form": MemberRoleForm(), "invitation_link": invitation_link, "tab": "members",
    }, status=status)


@requires_scope("members:read")
def team(request):
    return _team_page(request)


class TeamPage(View):
    """A team action; `scope` is the API's scope for the same action."""

    scope = "members:manage"

    def dispatch(self, request, *args, **kwargs):
        return requires_scope(self.scope)(super().dispatch)(request, *args, **kwargs)


class InvitationCreatePage(TeamPage):
    def post(self, request):
        form = InvitationForm(request.POST, auto_id="invite-%s")
        created = form_submit(form, lambda data: services.invitation_create(
            organization=request.organization, email=data["email"], role=data["role"], actor=portal_actor(request)))
        if form.is_valid():
            invitation, token = created
            # The token is stored hashed: this answer is the only place the link appears besides
            # the email, which embedded mode writes to a file rather than sending.
            link = request.build_absolute_uri(reverse("accounts:invitation-accept", args=[token]))
            messages.success(request, _("Invitation created for %(email)s.") % {"email": invitation.email})
            return _team_page(request, invitation_link=link)
        return _team_page(request, invite_form=form, status=400)


class InvitationRevokePage(TeamPage):
    def post(self, request, invitation_id):
        invitation = selectors.access_invitation(portal_actor(request), invitation_id)
        try:
            services.invitation_revoke(invitation=invitation, actor=portal_actor(request))
        except DomainError as exc:
            flash_refused(request, exc)
        else:
            messages.success(request, _("The invitation for %(email)s was revoked.") % {"email": invitation.email})
        return redirect("accounts:team")


class MemberRolePage(TeamPage):
    def post(self, request, member_id):
        membership = selectors.access_member(portal_actor(request), member_id)
        form = MemberRoleForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("Choose one of the roles."))
            return redirect("accounts:team")
        try:
            services.membership_change_role(membership=membership, role=form.cleaned_data["role"],
                                            actor=portal_actor(request))
        except DomainError as exc:
            flash_refused(request, exc)
        else:
            messages.success(request, _("%(email)s is now %(role)s.") % {
                "email": membership.user.email, "role": ROLE_LABELS[membership.role]})
        return redirect("accounts:team")


class MemberRemovePage(TeamPage):
    def post(self, request, member_id):
        membership = selectors.access_member(portal_actor(request), member_id)
        email = membership.user.email
        try:
            services.membership_remove(membership=membership, actor=portal_actor(request))
        except DomainError as exc:
            flash_refused(request, exc)
            return redirect("accounts:team")
        messages.success(request, _("%(email)s was removed from the organization.") % {"email": email})
        if membership.user_id == request.user.pk:
            return redirect("accounts:dashboard")
        return redirect("accounts:team")


# --- team: API keys ------------------------------------------------------------------------------


class ApiKeyListPage(TeamPage):
    scope = "apikeys:manage"

    def page(self, request, *, form=None, created=None, plain_key=None, status=200):
        keys = page_of(request, selectors.api_key_list())
        return render(request, "accounts/team_api_keys.html", {
            "keys": keys, "form": form or ApiKeyForm(held=request.scopes, auto_id="key-%s"),
            "created": created, "plain_key": plain_key, "scope_descriptions": SCOPES, "tab": "api-keys",
        }, status=status)

    def get(self, request):
        return self.page(request)

    def post(self, request):
        form = ApiKeyForm(request.POST, held=request.scopes, auto_id="key-%s")
        created = form_submit(form, lambda data: services.api_key_create(
            organization=request.organization, name=data["name"], scopes=data["scopes"], actor=portal_actor(request)))
        if form.is_valid():
            key, plain = created
            # Shown in this answer only: we keep the key's hash, never the key.
            return self.page(request, created=key, plain_key=plain)
        return self.page(request, form=form, status=400)


class ApiKeyRevokePage(TeamPage):
    scope = "apikeys:manage"

    def post(self, request, api_key_id):
        key = selectors.access_api_key(portal_actor(request), api_key_id)
        services.api_key_revoke(key=key, actor=portal_actor(request))
        messages.success(request, _("The key “%(name)s” was revoked; it no longer works.") % {"name": key.name})
        return redirect("accounts:team-api-keys")


# --- team: audit log -----------------------------------------------------------------------------


@requires_scope("audit:read")
def audit_log(request):
    filters = AuditFilterForm(request.GET)
    chosen = {name: value for name, value in filters.cleaned_data.items() if value} if filters.is_valid() else {}
    entries = page_of(request, selectors.audit_list(filters=chosen))
    query = urlencode(chosen)
    return render(request, "accounts/team_audit.html", {
        "entries": entries, "filters": filters, "query": f"&{query}" if query else "", "tab": "audit",
    })
