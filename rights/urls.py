from django.urls import path

from config.views import portal_pending
from rights import views

app_name = "rights"
urlpatterns = [
    path("certificates/<str:content_id>/", views.certificate, name="certificate"),
    path("assets/", portal_pending, name="asset-list"),
    path("verify/", portal_pending, name="verify"),
]
