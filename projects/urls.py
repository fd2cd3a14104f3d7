from django.urls import path

from projects import views

app_name = "projects"
urlpatterns = [
    path("projects/<uuid:project_id>/", views.project_detail, name="project-detail"),
]
