from django.urls import path

from rights import views

app_name = "rights"
urlpatterns = [path("certificates/<str:content_id>/", views.certificate, name="certificate")]
