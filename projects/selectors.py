"""Reads of projects."""
from django.db.models import QuerySet

from projects.models import Project


def project_list(*, search: str = "") -> QuerySet[Project]:
    queryset = Project.objects.select_related("created_by").order_by("-created_at")
    if search:
        queryset = queryset.filter(name__icontains=search)
    return queryset
