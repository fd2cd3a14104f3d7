"""The domain error every app raises for a refused action; the API turns it into its error shape.

Its `code` is a member of an app's ErrorCode enum (config/error_codes.py and each app's
`error_codes.py`), which also gives the HTTP status."""
from __future__ import annotations

from config.error_codes import ErrorCode, KernelErrors


class DomainError(Exception):
    """A business rule refused the action. `code` is stable and documented; `status` is the code's
    HTTP answer unless given."""

    code: ErrorCode = KernelErrors.INVALID

    def __init__(self, message: str, *, code: ErrorCode | None = None, status: int | None = None, fields=None):
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.status = status or self.code.status
        self.fields = fields or {}


class NotFound(DomainError):
    """Missing and foreign objects answer the same."""

    code = KernelErrors.NOT_FOUND


class Conflict(DomainError):
    code = KernelErrors.CONFLICT


class Forbidden(DomainError):
    code = KernelErrors.PERMISSION_DENIED
