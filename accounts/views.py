"""Portal pages of the accounts app: sign in and out, the dashboard, switching organization,
accepting an invitation. The full portal is built on these."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import services
from accounts.audit import client_ip
from accounts.decorators import requires_scope
from accounts.forms import InvitationAcceptForm, LoginForm
from accounts.middleware import SESSION_ORGANIZATION_KEY
from accounts.models import ApiKey, AuditEntry, Membership
from accounts.selectors import membership_of
from config.errors import DomainError
from projects.models import Project

RECENT = 10


def login_view(request):
    if request.user.is_authenticated:
        return redirect("accounts:dashboard")
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        email, ip = form.cleaned_data["email"].lower(), client_ip(request)
        wait = services.login_retry_after(email=email, ip=ip)
        if wait:
            form.add_error(None, f"Too many failed attempts. Try again in {max(1, wait // 60)} minute(s).")
            status = 429
        else:
            user = authenticate(request, email=email, password=form.cleaned_data["password"])
            if user is None:
                services.login_record_failure(email=email, ip=ip)
                form.add_error(None, "The email or password is wrong.")
                status = 401
            else:
                services.login_clear_failures(email=email, ip=ip)
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


@requires_scope("org:read")
def dashboard(request):
    projects = Project.objects.select_related("created_by").order_by("-created_at")
    context = {
        "projects": projects[:RECENT],
        "project_count": projects.count(),
        "member_count": Membership.objects.count(),
        "api_key_count": ApiKey.objects.filter(revoked_at=None).count() if "apikeys:manage" in request.scopes else None,
        "audit_entries": AuditEntry.objects.order_by("-created_at")[:RECENT] if "audit:read" in request.scopes else None,
    }
    return render(request, "accounts/dashboard.html", context)


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
            messages.success(request, f"Welcome to {invitation.organization.name}.")
            return redirect("accounts:dashboard")
    return render(request, "accounts/invitation_accept.html", {"invitation": invitation, "form": form})
