"""Users: creation, password checks, and sign-in throttling."""
from __future__ import annotations

import functools
import hmac
import secrets

from blinker import Namespace
from werkzeug.security import check_password_hash, generate_password_hash

from core.platform.db import db
from core.platform.errors import Conflict, ValidationError
from core.platform.models import ROLES, User
from core.platform.services import services

THROTTLE_WINDOW_S = 15 * 60

# Sent with the new User once create_user has flushed it, inside the caller's transaction. Domains
# above accounts (points: Kajabi events waiting for this e-mail) listen, so accounts never imports them.
user_created = Namespace().signal("user-created")


@functools.cache
def _dummy_hash() -> str:
    """A real hash, so an unknown e-mail costs as much time as a wrong password. Made on first
    sign-in, not at import: every worker and CLI process imports this module."""
    return generate_password_hash(secrets.token_hex(8))


class LoginThrottled(Exception):
    pass


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def create_user(email: str, role: str, password: str | None = None, name: str = "", city: str | None = None) -> tuple[User, str]:
    """Returns the user and the password (generated when none is given). Caller commits."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 320:
        raise ValidationError("email_invalid", f"{email!r} is not an e-mail address.", [{"field": "email", "issue": "Enter an e-mail address such as name@example.org."}])
    if role not in ROLES:
        raise ValidationError("role_invalid", f"Role must be one of {', '.join(ROLES)}.", [{"field": "role", "issue": role}])
    if db.session.query(User.id).filter_by(email=email).first():
        raise Conflict("user_exists", f"A user with e-mail {email} already exists.")
    password = password or secrets.token_urlsafe(12)
    if len(password) < 8:
        raise ValidationError("password_too_short", "Passwords need at least 8 characters.", [{"field": "password", "issue": "too short"}])
    user = User(email=email, role=role, name=name or email.split("@")[0], city=city,
                password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.flush()
    user_created.send(user)  # e.g. a waiting Kajabi event may be this user's (core.points.kajabi)
    return user, password


def set_password(user: User, password: str) -> None:
    user.password_hash = generate_password_hash(password)


def _keys(email: str, address: str) -> list[str]:
    prefix = services().settings.queue_prefix
    return [f"{prefix}login:fail:email:{email}", f"{prefix}login:fail:addr:{address}"]


def authenticate(email: str, password: str, address: str) -> User | None:
    """The user, or None. Raises LoginThrottled after too many recent failures."""
    svc = services()
    email = normalise_email(email)
    keys = _keys(email, address)
    limit = svc.settings.login_max_failures
    # Each attempt is counted before its password is checked, so guesses sent in parallel cannot
    # all read the old count: at most `limit` of them get as far as the hash. A success or a
    # refused attempt takes its count back; only failures stay. The window starts at the first
    # counted attempt and is not extended by later ones.
    counts = [int(n) for n in svc.redis.eval(_COUNT, len(keys), *keys, THROTTLE_WINDOW_S)]
    # The address limit is looser: many people can share one office address.
    if counts[0] > limit or counts[1] > limit * 4:
        _take_back(svc.redis, keys)
        raise LoginThrottled("Too many failed sign-ins. Wait 15 minutes and try again.")
    try:
        user = db.session.query(User).filter_by(email=email).first()
        ok = check_password_hash(user.password_hash if user else _dummy_hash(), password or "")
    except Exception:
        _take_back(svc.redis, keys)  # not a failed guess: the database, not the password, failed
        raise
    if user and ok and user.active:
        svc.redis.delete(keys[0])
        _take_back(svc.redis, keys[1:])
        return user
    return None


# For every key, in one round trip: INCR, starting the window on the first count; and a DECR
# that never goes below zero nor recreates a key that expired or was cleared meanwhile.
_COUNT = ("local out = {} for i, k in ipairs(KEYS) do local n = redis.call('INCR', k) "
          "if n == 1 then redis.call('EXPIRE', k, ARGV[1]) end out[i] = n end return out")
_UNCOUNT = ("for _, k in ipairs(KEYS) do local n = tonumber(redis.call('GET', k) or '0') "
            "if n > 0 then redis.call('DECR', k) end end return 0")


def _take_back(redis, keys: list[str]) -> None:
    if keys:
        redis.eval(_UNCOUNT, len(keys), *keys)


def tokens_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an unset expected secret never matches."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
