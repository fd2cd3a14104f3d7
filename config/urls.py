from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.api import json_error_view
from config.health import HealthView
from config.metrics import metrics_view
from projects.api import ProjectDetailView, ProjectListView

api_patterns = [
    path("health", HealthView.as_view(), name="health"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script as a file (?script): no inline script, so the docs keep the CSP.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("projects", ProjectListView.as_view(), name="project-list"),
    path("projects/<uuid:project_id>", ProjectDetailView.as_view(), name="project-detail"),
    path("", include("accounts.api.urls")),
    path("", include("generation.urls")),
    path("", include("generation.api_webhooks")),
    path("", include("generation.api_settings")),
    path("", include("projects.api_templates")),
    path("", include("rights.api")),
    # Unknown API paths answer in the API's error shape, never with an HTML page.
    re_path(r"^.*$", json_error_view(404, "not_found", "No such endpoint."), name="unknown"),
]

urlpatterns = [
    path("api/v1/", include((api_patterns, "api"))),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; access rules in config/metrics.py
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # setlang: the language switcher
    # The portal: one urls module per app, each with its own namespace.
    path("", include("accounts.urls")),
    path("", include("projects.urls")),
    path("", include("projects.urls_templates")),
    path("", include("generation.portal_urls")),
    path("", include("rights.urls")),
]

handler404 = "config.views.not_found"
handler403 = "config.views.forbidden"
handler500 = "config.views.server_error"
