"""Error codes: the `ErrorCode` enum every app's `error_codes.py` extends, and the kernel's own.

A code is a stable string with its HTTP status and what it means. Services raise
`DomainError(message, code=SomeErrors.MEMBER)`; the API answers with the code's status; the OpenAPI
schema lists per operation and status the codes it can answer (config/schema.py), and
`error_codes_all()` is the catalogue of every app's codes."""
from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A stable error code: `code.status` is its HTTP answer, `code.description` what it means; a
    `general` code can be answered by any operation that answers its status (a missing scope, a rate limit)."""

    def __new__(cls, value: str, status: int, description: str, general: bool = False):
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.description = description
        member.general = general
        return member


def error_codes_all() -> list[ErrorCode]:
    """Every code of every app's enum that is imported (each app imports its own where it raises them)."""
    found: list[ErrorCode] = []
    pending = list(ErrorCode.__subclasses__())
    while pending:
        enum = pending.pop(0)
        found.extend(enum)
        pending.extend(enum.__subclasses__())
    return found


class KernelErrors(ErrorCode):
    """What any request can be answered, whichever app serves it."""

    INVALID = "invalid", 400, "Invalid input; `error.fields` names the fields at fault.", True
    INVALID_TYPE = "invalid_type", 400, "Some fields have the wrong JSON type; `error.fields` names them.", True
    MALFORMED_REQUEST = "malformed_request", 400, "The body is not well-formed JSON (or the form is broken).", True
    BAD_REQUEST = "bad_request", 400, "The request was refused (a suspicious header or body)."
    NOT_AUTHENTICATED = "not_authenticated", 401, "No credentials were given.", True
    PERMISSION_DENIED = "permission_denied", 403, "Not allowed."
    NOT_FOUND = "not_found", 404, "No such object in this organization; another organization's answer the same.", True
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "The path does not take this method."
    CONFLICT = "conflict", 409, "Conflicts with the current state."
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "The body or the file is larger than this endpoint accepts."
    UNSUPPORTED_MEDIA_TYPE = ("unsupported_media_type", 415, "The body's media type is not one this operation takes.",
                              True)
    RATE_LIMITED = "rate_limited", 429, "Rate limited; `Retry-After` says when to try again.", True
    SERVER_ERROR = "server_error", 500, "Something went wrong on our side."
    # Media (config/media_limits.py): limits checked before any decoding.
    UNREADABLE_FILE = "unreadable_file", 400, "The file cannot be read, is truncated, or declares no picture."
    MEDIA_TOO_LARGE = "media_too_large", 413, "The media is past a limit (size, frames, duration, streams)."
    MEDIA_UNEXPECTED_LAYOUT = "media_unexpected_layout", 415, "The file's streams are not a layout we read."
    MEDIA_UNPROCESSABLE = "media_unprocessable", 422, "The file could not be processed within this server's limits."
    MEDIA_TIMEOUT = "media_timeout", 503, "Processing the file took longer than this server allows."
    VERIFY_BUSY = "verify_busy", 503, "Every verification slot is taken; `Retry-After` says when to try again."
    # The outbound guard (config/outbound.py).
    URL_NOT_ALLOWED = ("url_not_allowed", 400,
                       "The URL is not plain http(s), carries credentials, or reaches an address that is not allowed.")
