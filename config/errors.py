"""The domain error every app raises for a refused action; the API turns it into its error shape."""
from __future__ import annotations


class DomainError(Exception):
    """A business rule refused the action. `code` is stable and documented; `status` its HTTP answer."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, fields=None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.fields = fields or {}


class NotFound(DomainError):
    """Missing and foreign objects answer the same."""

    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class Forbidden(DomainError):
    code = "permission_denied"
    status = 403
