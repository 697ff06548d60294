"""Fixtures on real services: the machine's PostgreSQL and Redis, plus a clamd and an S3 endpoint
that the test run starts itself (tests/services/). Services are swapped through the settings
passed to create_app, never by monkeypatching."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import psycopg
import pytest
from redis import Redis
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from app import create_app
from core.platform.db import db
from core.platform.settings import Settings

pytest_plugins = ["tests.services.clamd", "tests.services.s3server"]

SLOT_KEY = "points:test-slot"
SLOT_DBS = (13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2)


def _claim_slot() -> tuple[str, str]:
    """Each test run gets its own Redis db and PostgreSQL database, so two runs on one machine
    (two developers, or CI beside a session) never wipe each other's data. The claim is a
    Redis key that expires, so a killed run frees its slot. Children inherit it through env."""
    if os.environ.get("TEST_DATABASE_URL") and os.environ.get("TEST_REDIS_URL"):
        return os.environ["TEST_DATABASE_URL"], os.environ["TEST_REDIS_URL"]
    for number in SLOT_DBS:
        if Redis(host="127.0.0.1", port=6379, db=number).set(SLOT_KEY, os.getpid(), nx=True, ex=SLOT_TTL_S):
            os.environ["TEST_REDIS_URL"] = f"redis://127.0.0.1:6379/{number}"
            os.environ["TEST_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/points_test_{number}"
            return os.environ["TEST_DATABASE_URL"], os.environ["TEST_REDIS_URL"]
    raise RuntimeError(f"every test slot (Redis dbs {SLOT_DBS}) is taken by another test run")


SLOT_TTL_S = 900
DATABASE_URL, REDIS_URL = _claim_slot()
TABLES = ["user_badges", "badges", "activity_tags", "points_ledger", "outbox", "kajabi_events", "audit_events", "sink_keys",
          "runs", "daily_rollups", "ops_samples", "evidence_files", "submissions", "activities", "users",
          "kajabi_latency_hist_5m", "kajabi_latency_hist", "kajabi_latency_hist_day", "kajabi_state_counts"]


def _recreate_database(url: str) -> None:
    u = make_url(url)
    admin = u.set(database="postgres", drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{u.database}"')


@contextmanager
def app_on_migrations(kind: str, tmp_path, name: str):
    """An app (its context pushed) on a database built by the migrations alone: a SQLite file in
    tmp_path, or a PostgreSQL database `<this run's>_<name>` made afresh. kind: sqlite | postgresql."""
    from flask_migrate import upgrade

    env = base_env(str(tmp_path / "storage"))
    if kind == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path}/{name}.db"
    else:
        env["DATABASE_URL"] = env["DATABASE_URL"] + f"_{name}"  # beside this run's test database
        _recreate_database(env["DATABASE_URL"])
    app = create_app(env)
    with app.app_context():
        upgrade()
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_database():
    """A fresh PostgreSQL database, migrated once per run with `flask db upgrade`'s code path."""
    from flask_migrate import upgrade

    _recreate_database(DATABASE_URL)
    app = create_app(Settings.from_env(base_env("/tmp/points-migrate-storage")))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return DATABASE_URL


def base_env(storage_root: str) -> dict:
    return {
        "APP_ENV": "testing",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_ROOT": storage_root,
        "AV_SCANNER": "eicar",
        # Existing tests follow a file through the scans queue; tests/test_inline_scan.py turns
        # the in-request scan of small files on.
        "INLINE_SCAN_MAX_MB": "0",
        "ANALYTICS_FILE": os.path.join(os.path.dirname(storage_root), "analytics.jsonl"),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def make_settings(tmp_path, migrated_database):
    """make_settings(**ENV_OVERRIDES) -> Settings, e.g. make_settings(STORAGE_BACKEND="minio")."""
    root = str(tmp_path / "storage")

    def build(flask_overrides: dict | None = None, **env) -> Settings:
        settings = Settings.from_env({**base_env(root), **{k: str(v) for k, v in env.items()}})
        overrides = {"WTF_CSRF_ENABLED": False} if flask_overrides is None else flask_overrides
        return settings.replace(flask_overrides=overrides)

    return build


def _clean(app) -> None:
    with app.app_context():
        with db.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE")
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    redis.set(SLOT_KEY, os.getpid(), ex=SLOT_TTL_S)  # keep our claim alive across the flush


def pytest_sessionfinish(session, exitstatus):
    redis = Redis.from_url(REDIS_URL)
    if redis.get(SLOT_KEY) == str(os.getpid()).encode():
        redis.delete(SLOT_KEY)


@pytest.fixture
def make_app(make_settings):
    """make_app(**ENV_OVERRIDES) -> a Flask app on clean PostgreSQL tables and a clean Redis db."""
    apps = []

    def build(flask_overrides: dict | None = None, **env):
        app = create_app(make_settings(flask_overrides, **env))
        if not apps:
            _clean(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@contextmanager
def serve(app):
    """Run the app on a free loopback port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def live_server(app):
    with serve(app) as url:
        yield url


@pytest.fixture
def redis_conn():
    return Redis.from_url(REDIS_URL)
