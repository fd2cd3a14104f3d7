"""The dashboard, the portal's first page: it shows every app's part of the organization (projects, recent
jobs, spend, registrations, members, API keys, audit), so it belongs to the composition root, above every
app; config/urls.py serves it in the `accounts` namespace (`accounts:dashboard`)."""
from __future__ import annotations

import hashlib

from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import render

from accounts.decorators import requires_scope
from accounts.models import ApiKey, AuditEntry, Membership
from generation.budgets import money, period_starts, spend_summary
from generation.models import TERMINAL_JOB_STATUSES
from generation.portal.jobs import STATUS_LABELS as JOB_STATUS_LABELS  # one wording on the dashboard and the job page
from generation.selectors import job_list
from projects.models import Project
from rights.models import Registration, RegistrationStatus

RECENT = 10


def _recent_jobs() -> tuple[list, str]:
    """The latest jobs (one query) and a version of what they show, so the live fragment answers
    204 (nothing to swap) while nothing changed."""
    jobs = list(job_list()[:RECENT])
    for job in jobs:
        job.status_label = JOB_STATUS_LABELS.get(job.status, job.status)
        job.is_terminal = job.status in TERMINAL_JOB_STATUSES
        job.percent = round(job.progress * 100)
    state = "|".join(f"{job.pk}:{job.status}:{job.percent}" for job in jobs)
    return jobs, hashlib.sha256(state.encode()).hexdigest()[:16]


def _registrations_this_month() -> dict:
    """This month's registrations of the organization by status, in one query."""
    month_start, _day = period_starts()
    return Registration.objects.filter(created_at__gte=month_start).aggregate(
        total=Count("id"),
        confirmed=Count("id", filter=Q(status=RegistrationStatus.CONFIRMED)),
        pending=Count("id", filter=~Q(status__in=[RegistrationStatus.CONFIRMED, RegistrationStatus.REVOKED])),
    )


def _spend(request) -> dict | None:
    if "billing:read" not in request.scopes:
        return None
    summary = spend_summary(organization=request.organization, user=None)
    budget, spent = summary["month_budget"], summary["month_spent"]
    summary["spent_text"] = money(spent)
    summary["budget_text"] = money(budget) if budget is not None else None
    summary["remaining_text"] = money(summary["month_remaining"]) if budget is not None else None
    summary["percent"] = min(100, round(spent * 100 / budget)) if budget else (100 if budget == 0 else None)
    summary["over"] = budget is not None and spent >= budget
    return summary


@requires_scope("org:read")
def dashboard(request):
    scopes = request.scopes
    projects = Project.objects.select_related("created_by").order_by("-created_at")
    context = {
        "projects": list(projects[:RECENT]) if "project:read" in scopes else None,
        "project_count": projects.count() if "project:read" in scopes else None,
        "member_count": Membership.objects.count(),
        "spend": _spend(request),
        "registrations": _registrations_this_month() if "rights:read" in scopes else None,
        "api_key_count": ApiKey.objects.filter(revoked_at=None).count() if "apikeys:manage" in scopes else None,
        "audit_entries": list(AuditEntry.objects.order_by("-created_at", "-id")[:5]) if "audit:read" in scopes else None,
    }
    if "job:read" in scopes:
        context["jobs"], context["jobs_version"] = _recent_jobs()
    return render(request, "accounts/dashboard.html", context)


@requires_scope("job:read")
def dashboard_jobs(request):
    """The dashboard's recent jobs, polled by htmx every few seconds; 204 while nothing changed."""
    jobs, version = _recent_jobs()
    if request.GET.get("v") == version:
        return HttpResponse(status=204)
    return render(request, "accounts/_recent_jobs.html", {"jobs": jobs, "jobs_version": version})
