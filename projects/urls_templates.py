"""Portal pages of the templates library."""
from django.urls import path

from projects import views_templates as views

app_name = "library"
urlpatterns = [
    path("templates/", views.template_list, name="template-list"),
    path("templates/new/", views.template_new, name="template-new"),
    path("templates/<uuid:template_id>/", views.template_detail, name="template-detail"),
    path("templates/<uuid:template_id>/edit/", views.template_edit, name="template-edit"),
    path("templates/<uuid:template_id>/duplicate/", views.template_duplicate, name="template-duplicate"),
    path("templates/<uuid:template_id>/delete/", views.template_delete, name="template-delete"),
]
