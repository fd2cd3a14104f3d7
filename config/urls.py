from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import urls as accounts_urls
from accounts.api.health import HealthView
from config import dashboard
from config.api import json_error_view
from config.error_codes import KernelErrors
from config.metrics import metrics_view
from generation.portal import projects as portal_projects
from generation.portal import providers as portal_providers
from generation.portal import webhooks as portal_webhooks
from projects import urls as projects_urls

api_patterns = [
    path("health", HealthView.as_view(), name="health"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script as a file (?script): no inline script, so the docs keep the CSP.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    # Each app's API routes are its api/urls.py.
    path("", include("accounts.api.urls")),
    path("", include("projects.api.urls")),
    path("", include("rights.api.urls")),
    path("", include("generation.api.urls")),
    # Unknown API paths answer in the API's error shape, never with an HTML page.
    re_path(r"^.*$", json_error_view(KernelErrors.NOT_FOUND, "No such endpoint."), name="unknown"),
]

# The portal's namespaces, composed here where a page of one app shows another's: the dashboard (this
# root's) and the webhook pages (generation's) among the accounts pages, the project page (generation's,
# with its jobs and assets) among the projects pages.
accounts_pages = [
    path("", dashboard.dashboard, name="dashboard"),
    path("dashboard/jobs/", dashboard.dashboard_jobs, name="dashboard-jobs"),
    *accounts_urls.urlpatterns,
    path("team/providers/", portal_providers.ProviderListPage.as_view(), name="team-providers"),
    path("team/providers/<str:provider>/", portal_providers.ProviderSavePage.as_view(), name="team-provider-save"),
    path("team/providers/<str:provider>/test", portal_providers.ProviderTestPage.as_view(), name="team-provider-test"),
    path("team/providers/<str:provider>/delete", portal_providers.ProviderDeletePage.as_view(),
         name="team-provider-delete"),
    path("team/webhooks/", portal_webhooks.WebhookListPage.as_view(), name="team-webhooks"),
    path("team/webhooks/<uuid:webhook_id>/", portal_webhooks.WebhookDetailPage.as_view(), name="team-webhook"),
    path("team/webhooks/<uuid:webhook_id>/edit/", portal_webhooks.WebhookEditPage.as_view(), name="team-webhook-edit"),
    path("team/webhooks/<uuid:webhook_id>/delete/", portal_webhooks.WebhookDeletePage.as_view(),
         name="team-webhook-delete"),
]
projects_pages = [
    *projects_urls.urlpatterns,
    path("projects/<uuid:project_id>/", portal_projects.project_detail, name="project-detail"),
]

urlpatterns = [
    path("api/v1/", include((api_patterns, "api"))),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; access rules in config/metrics.py
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # setlang: the language switcher
    # The portal: each app's urls.py, each with its own namespace.
    path("", include((accounts_pages, accounts_urls.app_name))),
    path("", include((projects_pages, projects_urls.app_name))),
    path("", include((projects_urls.library_urlpatterns, projects_urls.LIBRARY_APP_NAME))),
    path("", include("generation.urls")),
    path("", include("rights.urls")),
]

handler404 = "config.views.not_found"
handler403 = "config.views.forbidden"
handler500 = "config.views.server_error"
