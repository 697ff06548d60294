"""Domain errors. Doors translate them: the API into the error envelope, the portal into messages."""
from __future__ import annotations

# HTTP status for each envelope type (CONTRACT.md).
TYPE_STATUS = {
    "validation_error": 400,
    "auth_error": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limited": 429,
    "unavailable": 503,
    "internal": 500,
}


class DomainError(Exception):
    type = "validation_error"
    status = 400
    headers: dict[str, str] = {}  # extra response headers (e.g. WWW-Authenticate), read by the doors

    def __init__(self, code: str, message: str, details: list | None = None, *, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []
        if status is not None:
            self.status = status

    def to_envelope(self) -> dict:
        return {"type": self.type, "code": self.code, "message": self.message, "details": self.details}


class ValidationError(DomainError):
    type, status = "validation_error", 400


class PayloadTooLarge(DomainError):
    type, status = "validation_error", 413


class UnsupportedMediaType(DomainError):
    type, status = "validation_error", 415


class AuthError(DomainError):
    type, status = "auth_error", 403


class Unauthenticated(DomainError):
    type, status = "auth_error", 401


class BearerChallenge(Unauthenticated):
    """401 for a bearer-token route (RFC 6750 section 3): `WWW-Authenticate: Bearer` when no token
    was sent, and `Bearer error="invalid_token"` when one was sent but is wrong."""

    def __init__(self, code: str, message: str, *, token_sent: bool):
        super().__init__(code, message)
        self.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"' if token_sent else "Bearer"}


class NotFound(DomainError):
    type, status = "not_found", 404


class Conflict(DomainError):
    type, status = "conflict", 409


class RateLimited(DomainError):
    type, status = "rate_limited", 429


class Unavailable(DomainError):
    type, status = "unavailable", 503


class StorageError(Unavailable):
    """The object store failed; the caller must not leave a row behind."""


class ScannerUnavailable(Unavailable):
    """clamd cannot be reached: fail closed, the file stays pending."""

    def __init__(self, message: str = "the virus scanner cannot be reached"):
        super().__init__("scanner_unavailable", message)
