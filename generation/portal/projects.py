"""The project page: a project with its jobs and their protected outputs. It shows the pipeline's jobs
and the rights app's contents, so it lives here, above both; config/urls.py serves it in the `projects`
namespace (`projects:project-detail`) beside the project pages of projects/portal/projects.py, with the same scope
(`project:read`)."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render

from accounts.decorators import requires_scope
from accounts.portal.base import PAGE_SIZE, page_of, portal_actor
from generation import selectors as job_selectors
from generation.budgets import money
from generation.models import JobStatus
from generation.portal.jobs import STATUS_LABELS
from projects.selectors import access_project
from rights.models import Content


def _with_status_labels(jobs):
    for job in jobs:
        job.status_label = STATUS_LABELS.get(job.status, job.status)
        job.progress_percent = round((job.progress or 0) * 100)
        job.cost_text = money(job.cost)
    return jobs


@requires_scope("project:read")
def project_detail(request, project_id):
    project = access_project(portal_actor(request), project_id)
    jobs = page_of(request, job_selectors.job_list(project_id=project.pk))
    _with_status_labels(jobs.object_list)
    # Content has no link to a project: a project's assets are the protected outputs of its jobs.
    assets = Paginator(
        Content.objects.filter(job__project_id=project.pk).select_related("job").order_by("-created_at"), PAGE_SIZE,
    ).get_page(request.GET.get("assets_page"))
    return render(request, "projects/project_detail.html", {
        "project": project, "jobs": jobs, "assets": assets, "completed": JobStatus.COMPLETED,
    })
