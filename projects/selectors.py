"""Reads of projects."""
from django.db.models import QuerySet

from accounts.audit import Actor
from config.tenancy import scoped_object
from projects.models import Project


def project_list(*, search: str = "") -> QuerySet[Project]:
    queryset = Project.objects.select_related("created_by").order_by("-created_at")
    if "\x00" in search:  # no name holds one, and PostgreSQL refuses NUL in a query (a 500)
        return queryset.none()
    if search:
        queryset = queryset.filter(name__icontains=search)
    return queryset


def access_project(actor: Actor | None, project_id) -> Project:
    """The project of the active organization, or NotFound (missing and foreign answer alike)."""
    return scoped_object(project_list(), project_id, what="project")
