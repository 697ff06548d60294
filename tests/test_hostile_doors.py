"""Found by the third session's outside review, each failing before its fix: forged keyset
cursors (500), SLO cache values of the wrong shape (500), the bulk reject's confirmation skipped
by repeated ids, and portal number fields that read other scripts' digits."""
from __future__ import annotations

import base64
import json

import pytest
from redis import Redis

from core.platform.db import db
from core.platform.models import Submission
from tests.conftest import REDIS_URL
from tests.test_portal_support import flashes, insert, people, sign_in

TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _cursor(value, row_id) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, row_id]).encode()).decode().rstrip("=")


# --- keyset cursors: /review?after= and /submissions?after= -------------------------------------

ODD_CURSORS = {
    "infinite id": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", 1e999]').decode(),
    "year 1 east of UTC": _cursor("0001-01-01T00:00:00+14:00", 1),
    "year 9999 west of UTC": _cursor("9999-12-31T23:59:59-14:00", 1),
    "id past bigint": _cursor("2026-01-01T00:00:00+00:00", 99999999999999999999999),
    "deeply nested": base64.urlsafe_b64encode(b"[" * 100000 + b"]" * 100000).decode(),  # RecursionError
    "nested a little": base64.urlsafe_b64encode(b"[" * 120 + b"]" * 120).decode(),
}


@pytest.mark.parametrize("name", list(ODD_CURSORS))
def test_a_forged_queue_cursor_is_a_broken_link_not_a_500(app, name):
    """reviewing.decode_cursor catches ValueError/TypeError only: int(inf) raises OverflowError,
    and UTCDateTime.astimezone() of year 1 at +14:00 overflows when bound."""
    people(app)

    client = app.test_client()
    sign_in(client, "reviewer")
    response = client.get("/review", query_string={"after": ODD_CURSORS[name]})
    assert response.status_code == 200, (name, response.status_code)  # the first page, with the reason
    assert "That page link is broken; start from the first page." in response.get_data(as_text=True)


@pytest.mark.parametrize("name", list(ODD_CURSORS))
def test_a_forged_my_submissions_cursor_is_not_a_500(app, name):
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = client.get("/submissions", query_string={"after": ODD_CURSORS[name]}, follow_redirects=True)
    assert response.status_code == 200, (name, response.status_code)
    assert "That page link is broken; start from the first page." in flashes(response)


# --- SLO cache holding JSON of the wrong shape -------------------------------------------------

@pytest.fixture
def slo_app(make_app):
    return make_app(ENABLE_INTERNAL_ENDPOINTS="1", INTERNAL_METRICS_TOKEN=TOKEN)


@pytest.mark.parametrize("garbage", [b"null", b"[]", b"{}", b"5", b'"x"', b"\xff\xfe", b"not json",
                                     b'{"events": "x", "within_60s": 1, "ratio": "nan"}', b'{"kajabi_events": [1]}',
                                     b'{"infected": "many", "unscannable": 0, "integrity_mismatch": 0}',
                                     # numbers no gauge holds, and a figure missing its quantiles
                                     b'{"events": 1' + b"0" * 400 + b', "within_60s": 1, "ratio": 1' + b"0" * 400
                                     + b', "p50_seconds": null, "p95_seconds": null, "p99_seconds": null}',
                                     b'{"events": NaN, "within_60s": 1, "ratio": Infinity, "p50_seconds": null,'
                                     b' "p95_seconds": null, "p99_seconds": null}',
                                     b'{"events": 1, "within_60s": 1, "ratio": 1, "p50_seconds": 1}',
                                     b'{"kajabi_events": {"x": 1' + b"0" * 400 + b'}, "submissions": {"y": NaN}}',
                                     b'{"infected": 1' + b"0" * 400 + b', "unscannable": NaN, "integrity_mismatch": Infinity}'])
@pytest.mark.parametrize("key", ["slo:kajabi_to_ledger", "slo:kajabi_to_ledger:300s", "slo:table_counts",
                                 "slo:file_outcomes"])
def test_metrics_survive_a_cache_value_of_the_wrong_shape(slo_app, garbage, key):
    """kajabi_to_ledger_cached_windows trusts any JSON in the cache: `null`, `[]`, `{}` are
    taken as the figure and /metrics fails reading figure['ratio']. Should recompute."""
    prefix = slo_app.extensions["points"].settings.queue_prefix
    Redis.from_url(REDIS_URL).set(prefix + key, garbage, ex=60)
    client = slo_app.test_client()
    assert client.get("/metrics", headers=AUTH).status_code == 200
    window = "5m" if key.endswith("300s") else "28d"
    response = client.get("/api/slo", query_string={"window": window}, headers=AUTH)
    assert response.status_code == 200
    assert isinstance(response.get_json()["kajabi_to_ledger"].get("ratio"), (int, float))
    json.loads(response.get_data(as_text=True), parse_constant=lambda name: pytest.fail(f"{name} in /api/slo"))


# --- bulk reject: the confirmation step and duplicate ids -------------------------------------

def test_bulk_reject_with_repeated_ids_still_asks_for_confirmation(app):
    """confirm._bulk counts the ids as posted (duplicates, '5' and '05', included) and holds only
    when len <= BULK_MAX; decide_many de-duplicates. BULK_MAX+1 copies of one id pass the
    confirmation step unasked and the submission is rejected."""
    from core.review.reviewing import BULK_MAX

    ids = people(app)
    [sid] = insert(app, ids["owner"], 1)
    client = app.test_client()
    sign_in(client, "reviewer")
    page = client.post("/review/bulk", data={"submission_ids": [str(sid)] * (BULK_MAX + 1), "reject": "1",
                                             "reason": "Duplicate"}, follow_redirects=True)
    with app.app_context():
        status = db.session.get(Submission, sid).status
    assert status == "in_review", "rejected without the confirmation page"


def test_bulk_reject_confirmation_counts_distinct_submissions(app):
    ids = people(app)
    [sid] = insert(app, ids["owner"], 1)
    client = app.test_client()
    sign_in(client, "reviewer")
    page = client.post("/review/bulk", data={"submission_ids": [str(sid), "0" + str(sid)], "reject": "1",
                                             "reason": "Duplicate"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Reject 1 submission(s)" in html, "the page asks about 2 submissions where 1 would be rejected"


# --- portal number fields (WTForms IntegerField is Python's int()) -----------------------------

def test_retention_days_in_other_scripts_digits_is_refused(app):
    """/admin/retention days='٥' (Arabic-Indic five) or '1_0': IntegerField reads them with int(),
    so the confirmation asks to delete evidence older than 5 days. The session's rule (ASCII digits
    only, as `flask slo backfill --days ٥` is now refused) is not applied to the form."""
    people(app)
    client = app.test_client()
    sign_in(client, "admin")
    for raw in ("٥", "１０", "1_0"):
        held = client.post("/admin/retention", data={"days": raw, "run": "Run now"})
        assert "Run retention now?" not in held.get_data(as_text=True), raw


def test_activity_points_in_other_scripts_digits_are_refused(app):
    people(app)
    client = app.test_client()
    sign_in(client, "admin")
    client.post("/admin/activities/PRESENT", data={"name": "Present", "points": "٥٠", "cap_period": "none"},
                follow_redirects=True)
    with app.app_context():
        from core.platform.models import Activity
        assert db.session.get(Activity, "PRESENT").points != 50, "'٥٠' was stored as 50 points"


def test_submission_counter_in_other_scripts_digits_is_refused(app):
    import io

    from tests.evidence_support import png, yesterday
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    client.post("/submissions/new", data={
        "activity_code": "AMPLIFY", "session_date": yesterday().isoformat(), "counter_peers": "٣",
        "counter_students": "2_0", "files": [(io.BytesIO(png()), "photo.png")]},
        content_type="multipart/form-data", follow_redirects=True)
    with app.app_context():
        rows = db.session.query(Submission).all()
        assert not rows, f"stored with counters {rows[0].counters}"


# --- numbers longer than any column (CPython's int() refuses over 4300 digits with its own error) --

LONG = "9" * 5000


def test_a_number_of_thousands_of_digits_is_not_a_number():
    from core.platform.numbers import parse_id, parse_whole
    assert parse_whole(LONG) is None and parse_whole("-" + LONG) is None and parse_id(LONG) is None
    assert parse_whole("9" * 19) == int("9" * 19) and parse_whole("9" * 20) is None


def test_a_setting_of_thousands_of_digits_is_a_settings_error():
    from core.platform.settings import Settings, SettingsError
    with pytest.raises(SettingsError, match="is not a whole number"):
        Settings.from_env({"MAX_UPLOAD_MB": LONG})


def test_activity_points_of_thousands_of_digits_get_the_field_message(app):
    people(app)
    client = app.test_client()
    sign_in(client, "admin")
    page = client.post("/admin/activities/PRESENT", data={"name": "Present", "points": LONG, "cap_period": "none"})
    html = page.get_data(as_text=True)
    assert page.status_code in (200, 400), page.status_code
    assert "Not a valid integer value." in html and "4300" not in html
    assert LONG in html, "what was typed is kept in the field"


def test_a_command_line_number_of_thousands_of_digits_is_a_usage_error(app):
    result = app.test_cli_runner().invoke(args=["slo", "backfill", "--days", LONG])
    assert result.exit_code == 2, result.output
    assert "is not a whole number" in result.output and LONG not in result.output
