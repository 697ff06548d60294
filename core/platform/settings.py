"""One Settings object, read from the environment once inside create_app and validated.

Code reads this object, never os.environ. A bad value raises SettingsError with one line that
names the variable, so start-up stops with a reason an operator can act on.
"""
from __future__ import annotations

import dataclasses
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from core.platform.numbers import parse_whole


class SettingsError(ValueError):
    """A setting is missing or malformed; str() is the one-line reason."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true/false or 1/0)")


def parse_int(name: str, raw: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """`raw` as a whole number in ASCII digits within [minimum, maximum]; SettingsError naming
    `name` otherwise."""
    value = parse_whole(raw)  # ASCII digits only (core.platform.numbers)
    if value is None:
        raise SettingsError(f"{name}={raw!r} is not a whole number")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum of {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} is above the maximum of {maximum}")
    return value


def clamd_address(url: str) -> tuple[int, object]:
    """clamd's address from CLAMD_URL: (socket.AF_INET, (host, port)) for tcp://host:port (the
    host may be an IPv6 literal in brackets; the client connects by whichever family resolves)
    or (socket.AF_UNIX, path) for unix:///absolute/path. Raises ValueError saying what is wrong.
    One parser for the settings' check at start and the client's connection
    (core/evidence/clamd_client.py)."""
    parsed = urlparse(url)
    if parsed.query or parsed.fragment or "@" in parsed.netloc:
        # Nothing would read them: a URL that says more than is used is a mistake to report.
        raise ValueError("takes no user, password, query or fragment")
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:  # tcp://host:abc or a port past 65535
            port = None
        if not parsed.hostname or not port or parsed.path not in ("", "/"):
            raise ValueError("a tcp:// URL needs a host and a port and nothing after, e.g. tcp://clamd:3310")
        return socket.AF_INET, (parsed.hostname, port)  # IPv4 or IPv6: the client resolves it
    if parsed.scheme == "unix":
        path = unquote(parsed.path)
        if parsed.netloc or not path.startswith("/") or "\0" in path:
            # unix://run/x.sock would read "run" as a host and connect to /x.sock; the kernel
            # would cut a path at an encoded NUL and connect to another socket.
            raise ValueError("a unix:// URL needs an absolute socket path, e.g. unix:///run/clamav/clamd.ctl")
        return socket.AF_UNIX, path
    raise ValueError("must start with tcp:// or unix://")


def parse_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise SettingsError(f"{name}={raw!r} must be one of: {', '.join(choices)}")
    return value


def parse_public_url(name: str, raw: str) -> str:
    """'' or 'http(s)://host[:port]' with no path, query or credentials (a signature covers the
    host only, so anything else would be signed for a place the browser never asks)."""
    value = raw.strip().rstrip("/")
    if not value:
        return ""
    parsed = urlparse(value)
    try:
        port = parsed.port
    except ValueError:
        raise SettingsError(f"{name}={raw!r} has a bad port") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path or parsed.query \
            or parsed.fragment or parsed.username or parsed.password or (port is not None and not 0 < port < 65536):
        raise SettingsError(f"{name}={raw!r} must be http(s)://host[:port] with no path")
    return value


KNOWN_FILE_TYPES = ("pdf", "jpg", "jpeg", "png", "csv")
MAX_SIGNED_URL_TTL = 3600
MIN_ENDPOINT_SECRET = 16  # webhook, cron and metrics secrets, in production


@dataclass(frozen=True)
class Settings:
    app_env: str = "development"
    secret_key: str = ""
    database_url: str = "sqlite:///instance/app.db"
    db_statement_timeout_ms: int = 30000
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_backend: str = "local"
    local_storage_root: str = "instance/storage"
    minio_endpoint: str = ""
    minio_access_key: str = ""
    minio_secret_key: str = ""
    minio_bucket: str = "evidence"
    minio_secure: bool = False
    minio_region: str = "us-east-1"
    signed_url_ttl_seconds: int = 3600
    av_scan_enabled: bool = True
    av_scanner: str = "eicar"
    clamd_url: str = "tcp://127.0.0.1:3310"
    clamd_timeout_seconds: int = 30
    allowed_file_types: tuple[str, ...] = ("pdf", "jpg", "jpeg", "png", "csv")
    max_upload_mb: int = 25
    evidence_retention_days: int = 730
    kajabi_raw_retention_days: int = 365
    kajabi_webhook_secret: str = ""
    cron_secret: str = ""
    enable_internal_endpoints: bool = False
    internal_metrics_token: str = ""
    unmatched_alert_threshold: int = 50
    analytics_sink_url: str = ""
    analytics_file: str = "instance/analytics.jsonl"
    scan_sweep_minutes: int = 10
    outbox_max_attempts: int = 8
    login_max_failures: int = 5
    proxy_count: int = 0
    queue_prefix: str = ""
    log_level: str = "INFO"
    # E-mail notifications (core.notifications): unset SMTP_URL writes messages to the log.
    notifications_enabled: bool = True
    smtp_url: str = ""
    mail_from: str = "Points <points@localhost>"
    public_base_url: str = "http://127.0.0.1:5000"
    preview_time_limit_seconds: int = 30  # one PDF's render, in a child process killed past it
    preview_memory_mb: int = 512  # the PDF renderer's address-space limit (RLIMIT_AS)
    near_duplicate_distance: int = 8  # Hamming distance on the 64-bit pHash; docs/near-duplicates.md
    # The address browsers use to reach the object store (scheme://host[:port]); links are signed
    # for it while the app keeps talking to MINIO_ENDPOINT. Empty: links use MINIO_ENDPOINT.
    minio_public_url: str = ""
    # Files up to this size (together) are scanned in the upload request; 25 = MAX_UPLOAD_MB's default,
    # since a spool linked into local storage goes to clamd by sendfile (docs/performance.md).
    inline_scan_max_mb: int = 25
    # Extra Flask config for tests (e.g. WTF_CSRF_ENABLED); never read from the environment.
    flask_overrides: Mapping = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def clamp_ttl(self, ttl: int | None) -> int:
        """Links never live longer than an hour, whatever is asked for."""
        if ttl is None:
            ttl = self.signed_url_ttl_seconds
        return max(1, min(int(ttl), MAX_SIGNED_URL_TTL))

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        env = {k: v for k, v in environ.items() if v is not None}

        def get(name: str, default: str = "") -> str:
            return str(env.get(name, default))

        app_env = parse_choice("APP_ENV", get("APP_ENV", "development"), ("development", "testing", "production"))
        production = app_env == "production"

        def secret(name: str) -> str:
            # Blank (spaces included) is unset, so the endpoint stays off rather than open to " ".
            value = get(name).strip()
            if production and value and len(value) < MIN_ENDPOINT_SECRET:
                raise SettingsError(f"{name} must be at least {MIN_ENDPOINT_SECRET} characters in production")
            return value

        secret_key = get("SECRET_KEY")
        if not secret_key:
            if production:
                raise SettingsError("SECRET_KEY is required when APP_ENV=production")
            secret_key = secrets.token_hex(32)  # dev only: sessions and links die with the process
        elif production and len(secret_key) < 32:
            raise SettingsError("SECRET_KEY must be at least 32 characters in production")

        database_url = get("DATABASE_URL", cls.database_url)
        scheme = urlparse(database_url).scheme
        if scheme == "postgresql":
            raise SettingsError("DATABASE_URL must name the driver: use postgresql+psycopg://")
        if not (scheme.startswith("sqlite") or scheme == "postgresql+psycopg"):
            raise SettingsError(f"DATABASE_URL scheme {scheme!r} is not supported (sqlite or postgresql+psycopg)")

        redis_url = get("REDIS_URL", cls.redis_url)
        if urlparse(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError(f"REDIS_URL={redis_url!r} is not a redis:// URL")

        storage_backend = parse_choice("STORAGE_BACKEND", get("STORAGE_BACKEND", "local"), ("local", "minio"))
        minio_endpoint = get("MINIO_ENDPOINT")
        minio_access_key = get("MINIO_ACCESS_KEY")
        minio_secret_key = get("MINIO_SECRET_KEY")
        if storage_backend == "minio":
            for name, value in (("MINIO_ENDPOINT", minio_endpoint), ("MINIO_ACCESS_KEY", minio_access_key),
                                ("MINIO_SECRET_KEY", minio_secret_key)):
                if not value:
                    raise SettingsError(f"{name} is required when STORAGE_BACKEND=minio")
            if "://" in minio_endpoint:
                raise SettingsError("MINIO_ENDPOINT is host:port without a scheme; use MINIO_SECURE for https")
        minio_public_url = parse_public_url("MINIO_PUBLIC_URL", get("MINIO_PUBLIC_URL"))

        av_scanner = parse_choice("AV_SCANNER", get("AV_SCANNER", "eicar"), ("eicar", "clamd"))
        clamd_url = get("CLAMD_URL", cls.clamd_url).strip()  # as every other URL setting
        try:
            clamd_address(clamd_url)
        except ValueError as exc:
            shown = "(not shown: it holds a password)" if "@" in clamd_url else repr(clamd_url)
            raise SettingsError(f"CLAMD_URL={shown}: {exc}") from None

        types = tuple(t.strip().lower() for t in get("ALLOWED_FILE_TYPES", ",".join(cls.allowed_file_types)).split(",") if t.strip())
        unknown = [t for t in types if t not in KNOWN_FILE_TYPES]
        if not types or unknown:
            raise SettingsError(f"ALLOWED_FILE_TYPES has unsupported types {unknown}; known: {', '.join(KNOWN_FILE_TYPES)}")

        ttl = parse_int("SIGNED_URL_TTL_SECONDS", get("SIGNED_URL_TTL_SECONDS", "3600"), minimum=1)
        ttl = min(ttl, MAX_SIGNED_URL_TTL)  # the contract: clamped, never longer

        notifications_enabled = parse_bool("NOTIFICATIONS_ENABLED", get("NOTIFICATIONS_ENABLED", "true"))
        smtp_url = get("SMTP_URL").strip()
        if smtp_url and urlparse(smtp_url).scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise SettingsError("SMTP_URL must start with smtp://, smtp+starttls:// or smtps://")
        if smtp_url and not urlparse(smtp_url).hostname:
            raise SettingsError("SMTP_URL needs a host, e.g. smtp://mail.example.org:25")
        public_base_url = get("PUBLIC_BASE_URL", cls.public_base_url).strip().rstrip("/") or cls.public_base_url
        if urlparse(public_base_url).scheme not in ("http", "https") or not urlparse(public_base_url).hostname:
            raise SettingsError(f"PUBLIC_BASE_URL={public_base_url!r} must be an absolute http(s) URL")
        if production and notifications_enabled:
            # Fail closed: in production, mail that would only reach a log is mail nobody reads.
            if not smtp_url:
                raise SettingsError("SMTP_URL is required when APP_ENV=production and NOTIFICATIONS_ENABLED is on")
            if not get("PUBLIC_BASE_URL").strip():
                raise SettingsError("PUBLIC_BASE_URL is required when APP_ENV=production and NOTIFICATIONS_ENABLED is on")

        return cls(
            app_env=app_env,
            secret_key=secret_key,
            database_url=database_url,
            db_statement_timeout_ms=parse_int("DB_STATEMENT_TIMEOUT_MS", get("DB_STATEMENT_TIMEOUT_MS", "30000"), minimum=0),
            redis_url=redis_url,
            storage_backend=storage_backend,
            local_storage_root=get("LOCAL_STORAGE_ROOT", cls.local_storage_root),
            minio_endpoint=minio_endpoint,
            minio_access_key=minio_access_key,
            minio_secret_key=minio_secret_key,
            minio_bucket=get("MINIO_BUCKET", cls.minio_bucket) or cls.minio_bucket,
            minio_secure=parse_bool("MINIO_SECURE", get("MINIO_SECURE", "false")),
            minio_region=get("MINIO_REGION", cls.minio_region) or cls.minio_region,
            signed_url_ttl_seconds=ttl,
            av_scan_enabled=parse_bool("AV_SCAN_ENABLED", get("AV_SCAN_ENABLED", "true")),
            av_scanner=av_scanner,
            clamd_url=clamd_url,
            clamd_timeout_seconds=parse_int("CLAMD_TIMEOUT_SECONDS", get("CLAMD_TIMEOUT_SECONDS", "30"), minimum=1),
            allowed_file_types=types,
            max_upload_mb=parse_int("MAX_UPLOAD_MB", get("MAX_UPLOAD_MB", "25"), minimum=1, maximum=1024),
            evidence_retention_days=parse_int("EVIDENCE_RETENTION_DAYS", get("EVIDENCE_RETENTION_DAYS", "730"), minimum=1),
            kajabi_raw_retention_days=parse_int("KAJABI_RAW_RETENTION_DAYS", get("KAJABI_RAW_RETENTION_DAYS", "365"), minimum=1),
            kajabi_webhook_secret=secret("KAJABI_WEBHOOK_SECRET"),
            cron_secret=secret("CRON_SECRET"),
            enable_internal_endpoints=parse_bool("ENABLE_INTERNAL_ENDPOINTS", get("ENABLE_INTERNAL_ENDPOINTS", "0")),
            internal_metrics_token=secret("INTERNAL_METRICS_TOKEN"),
            unmatched_alert_threshold=parse_int("UNMATCHED_ALERT_THRESHOLD", get("UNMATCHED_ALERT_THRESHOLD", "50"), minimum=0),
            analytics_sink_url=get("ANALYTICS_SINK_URL"),
            analytics_file=get("ANALYTICS_FILE", cls.analytics_file) or cls.analytics_file,
            scan_sweep_minutes=parse_int("SCAN_SWEEP_MINUTES", get("SCAN_SWEEP_MINUTES", "10"), minimum=1),
            outbox_max_attempts=parse_int("OUTBOX_MAX_ATTEMPTS", get("OUTBOX_MAX_ATTEMPTS", "8"), minimum=1, maximum=30),
            login_max_failures=parse_int("LOGIN_MAX_FAILURES", get("LOGIN_MAX_FAILURES", "5"), minimum=1),
            proxy_count=parse_int("PROXY_COUNT", get("PROXY_COUNT", "0"), minimum=0, maximum=5),
            queue_prefix=get("QUEUE_PREFIX"),
            log_level=parse_choice("LOG_LEVEL", get("LOG_LEVEL", "INFO"), ("debug", "info", "warning", "error")).upper(),
            notifications_enabled=notifications_enabled,
            smtp_url=smtp_url,
            mail_from=get("MAIL_FROM", cls.mail_from).strip() or cls.mail_from,
            public_base_url=public_base_url,
            preview_time_limit_seconds=parse_int("PREVIEW_TIME_LIMIT_SECONDS", get("PREVIEW_TIME_LIMIT_SECONDS", "30"),
                                                 minimum=1, maximum=600),
            preview_memory_mb=parse_int("PREVIEW_MEMORY_MB", get("PREVIEW_MEMORY_MB", "512"), minimum=64, maximum=8192),
            near_duplicate_distance=parse_int("NEAR_DUPLICATE_DISTANCE", get("NEAR_DUPLICATE_DISTANCE", "8"),
                                              minimum=0, maximum=32),
            minio_public_url=minio_public_url,
            inline_scan_max_mb=parse_int("INLINE_SCAN_MAX_MB", get("INLINE_SCAN_MAX_MB", "25"), minimum=0, maximum=25),
        )
