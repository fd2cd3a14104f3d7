"""The rights API's routes, included under /api/v1/ in the "api" namespace (config/urls.py)."""
from django.urls import path

from rights.api import views

urlpatterns = [
    # Public: who owns this content?
    path("verify", views.VerifyView.as_view(), name="verify"),
    path("certificates/<str:content_id>", views.CertificateView.as_view(), name="certificate"),
    # An organization's uploaded assets.
    path("assets", views.AssetListView.as_view(), name="asset-list"),
    path("assets/<uuid:asset_id>", views.AssetDetailView.as_view(), name="asset-detail"),
]
