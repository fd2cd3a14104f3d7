"""OpenAPI generation: each operation documents the scope it needs and the errors it can answer, with
the codes of each status (config/error_codes.py and the apps' error_codes.py)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from config.error_codes import ErrorCode, error_codes_all


class ErrorDetailOut(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable code, such as `not_found` or `name_taken`.")
    message = serializers.CharField()
    fields = serializers.DictField(help_text="Per-field messages for invalid input; empty otherwise.")


class ErrorOut(serializers.Serializer):
    """The one error shape of the API (config.api.exception_handler)."""

    error = ErrorDetailOut()


# What every operation may answer besides its success, by what the request carries (see _error_statuses).
ERROR_DESCRIPTIONS = {
    400: "Invalid input: the fields at fault are named in `error.fields`.",
    401: "No credentials, or an unknown or revoked API key.",
    402: "Over the organization's monthly or the member's daily budget.",
    403: "The key or member lacks the required scope, or the organization is suspended.",
    404: "No such object in this organization (another organization's objects answer the same).",
    409: "Conflicts with the current state (a taken name, a job already finished...); see `error.code`.",
    413: "The upload is larger than this endpoint accepts.",
    415: "The body's media type is not one this operation takes.",
    422: "The content policy refused the text (a blocked term, or moderation flagged it).",
    429: "Rate limited; `Retry-After` says when to try again.",
    503: "A service this operation needs is unavailable; try again later.",
}


class ScopedAutoSchema(AutoSchema):
    """Shows the scope each operation needs in the API docs, from the view's declaration, and
    documents the error answers in the API's error shape next to the success."""

    def _required_scope(self):
        required = getattr(self.view, "required_scopes", None)
        return None if required is None else required.get(self.method.upper())

    def get_description(self):
        description = super().get_description()
        if getattr(self.view, "required_scopes", None) is None:
            return description
        scope = self._required_scope()
        note = f"**Required scope:** `{scope}`" if scope else "**Public**: no authentication needed."
        return f"{description}\n\n{note}" if description else note

    def _error_statuses(self) -> set[int]:
        statuses = {429}
        if self._required_scope():
            # Credentials are checked first; a signed-in member's X-Organization may name no organization.
            statuses |= {401, 403, 404}
        has_body = self.method.upper() in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        if has_body:
            statuses |= {400, 415}  # 415: a body in a media type the operation does not take
        if any(parameter["in"] == "query" for parameter in self._get_parameters()):
            statuses.add(400)
        if "{" in self.path:
            statuses.add(404)
        # The domain errors (409 conflicts, 410, 413...) a view's method can answer, from its declaration.
        statuses |= {code.status for code in self._declared_codes()}
        return statuses

    def _declared_codes(self) -> tuple[ErrorCode, ...]:
        """The codes the view declares for this method (`error_codes = {"POST": (SomeErrors.X, ...)}`)."""
        return tuple(getattr(self.view, "error_codes", {}).get(self.method.upper(), ()))

    def _codes_of(self, status: int) -> list[ErrorCode]:
        """The codes an answer with `status` can carry: the view's own, then the general ones."""
        declared = [code for code in self._declared_codes() if code.status == status]
        general = [code for code in error_codes_all()
                   if code.general and code.status == status and code not in declared]
        return declared + general

    def _get_request_for_media_type(self, serializer, direction="request"):
        # drf-spectacular documents a PATCH body as partial (every field optional). A serializer that its
        # PATCH validates whole, such as a member's role change, says so with `required_on_patch`.
        if self.method == "PATCH" and getattr(serializer, "required_on_patch", False):
            self.method = "PUT"
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # drf-spectacular's pattern for a decimal string allows a sign and an empty string whatever the
        # field takes; money (min_value 0) is digits with an optional point, as the field accepts.
        if (isinstance(field, serializers.DecimalField) and field.min_value is not None and field.min_value >= 0
                and "pattern" in schema and field.max_whole_digits):
            whole, places = field.max_whole_digits, field.decimal_places
            schema["pattern"] = fr"^(?:\d{{1,{whole}}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})$"
        if getattr(field, "unique_items", False):  # a list that refuses repeats (a provider fallback chain)
            schema["uniqueItems"] = True
        return schema

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        # A serializer that refuses keys it does not know (projects.templates._StrictSerializer) says so.
        if direction == "request" and getattr(serializer, "refuses_unknown_keys", False):
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        error = self.resolve_serializer(ErrorOut, "response").ref
        for status in sorted(self._error_statuses()):
            codes = self._codes_of(status)
            description = ERROR_DESCRIPTIONS.get(status, "Refused; `error.code` says why.")
            if codes:
                description += "\n\n" + "\n".join(f"- `{code}`: {code.description}" for code in codes)
            responses.setdefault(str(status), {
                "content": {"application/json": {"schema": error}},
                "description": description,
                "x-error-codes": [str(code) for code in codes],
            })
        return responses


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An organization API key: `sk_...`"}
