"""Bearer-token doors (RFC 6750): cron routes (CRON_SECRET), /api/slo and /metrics
(INTERNAL_METRICS_TOKEN). No token -> 401 `unauthenticated` with `WWW-Authenticate: Bearer`; a
wrong one -> 401 `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"`. Compared
in constant time. Whether the secret is configured at all is the caller's answer (503 or 403
`not_configured`), checked before this."""
from __future__ import annotations

from flask import request

from core.accounts.users import tokens_equal
from core.platform.errors import BearerChallenge


def presented_token(alternative_header: str | None = None) -> str | None:
    """The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 7235), else the
    value of `alternative_header` when given; None when neither carries a token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if alternative_header:
        return request.headers.get(alternative_header) or None
    return None


def require_bearer(secret: str, name: str, alternative_header: str | None = None) -> None:
    """Raise BearerChallenge unless the request carries `secret` (named `name` in the message)."""
    token = presented_token(alternative_header)
    if token is None:
        raise BearerChallenge("unauthenticated", f"Send Authorization: Bearer <{name}>.", token_sent=False)
    if not tokens_equal(token, secret):
        raise BearerChallenge("invalid_token", "The bearer token is not valid.", token_sent=True)
