"""App configuration of the project package: the operators' admin site."""
from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    default_site = "config.admin.PlatformAdminSite"
