"""The operators' admin site: every view runs unscoped, since operators see all tenants."""
from django.contrib import admin

from config.tenancy import dangerously_unscoped


class PlatformAdminSite(admin.AdminSite):
    site_header = "Studio platform operations"
    site_title = "Platform admin"
    index_title = "Operations"

    def login(self, request, extra_context=None):
        response = super().login(request, extra_context)
        # A locked sign-in (the login form accounts/admin.py installs) answers like the portal's: 429.
        form = getattr(response, "context_data", None) and response.context_data.get("form")
        retry_after = getattr(form, "retry_after", None)
        if retry_after:
            response.status_code = 429
            response["Retry-After"] = str(retry_after)
        return response

    def admin_view(self, view, cacheable=False):
        protected = super().admin_view(view, cacheable)

        def unscoped_view(request, *args, **kwargs):
            with dangerously_unscoped():
                response = protected(request, *args, **kwargs)
                # Template responses render lazily; render while the scope is still lifted.
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()
                return response

        unscoped_view.__name__ = getattr(view, "__name__", "admin_view")
        unscoped_view.admin_site = self
        return unscoped_view
