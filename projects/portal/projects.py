"""Portal pages of projects: the list with its create form, and the forms that edit and delete a project
(the project page, with its jobs and assets, is generation/portal/projects.py's, in this namespace).

They read through `projects.selectors` and write through `projects.services`, like the projects API
(projects/api/projects.py), with the same scopes: reads need `project:read`, writes `project:write`."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.decorators import requires_scope
from accounts.portal.base import form_submit, page_of, portal_actor
from config.errors import DomainError
from projects import selectors, services


class ProjectForm(forms.Form):
    """The fields POST /api/v1/projects accepts (projects.api.ProjectIn)."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    description = forms.CharField(label=gettext_lazy("Description"), max_length=5000, required=False,
                                  widget=forms.Textarea(attrs={"rows": 3}))


def _require_write(request) -> None:
    # The page itself needs only project:read; every write is checked again here, on the server.
    if "project:write" not in request.scopes:
        raise PermissionDenied("needs project:write")


@requires_scope("project:read")
def project_list(request):
    form = ProjectForm()
    if request.method == "POST":
        _require_write(request)
        form = ProjectForm(request.POST)
        project = form_submit(form, lambda data: services.project_create(
            organization=request.organization, actor=portal_actor(request), **data))
        if form.is_valid():
            messages.success(request, _("Project “%(name)s” created.") % {"name": project.name})
            return redirect("projects:project-detail", project_id=project.pk)
    search = request.GET.get("search", "")[:120]
    projects = selectors.project_list(search=search).annotate(job_count=Count("jobs"))
    return render(request, "projects/project_list.html", {
        "page": page_of(request, projects), "form": form, "search": search,
    }, status=400 if form.is_bound and form.errors else 200)


@requires_scope("project:read")
def project_edit(request, project_id):
    project = selectors.access_project(portal_actor(request), project_id)
    _require_write(request)
    form = ProjectForm(initial={"name": project.name, "description": project.description})
    if request.method == "POST":
        form = ProjectForm(request.POST)
        form_submit(form, lambda data: services.project_update(project=project, actor=portal_actor(request), **data))
        if form.is_valid():
            messages.success(request, _("Project saved."))
            return redirect("projects:project-detail", project_id=project.pk)
    return render(request, "projects/project_form.html", {"project": project, "form": form},
                  status=400 if form.is_bound and form.errors else 200)


@requires_scope("project:read")
def project_delete(request, project_id):
    project = selectors.access_project(portal_actor(request), project_id)
    _require_write(request)
    if request.method == "POST":
        name = project.name
        try:
            services.project_delete(project=project, actor=portal_actor(request))
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("projects:project-detail", project_id=project.pk)
        messages.success(request, _("Project “%(name)s” deleted.") % {"name": name})
        return redirect(reverse("projects:project-list"))
    return render(request, "projects/project_delete.html", {
        "project": project, "job_count": project.jobs.count(),
    })
