from django.contrib import admin

from accounts.admin import AuditedAdmin
from projects.models import Project


@admin.register(Project)
class ProjectAdmin(AuditedAdmin):
    list_display = ["name", "organization", "created_by", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name", "organization__slug"]
    list_select_related = ["organization", "created_by"]
    readonly_fields = ["organization", "created_by", "created_at", "updated_at"]
