"""Two `flask db upgrade` runs at once (two deploys starting together) take turns: the second
waits on a PostgreSQL advisory lock (migrations/env.py) and then finds the schema at head. Without
it both ran the same revisions, and one could drop an index the other was building CONCURRENTLY
(migrations/online_index.py)."""
import threading
import time

import psycopg
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from core.platform.db import db
from tests.conftest import app_on_migrations

MIGRATION_LOCK = 7324711001  # migrations/env.py


def _version() -> str:
    db.session.remove()
    return db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_an_upgrade_waits_for_one_already_running_then_finds_nothing_to_do(tmp_path):
    with app_on_migrations("postgresql", tmp_path, "migration_lock") as app:
        head = _version()
        downgrade(revision="0011_user_status")
        db.session.remove()
        dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        errors: list[BaseException] = []

        def second_deploy():
            try:
                with app.app_context():
                    upgrade()
                    db.session.remove()
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        with psycopg.connect(dsn, autocommit=True) as first_deploy:
            first_deploy.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            runner = threading.Thread(target=second_deploy, daemon=True)
            runner.start()
            deadline = time.monotonic() + 60
            while not first_deploy.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory' AND datname = current_database()").fetchone()[0]:
                assert runner.is_alive() and time.monotonic() < deadline, errors or "the upgrade never waited"
                time.sleep(0.05)
            assert _version() == "0011_user_status"  # nothing ran while the other held the lock
            first_deploy.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        runner.join(timeout=120)
        assert not runner.is_alive() and not errors, errors
        assert _version() == head
        # The lock went back with the connection: another upgrade runs at once.
        upgrade()
        assert _version() == head
