"""Portal pages of jobs (the API's routes are in generation/urls.py)."""
from django.urls import path

from config.views import portal_pending

app_name = "jobs"
urlpatterns = [
    path("jobs/", portal_pending, name="job-list"),
    path("jobs/new/", portal_pending, name="job-new"),
]
