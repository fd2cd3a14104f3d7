"""The projects API's routes, included under /api/v1/ in the "api" namespace (config/urls.py)."""
from django.urls import path

from projects.api import projects, templates

urlpatterns = [
    path("projects", projects.ProjectListView.as_view(), name="project-list"),
    path("projects/<uuid:project_id>", projects.ProjectDetailView.as_view(), name="project-detail"),
    path("templates", templates.TemplateListView.as_view(), name="template-list"),
    path("templates/<uuid:template_id>", templates.TemplateDetailView.as_view(), name="template-detail"),
    path("templates/<uuid:template_id>/versions/<int:version>", templates.TemplateVersionView.as_view(),
         name="template-version"),
    path("templates/<uuid:template_id>/duplicate", templates.TemplateDuplicateView.as_view(),
         name="template-duplicate"),
]
