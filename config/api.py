"""API conventions shared by every app: the error shape and pagination."""
from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.error_codes import ErrorCode, KernelErrors
from config.errors import DomainError
from config.json_input import INVALID_TYPE, only_type_errors
from config.tenancy import ScopeError

logger = logging.getLogger(__name__)

# DRF's own codes, renamed where ours read better.
_RENAMED_CODES = {"throttled": KernelErrors.RATE_LIMITED, "parse_error": KernelErrors.MALFORMED_REQUEST}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _message(detail) -> str:
    if isinstance(detail, (list, tuple)) and detail:
        return _message(detail[0])
    if isinstance(detail, dict):
        return "Some fields are invalid."
    return str(detail)


def exception_handler(exc, context):
    """Every API error, whatever raised it, leaves as `{"error": {"code", "message", "fields"}}`."""
    if isinstance(exc, DomainError):
        # A refusal that will pass on its own (a busy service) says when to try again, as 429 does.
        retry_after = getattr(exc, "retry_after", None)
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status,
                        headers={"Retry-After": str(retry_after)} if retry_after else None)
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent)):
        return Response(
            error_body(KernelErrors.PAYLOAD_TOO_LARGE, "The request body is larger than this endpoint accepts."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body(KernelErrors.BAD_REQUEST, "The request was refused."), status=400)
    if isinstance(exc, ScopeError):
        # A bug, not bad input; fail closed without telling the caller what exists.
        logger.error("tenant scope error: %s", exc)
        return Response(error_body(KernelErrors.NOT_FOUND, "Not found."), status=404)
    if isinstance(exc, (Http404, DjangoPermissionDenied)):
        exc = exceptions.NotFound() if isinstance(exc, Http404) else exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    codes = exc.get_codes()
    code = _RENAMED_CODES.get(codes, codes) if isinstance(codes, str) else KernelErrors.INVALID
    fields = {}
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        message = "Some fields are invalid." if isinstance(detail, dict) else _message(detail)
        if only_type_errors(codes):  # config.json_input: a JSON value of the wrong type
            code, message = INVALID_TYPE, "Some fields have the wrong JSON type; `error.fields` names them."
    else:
        message = _message(exc.detail)
    response.data = error_body(code, message, fields)
    return response


def json_error_view(code: ErrorCode, message: str):
    # CSRF-exempt: it changes nothing, and otherwise a POST or DELETE to an unknown API path
    # (a mistyped id) got Django's HTML CSRF page instead of this JSON 404.
    @csrf_exempt
    def view(request, exception=None):
        return JsonResponse(error_body(code, message), status=code.status)

    return view


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request):
        # DRF silently used the default for `page_size=abc` or `0`; say what is wrong instead.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or int(raw) < 1:
            raise exceptions.ValidationError({self.page_size_query_param: [
                f"A whole number from 1 (larger than {self.max_page_size} reads as {self.max_page_size})."]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters
