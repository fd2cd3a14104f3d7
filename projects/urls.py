from django.urls import path

from config.views import portal_pending
from projects import views

app_name = "projects"
urlpatterns = [
    path("projects/", portal_pending, name="project-list"),
    path("projects/<uuid:project_id>/", views.project_detail, name="project-detail"),
]
