"""The app factory: settings, extensions, services, blueprints, CLI, error handlers, logging."""
from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Mapping

from flask import Flask
from flask_migrate import Migrate
from redis import Redis
from sqlalchemy.engine import make_url
from werkzeug.middleware.proxy_fix import ProxyFix

from core.platform.db import db, drop_dead_on_checkout, unicode_lower_on_sqlite
from core.platform.errors import StorageError
from core.evidence.form_parsing import PointsRequest
from core.evidence.scanning import build_scanner
from core.storage import build_storage
from core.platform.logs import configure_logging
from core.platform.queues import Queues
from core.platform.request_body import GuardedInput
from core.platform.services import EXTENSION_KEY, Services
from core.platform.settings import Settings, SettingsError
from core.platform.web import BigintConverter, PointsSessionInterface

migrate = Migrate()
HERE = os.path.dirname(os.path.abspath(__file__))


def create_app(settings: Settings | Mapping | None = None) -> Flask:
    """Build the app. `settings` is a Settings, a mapping of environment-style variables, or
    None to read os.environ. Tests swap services by passing settings, never by patching."""
    if settings is None:
        settings = Settings.from_env(os.environ)
    elif not isinstance(settings, Settings):
        settings = Settings.from_env(settings)

    configure_logging(settings.log_level)
    app = Flask(__name__, static_folder=os.path.join(HERE, "static"), instance_path=os.path.join(HERE, "instance"))
    app.request_class = PointsRequest
    app.session_interface = PointsSessionInterface()
    app.url_map.converters["int"] = BigintConverter  # before any route is added
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=_absolute_sqlite(settings.database_url),
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
        # Werkzeug refuses larger bodies before we read them; per-file limits are enforced while streaming.
        MAX_CONTENT_LENGTH=settings.max_upload_bytes * 10 + 1024 * 1024,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.is_production,
        WTF_CSRF_TIME_LIMIT=None,  # the session bounds the token; a long review must not lose a form
        TESTING=settings.app_env == "testing",
    )
    app.config.update(dict(settings.flask_overrides))
    if settings.proxy_count:
        # Behind N trusted proxies: the client's address (the sign-in throttle), scheme and host come
        # from their X-Forwarded-* headers; the host matters because Flask-WTF checks an HTTPS
        # form's Referer against it. Never on by default: anyone could forge them.
        n = settings.proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    # Every reader of the body sees it whole or gets a 4xx (core/platform/request_body.py).
    app.wsgi_app = GuardedInput(app.wsgi_app)
    os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    with app.app_context():
        if settings.is_sqlite:
            unicode_lower_on_sqlite(db.engine)
        else:
            drop_dead_on_checkout(db.engine)
    migrate.init_app(app, db, directory=os.path.join(HERE, "migrations"), render_as_batch=True)
    app.extensions[EXTENSION_KEY] = build_services(settings)
    _dispose_pool_after_fork(app)

    from api import bp as api_bp
    from api.errors import register_error_handlers
    from api.health import bp as health_bp
    from api.internal import metrics_bp
    from core.monitoring.http_metrics import register_request_metrics
    from core.platform.web import register_request_hooks
    from portal import bp as portal_bp, init_portal

    register_request_hooks(app)
    register_request_metrics(app)
    register_error_handlers(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(metrics_bp)
    init_portal(app)
    app.register_blueprint(portal_bp)

    from commands import register_commands

    register_commands(app)

    try:
        app.extensions[EXTENSION_KEY].storage.ensure_ready()
    except StorageError as exc:  # keep serving; /readyz reports storage as failing
        logging.getLogger("startup").error("storage not ready: %s", exc.message)
    return app


def build_services(settings: Settings) -> Services:
    """The parts that talk to the outside world, built once per app: storage (by STORAGE_BACKEND),
    the scanner (by AV_SCANNER), Redis and the named RQ queues."""
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
    return Services(
        settings=settings,
        storage=build_storage(settings),
        scanner=build_scanner(settings),
        redis=redis,
        queues=Queues(redis, prefix=settings.queue_prefix),
    )


def _engine_options(settings: Settings) -> dict:
    # No pool_pre_ping (a round trip per checkout): a connection the server closed is replaced at
    # checkout without one (core.platform.db.drop_dead_on_checkout, set in create_app).
    options: dict = {}
    if not settings.is_sqlite and settings.db_statement_timeout_ms:
        # Set at connect, so it costs no round trip: a runaway query or a long lock wait is
        # cancelled by the server instead of holding a web thread or a worker indefinitely.
        # connect_args would replace an `options=` the URL already carries, so extend it.
        given = make_url(settings.database_url).query.get("options", "")
        given = given if isinstance(given, str) else " ".join(given)
        timeout = f"-c statement_timeout={settings.db_statement_timeout_ms}"
        options["connect_args"] = {"options": f"{given} {timeout}".strip()}
    return options


def _absolute_sqlite(url: str) -> str:
    # Relative SQLite paths are taken from the project root, whatever the working directory.
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + os.path.join(HERE, url[len(prefix):])
    return url


_APPS: "weakref.WeakSet[Flask]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for app in list(_APPS):
        with app.app_context():
            db.engine.dispose(close=False)


# RQ forks a work horse for media jobs (and gunicorn forks its workers); a forked child must not
# reuse the parent's pooled connections, and close=False leaves them working in the parent.
os.register_at_fork(after_in_child=_after_fork_in_child)


def _dispose_pool_after_fork(app: Flask) -> None:
    _APPS.add(app)


def main_app() -> Flask:
    """Entry point for `flask --app app:main_app` and gunicorn: one-line reason on bad settings."""
    try:
        return create_app()
    except SettingsError as exc:
        print(f"error: bad setting: {exc}", file=sys.stderr)
        sys.exit(2)
