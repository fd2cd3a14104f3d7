from django.urls import path

from projects import views

# The `projects` namespace also holds the project page (generation/portal_projects.py), which config/urls.py adds.
app_name = "projects"
urlpatterns = [
    path("projects/", views.project_list, name="project-list"),
    path("projects/<uuid:project_id>/edit", views.project_edit, name="project-edit"),
    path("projects/<uuid:project_id>/delete", views.project_delete, name="project-delete"),
]
