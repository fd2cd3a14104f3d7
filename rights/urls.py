from django.urls import path

from rights.portal import views

app_name = "rights"
urlpatterns = [
    path("certificates/<str:content_id>/", views.certificate, name="certificate"),
    path("assets/", views.asset_list, name="asset-list"),
    path("assets/upload", views.asset_upload, name="asset-upload"),
    path("assets/<uuid:asset_id>/", views.asset_detail, name="asset-detail"),
    path("verify/", views.verify, name="verify"),
]
