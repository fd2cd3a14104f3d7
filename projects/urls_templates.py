"""Portal pages of the templates library."""
from django.urls import path

from config.views import portal_pending

app_name = "library"
urlpatterns = [
    path("templates/", portal_pending, name="template-list"),
]
