"""Users: creation, password checks, and sign-in throttling."""
from __future__ import annotations

import functools
import hmac
import secrets
import unicodedata

from blinker import Namespace
from redis.exceptions import RedisError
from sqlalchemy import func, or_
from werkzeug.security import check_password_hash, generate_password_hash

from core.platform.db import contains_text, db
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


class LoginUnavailable(Exception):
    """The sign-in throttle's counters (Redis) cannot be reached, so nobody is signed in unguarded."""


class LoginThrottled(Exception):
    pass


def normalise_email(email: str | None) -> str:
    """The one spelling of an address that is stored and compared: Unicode NFC (a composed "ë"
    and "e" + combining diaeresis are one letter), trimmed, casefolded (case-insensitive as the
    product always was; casefold also folds "ß" to "ss"), and NFC again since casefolding can
    decompose. Used wherever an address comes in: sign-in, user creation (form and command),
    Kajabi matching, backfill files. Migration 0004_evidence rewrote stored addresses to it."""
    text = unicodedata.normalize("NFC", (email or "").strip())
    return unicodedata.normalize("NFC", text.casefold())


def matching(typed: str):
    """SQL condition: users whose name contains `typed`, both lower-cased by the database, or whose
    e-mail contains it in normalise_email's spelling, since that is how e-mails are stored
    (casefolded: a typed "Straße" finds "strasse"). A plain substring test (contains_text): "%" and
    "_" are letters like any other. The name side reads `users.name_lower`, the name the database
    lower-cased when it was stored (migration 0012): lower-casing every name on every filtered page
    was most of the users scan (`name ILIKE`, 8-10 ms for 10,000 users). The typed name is
    lower-cased by the database too, not by Python: str.lower() and PostgreSQL's lower() disagree
    on "İ" (Python adds a combining dot) and a word-final "Σ" (Python: "ς"), so a name typed
    exactly as the page shows it found no one. Used by the review queue's uploader filter and the
    admin's user search."""
    return or_(contains_text(User.name_lower, func.lower(typed.strip())),
               contains_text(User.email, normalise_email(typed)))


def normalise_password(password: str | None) -> str:
    """NFKC (NIST SP 800-63B 5.1.1.2 asks for NFKC or NFKD before hashing): the same password typed
    on keyboards that compose "ë" or "Å" differently, or with full-width digits, is one password.
    Hashes made before this rule hold the raw form; check_password accepts both (see there)."""
    return unicodedata.normalize("NFKC", password or "")


def hash_password(password: str) -> str:
    return generate_password_hash(normalise_password(password))


def check_password(stored_hash: str, password: str | None) -> tuple[bool, bool]:
    """(matches, needs_rehash). The NFKC form is checked first; a hash made before passwords were
    normalised holds the raw form, so that is tried too (only when it differs), and a match that
    way asks the caller to store the NFKC hash (done on the next successful sign-in), so no one
    is locked out and every hash ends in one form."""
    raw = password or ""
    if check_password_hash(stored_hash, normalise_password(raw)):
        return True, False
    if normalise_password(raw) != raw and check_password_hash(stored_hash, raw):
        return True, True
    return False, False


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
    if len(normalise_password(password)) < 8:
        raise ValidationError("password_too_short", "Passwords need at least 8 characters.", [{"field": "password", "issue": "too short"}])
    user = User(email=email, role=role, name=name or email.split("@")[0], city=city,
                password_hash=hash_password(password))
    db.session.add(user)
    db.session.flush()
    user_created.send(user)  # e.g. a waiting Kajabi event may be this user's (core.points.kajabi)
    return user, password


def set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)


def _keys(email: str, address: str) -> list[str]:
    prefix = services().settings.queue_prefix
    return [f"{prefix}login:fail:email:{email}", f"{prefix}login:fail:addr:{address}"]


def authenticate(email: str, password: str, address: str) -> User | None:
    """The user, or None. Raises LoginThrottled after too many recent failures, LoginUnavailable
    when Redis (the throttle's counters) cannot be reached. The e-mail and
    password are normalised (normalise_email, normalise_password); a hash still in the raw form is
    replaced by the NFKC one on this successful sign-in (committed here)."""
    svc = services()
    email = normalise_email(email)
    keys = _keys(email, address)
    limit = svc.settings.login_max_failures
    # Each attempt is counted before its password is checked, so guesses sent in parallel cannot
    # all read the old count: at most `limit` of them get as far as the hash. A success or a
    # refused attempt takes its count back; only failures stay. The window starts at the first
    # counted attempt and is not extended by later ones.
    try:
        counts = [int(n) for n in svc.redis.eval(_COUNT, len(keys), *keys, THROTTLE_WINDOW_S)]
    except RedisError:  # fail closed: no sign-in the guard against guessing cannot count
        raise LoginUnavailable("Sign-in is unavailable for a moment. Try again in a minute.") from None
    # The address limit is looser: many people can share one office address.
    if counts[0] > limit or counts[1] > limit * 4:
        _take_back(svc.redis, keys)
        raise LoginThrottled("Too many failed sign-ins. Wait 15 minutes and try again.")
    try:
        user = db.session.query(User).filter_by(email=email).first()
        ok, stale = check_password(user.password_hash if user else _dummy_hash(), password)
    except Exception:
        _take_back(svc.redis, keys)  # not a failed guess: the database, not the password, failed
        raise
    if user and ok and user.active:
        svc.redis.delete(keys[0])
        _take_back(svc.redis, keys[1:])
        if stale:
            set_password(user, password)  # the raw-form hash of an older account becomes NFKC's
            db.session.commit()
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
