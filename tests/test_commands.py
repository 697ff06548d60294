"""The command line: clear output, idempotent seeding, one-line failures with a non-zero exit."""
import pytest

from core.platform.db import db
from tests.services.ports import free_port
from core.platform.models import Activity, ActivityTag, Badge, User


def test_users_create_prints_a_generated_password(app):
    result = app.test_cli_runner().invoke(args=["users", "create", "New@Example.com", "--role", "reviewer"])
    assert result.exit_code == 0, result.output
    assert "created new@example.com (reviewer)" in result.output
    password = result.output.split("password: ")[1].strip()
    assert len(password) >= 12
    with app.app_context():
        from core.accounts.users import authenticate
        assert authenticate("new@example.com", password, "127.0.0.1").role == "reviewer"


def test_users_create_refuses_a_duplicate_with_one_line(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "create", "a@example.com", "--role", "admin", "--password", "longenough"]).exit_code == 0
    result = runner.invoke(args=["users", "create", "A@example.com", "--role", "admin"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: A user with e-mail a@example.com already exists."


def test_users_create_refuses_a_bad_role(app):
    result = app.test_cli_runner().invoke(args=["users", "create", "a@example.com", "--role", "root"])
    assert result.exit_code == 2 and "root" in result.output


def test_demo_seed_twice_changes_nothing(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    assert "admin@example.com" in first.output and "demo-password" in first.output

    def snapshot():
        with app.app_context():
            return (db.session.query(User).count(), db.session.query(Activity).count(),
                    db.session.query(ActivityTag).count(), db.session.query(Badge).count(),
                    sorted((a.code, a.points, a.cap_points, a.cap_period) for a in db.session.query(Activity)))

    before = snapshot()
    assert before[:4] == (5, 4, 2, 3)
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0 and "users created: 0" in second.output
    assert snapshot() == before


def test_worker_refuses_an_unknown_queue_with_one_line(app):
    with app.app_context():  # as `flask worker` runs it
        result = app.test_cli_runner().invoke(args=["worker", "--burst", "--queues", "scans,nope"])
    assert result.exit_code != 0
    assert "unknown queue(s) nope; known: scans, media, outbox, ledger, maintenance" in result.output


def test_worker_stops_after_max_jobs(app):
    svc = app.extensions["points"]
    first = svc.queues.enqueue("maintenance", "os.getpid")
    second = svc.queues.enqueue("maintenance", "os.getpid")
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["worker", "--burst", "--queues", "maintenance", "--max-jobs", "1"])
    assert result.exit_code == 0, result.output
    first.refresh()
    second.refresh()
    assert (first.get_status(), second.get_status()) == ("finished", "queued")


def test_outbox_replay_reports_what_it_reset_and_refuses_a_bad_date(app):
    from core.points import catalogue, ledger
    from core.accounts.users import create_user
    from core.platform.db import db, utcnow

    with app.app_context():
        catalogue.seed_catalogue()
        uid = create_user("replay@example.com", "uploader")[0].id
        ledger.record(uid, "EXPLORE", "submission", "submission:1:approved:v1", utcnow())
        db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["outbox", "replay", "--topic", "ledger.recorded"])
    assert result.exit_code == 0 and "1 outbox record(s) reset to pending" in result.output
    bad = runner.invoke(args=["outbox", "replay", "--since", "last tuesday"])
    assert bad.exit_code != 0 and "is not an ISO date" in bad.output and len(bad.output.strip().splitlines()) == 1


def test_an_unreachable_database_or_redis_ends_a_command_with_one_line(app, make_app):
    closed = free_port()
    no_db = make_app(DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{closed}/points?connect_timeout=2")
    # users and demo had no handler of their own; kajabi reconcile printed SQLAlchemy's two lines.
    for args in (["users", "create", "someone@example.com", "--role", "uploader"], ["demo", "seed"],
                 ["kajabi", "reconcile"]):
        result = no_db.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        [line] = result.output.strip().splitlines()
        assert line.startswith("Error: ") and "database unavailable: " in line and str(closed) in line, line
    no_redis = make_app(REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    with no_redis.app_context():  # as `flask worker` runs it
        result = no_redis.test_cli_runner().invoke(args=["worker", "--burst"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: cannot reach Redis at redis://127.0.0.1:{closed}/0: "), line


@pytest.mark.parametrize("args", [["slo", "backfill", "--days", "٥"], ["retention", "run", "--days", "７３０"],
                                  ["worker", "--burst", "--max-jobs", "1_0"], ["slo", "verify", "--window", "٥m"],
                                  ["backfill", "verify", "bf-x", "--sample", "³"]])
def test_numbers_on_the_command_line_take_ascii_digits_only(app, args):
    """click's INT is Python's int(): `flask slo backfill --days ٥` recounted 5 days. Now a usage
    error (exit 2) naming the option, and nothing runs."""
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output
