"""Portal pages of projects."""
from django.shortcuts import get_object_or_404, render

from accounts.decorators import requires_scope
from projects.selectors import project_list


@requires_scope("project:read")
def project_detail(request, project_id):
    project = get_object_or_404(project_list(), pk=project_id)
    return render(request, "projects/project_detail.html", {"project": project})
