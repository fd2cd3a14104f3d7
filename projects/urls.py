"""The portal pages of projects (namespace `projects`) and of the templates library (namespace `library`)."""
from django.urls import path

from projects.portal import projects, templates

# The `projects` namespace also holds the project page (generation/portal/projects.py), which config/urls.py adds.
app_name = "projects"
urlpatterns = [
    path("projects/", projects.project_list, name="project-list"),
    path("projects/<uuid:project_id>/edit", projects.project_edit, name="project-edit"),
    path("projects/<uuid:project_id>/delete", projects.project_delete, name="project-delete"),
]

LIBRARY_APP_NAME = "library"
library_urlpatterns = [
    path("templates/", templates.template_list, name="template-list"),
    path("templates/new/", templates.template_new, name="template-new"),
    path("templates/<uuid:template_id>/", templates.template_detail, name="template-detail"),
    path("templates/<uuid:template_id>/edit/", templates.template_edit, name="template-edit"),
    path("templates/<uuid:template_id>/duplicate/", templates.template_duplicate, name="template-duplicate"),
    path("templates/<uuid:template_id>/delete/", templates.template_delete, name="template-delete"),
]
