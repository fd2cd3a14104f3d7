"""Reads of projects."""
from django.db.models import QuerySet

from projects.models import Project


def project_list(*, search: str = "") -> QuerySet[Project]:
    queryset = Project.objects.select_related("created_by").order_by("-created_at")
    if "\x00" in search:  # no name holds one, and PostgreSQL refuses NUL in a query (a 500)
        return queryset.none()
    if search:
        queryset = queryset.filter(name__icontains=search)
    return queryset
