from django.urls import path

from projects import views

app_name = "projects"
urlpatterns = [
    path("projects/", views.project_list, name="project-list"),
    path("projects/<uuid:project_id>/", views.project_detail, name="project-detail"),
    path("projects/<uuid:project_id>/edit", views.project_edit, name="project-edit"),
    path("projects/<uuid:project_id>/delete", views.project_delete, name="project-delete"),
]
