"""OpenAPI generation: each operation documents the scope it needs."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


class ScopedAutoSchema(AutoSchema):
    """Shows the scope each operation needs in the API docs, from the view's declaration."""

    def get_description(self):
        description = super().get_description()
        required = getattr(self.view, "required_scopes", None)
        if required is None:
            return description
        scope = required.get(self.method.upper())
        note = f"**Required scope:** `{scope}`" if scope else "**Public**: no authentication needed."
        return f"{description}\n\n{note}" if description else note


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An organization API key: `sk_...`"}
