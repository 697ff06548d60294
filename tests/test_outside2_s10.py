"""Tenth session's second outside pass over cee00e1 (the hook's fast path that skips the string
walk, a CSV table decoded by its byte-order mark, the table in evidence_files, a web worker
killed with SIGKILL mid-upload). Two kinds failed on cee00e1 and pass since api/json_body.py
refuses them:

- a noncharacter outside the Basic Multilingual Plane (U+1FFFE ... U+10FFFF) is taken, though
  api/json_body.py says it refuses "Unicode noncharacters" (only U+FDD0-U+FDEF, U+FFFE, U+FFFF);
- U+200E, U+200F and U+061C (Bidi_Control, as U+202A-U+202E and U+2066-U+2069 are) reach a stored
  hook, though the door says it refuses bidi controls.

Neither comes from the fast path: the walk uses the same character class. The rest are guards
for what held (the fast path refuses every refused character raw or escaped, anywhere; UTF-16
tables with odd lengths, cut pairs and garbage; no row without its object after kill -9)."""
from __future__ import annotations

import codecs
import json
import os
import re
import signal
import threading
import time
import uuid

import pytest
from sqlalchemy import text

from api.json_body import read_json
from core.evidence.csv_preview import CSV_HEAD_BYTES, csv_table
from core.platform.db import db
from core.platform.errors import ValidationError
from core.platform.models import EvidenceFile
from tests.evidence_support import PASSWORD, setup_people, yesterday
from tests.test_inline_scan import inline_app  # noqa: F401
from tests.test_kajabi import SECRET, URL, documented, events, kapp  # noqa: F401
from tests.test_outside_s10 import _post, _raw_table, _review_html
from tests.services import gunicorn
from tests.services.processes import children_of

# ---- the hook's fast path: every refused character, raw and escaped, anywhere ------------------

REFUSED = ([chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))]
           + [chr(c) for c in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]
           + [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
           + [chr(c) for c in range(0xFDD0, 0xFDF0)] + ["\ufffe", "\uffff"])
SURROGATES = ["\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ud800\\ud800", "\\udc00\\ud800", "\\ud83d x"]


def _esc(ch: str) -> str:
    return "\\u%04x" % ord(ch)


def _bodies(ch_raw: str) -> dict[str, str]:
    """One refused character (already written as it goes in the JSON text) in each place."""
    long = "y" * 5000
    return {
        "value": json.dumps({"a": "b"})[:-1] + f', "x": "{ch_raw}"}}',
        "key": '{"' + ch_raw + '": 1}',
        "middle of a long value": '{"x": "' + long + ch_raw + long + '"}',
        "end of a long key": '{"' + long + ch_raw + '": [1, 2]}',
        "deep in an array": '{"x": [[[{"y": ["ok", "' + ch_raw + '"]}]]]}',
        "documented hook's tag": json.dumps(documented("evt-f")).replace("Elevate-AI-1", "Elevate" + ch_raw, 1),
    }


def _accepted(texts) -> list[tuple[str, str]]:
    """(text, place) for every body built from `texts` (_bodies) that read_json took."""
    misses = []
    for text in texts:
        for place, body in _bodies(text).items():
            try:
                read_json(body.encode())
                misses.append((text, place))
            except ValidationError:
                pass
    return misses


def test_every_refused_character_raw_in_utf8_is_refused_in_any_place():
    """The fast path runs the walk whenever the text holds such a character; json.loads refuses
    raw C0 controls itself. Raw in UTF-8, never escaped."""
    assert [(hex(ord(ch)), place) for ch, place in _accepted(REFUSED)] == []


def test_every_refused_character_escaped_is_refused_in_any_place():
    escapes = [e for ch in REFUSED for e in (_esc(ch), _esc(ch).upper().replace("\\U", "\\u"))]
    assert _accepted(escapes) == []
    assert _accepted(SURROGATES + ["\\b", "\\f", "\\u0000", "x\\\\\\u0000", "\\\\\\b"]) == []


@pytest.mark.parametrize("escape", ["\\\\", "\\\\\\\\", "\\\\u0000", "\\\\ud800", "\\/", "\\\"", "\\n\\t\\r",
                                    "\\ud83d\\ude00", "\\u00e9", "\\\\b"])
def test_escapes_that_hold_nothing_refused_are_taken(escape):
    """An escaped backslash followed by text that looks like an escape is text, not a NUL."""
    value = read_json(('{"x": "a' + escape + 'b"}').encode())
    assert value["x"] == json.loads('"a' + escape + 'b"')


@pytest.mark.parametrize("body", [
    "\ufeff{}", "{}\u2028", "\u2028{}", "{\u2029\"a\": 1}", "{\"a\":\u00851}", "{\"a\": 1}\x00",
    "[1,\u202e2]", "{\"a\": tru\ufffee}", "{\"a\": 1\ufdd0}", "{\"a\": \"b\"\u2066}",
])
def test_a_refused_character_outside_any_string_is_invalid_json(body):
    with pytest.raises(ValidationError) as caught:
        read_json(body.encode("utf-8"))
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize("raw", [
    b"\xef\xbb\xbf{}", codecs.BOM_UTF16_LE + '{"a": 1}'.encode("utf-16-le"), '{"a": 1}'.encode("utf-32"),
    b'{"x": "\xed\xa0\x80"}', b'{"x": "\xc2\x80"}'.replace(b"\xc2\x80", b"\xc0\x80"), b'{"x": "\xf4\x90\x80\x80"}',
    b'{"x": "\xc2"}', b'{"\xff": 1}',
])
def test_bad_bytes_and_boms_are_refused(raw):
    with pytest.raises(ValidationError) as caught:
        read_json(raw)
    assert caught.value.code in ("invalid_json", "invalid_encoding")


def _post_hook(kapp, raw: bytes):
    return kapp.test_client().post(f"{URL}?token={SECRET}", data=raw, content_type="application/json")


HOOK = {f"{name} {hex(ord(ch))} {how}": body
        for ch in ("\x00", "\x1b", "\x85", "\x9f", "\u2028", "\u202e", "\u2067", "\ufdd0", "\uffff")
        for how, written in (("raw", ch), ("escaped", _esc(ch)))
        for name, body in _bodies(written).items() if name in ("value", "key", "documented hook's tag")}
HOOK.update({f"surrogate {s}": json.dumps(documented("evt-s"))[:-1] + f', "x": "{s}"}}' for s in SURROGATES})
HOOK["bom"] = "\ufeff" + json.dumps(documented("evt-b"))
HOOK["escaped backslash then u0000"] = json.dumps(documented("evt-e"))[:-1] + ', "x": "\\\\\\u0000"}'


@pytest.mark.parametrize("name", list(HOOK))
def test_a_hook_with_a_refused_character_is_400_and_nothing_is_stored(kapp, name):
    response = _post_hook(kapp, HOOK[name].encode("utf-8", "surrogatepass"))
    assert response.status_code == 400, (name, response.status_code, response.get_data()[:300])
    assert response.get_json()["code"] in ("invalid_json", "invalid_encoding")
    assert events(kapp) == []


@pytest.mark.parametrize("ch", ["\U0001fffe", "\U0001ffff", "\U0010fffe", "\U0010ffff", "\U000efffe"])
def test_a_noncharacter_outside_the_basic_plane_is_refused_like_the_others(ch):
    """The module refuses "Unicode noncharacters", but only U+FDD0-U+FDEF, U+FFFE and U+FFFF: the
    other 32 (U+1FFFE ... U+10FFFF) are taken, raw or escaped, by the fast path and the walk."""
    for body in ('{"x": "a' + ch + 'b"}', '{"x": "a\\u%04x\\u%04xb"}' % _pair(ch)):
        with pytest.raises(ValidationError):
            read_json(body.encode("utf-8"))


def _pair(ch: str) -> tuple[int, int]:
    v = ord(ch) - 0x10000
    return 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)


@pytest.mark.parametrize("ch", ["\u200e", "\u200f", "\u061c"])
def test_the_other_bidi_controls_are_refused_too(kapp, ch):
    """U+200E LEFT-TO-RIGHT MARK, U+200F RIGHT-TO-LEFT MARK and U+061C ARABIC LETTER MARK are
    Bidi_Control characters (Unicode's PropList) as U+202A-U+202E and U+2066-U+2069 are: a hook's
    e-mail or tag holding one is stored and shown reordered, though the door says it refuses bidi
    controls."""
    body = json.dumps(documented("evt-bidi", tag="Elevate-AI-1" + ch + "-Completed "), ensure_ascii=False)
    response = _post_hook(kapp, body.encode("utf-8"))
    assert response.status_code == 400, (response.status_code, response.get_data()[:300], len(events(kapp)))
    assert events(kapp) == []


# ---- CSV tables decoded by byte-order mark --------------------------------------------------


FORMULA_ROWS = "name,points\nGrace,=HYPERLINK(\"http://evil\",\"x\")\n@SUM(A1),-5\n+cmd,3\n"


def _cells(table) -> list[str]:
    return [c["text"] for r in table["rows"] for c in r]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be-bom", "utf-32", "utf-32-be-bom", "utf-8-sig"])
def test_a_table_by_any_bom_marks_the_same_formulas(encoding):
    if encoding.endswith("-bom"):
        codec = encoding[:-4]
        data = "\ufeff".encode(codec) + FORMULA_ROWS.encode(codec)
    else:
        data = FORMULA_ROWS.encode(encoding)
    table = csv_table(data, complete=True)
    assert table == csv_table(FORMULA_ROWS.encode(), complete=True), encoding
    assert table["formulas"] == 3


@pytest.mark.parametrize("data", [
    codecs.BOM_UTF16_LE + FORMULA_ROWS.encode("utf-16-le") + b"\x3d",   # odd byte count
    codecs.BOM_UTF16_BE + FORMULA_ROWS.encode("utf-16-be")[:-1],
    codecs.BOM_UTF32_LE + FORMULA_ROWS.encode("utf-32-le") + b"\x00\x00",
    codecs.BOM_UTF16_LE + bytes(range(256)) * 40,                       # a BOM, then garbage
    codecs.BOM_UTF32_BE + b"\xff" * 4000,
    codecs.BOM_UTF8 + b"\xff\xfe\x00\x00" + b"\xed\xa0\x80" * 100,
    codecs.BOM_UTF16_LE + "=1+1\n".encode("utf-16-le") + b"\x00\xd8\x00\xd8" * 50 + "=2\n".encode("utf-16-le"),
])
def test_odd_bom_files_give_a_table_with_no_surrogate_and_their_formulas(data):
    for complete in (True, False):
        table = csv_table(data[:CSV_HEAD_BYTES], complete=complete)
        json.dumps(table).encode("utf-8")  # no lone surrogate: PostgreSQL and psycopg would refuse it
        if data.startswith(codecs.BOM_UTF16_LE + b"=") or b"=\x00H" in data[:200] or b"\x00=" in data[:10]:
            assert table["formulas"] >= 1


def test_a_utf16_head_that_cuts_a_surrogate_pair_drops_the_cut_line():
    row = ",".join(["\U0001F600" * 9] * 3) + ",=1+2\n"   # 4 bytes per emoji in UTF-16
    body = row * 2000
    data = codecs.BOM_UTF16_LE + body.encode("utf-16-le")
    cut = data[:CSV_HEAD_BYTES]
    assert 0xD8 <= cut[-1] <= 0xDB or 0xD8 <= cut[-3] <= 0xDB  # the head ends inside a pair
    table = csv_table(cut, complete=False)
    assert "\ufffd" not in "".join(_cells(table))
    assert table["truncated"] and table["formulas"] == len(table["rows"]) == 20


@pytest.mark.parametrize("name, data, status, code", [
    ("utf32", FORMULA_ROWS.encode("utf-32"), 415, "csv_encoding_not_supported"),
    ("utf32be", codecs.BOM_UTF32_BE + FORMULA_ROWS.encode("utf-32-be"), 415, "csv_encoding_not_supported"),
    ("utf16 no bom", FORMULA_ROWS.encode("utf-16-le"), 415, "csv_encoding_not_supported"),
    ("utf16be no bom", FORMULA_ROWS.encode("utf-16-be"), 415, "csv_encoding_not_supported"),
    ("bom then garbage", codecs.BOM_UTF16_LE + bytes(range(256)) * 40, None, None),
])
def test_csvs_the_type_check_refuses_store_nothing(inline_app, name, data, status, code):
    setup_people(inline_app)
    response = _post(inline_app, "x.csv", data)
    assert response.status_code < 500, (name, response.status_code)
    assert response.status_code != 302, name
    if status:
        assert response.status_code == status, (name, response.status_code, response.get_data()[:300])
        assert "CSV UTF-8" in response.get_data(as_text=True)  # the page names the way out
    with inline_app.app_context():
        assert db.session.query(EvidenceFile).count() == 0


@pytest.mark.parametrize("name, data", [
    ("utf16 odd byte count", codecs.BOM_UTF16_LE + FORMULA_ROWS.encode("utf-16-le") + b"\x3d"),
    ("utf16be with bom", codecs.BOM_UTF16_BE + FORMULA_ROWS.encode("utf-16-be")),
    ("utf16 lone surrogates after 8 KiB", codecs.BOM_UTF16_LE + (("a," + "b" * 1000 + "\n") * 5).encode("utf-16-le")
     + b"\x00\xd8,\x00\x00\xdc\n\x00" * 10 + "=9+9,x\n".encode("utf-16-le")),
    ("utf16 pair cut at 64 KiB", codecs.BOM_UTF16_LE + ((",".join(["\U0001F600" * 9] * 3) + ",=1+2\n") * 2000).encode("utf-16-le")),
])
def test_a_utf16_csv_upload_gives_a_made_table_and_no_500(inline_app, name, data):
    setup_people(inline_app)
    response = _post(inline_app, "u16.csv", data)
    assert response.status_code == 302, (name, response.status_code, response.get_data()[:300])
    sid = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    with inline_app.app_context():
        f = db.session.query(EvidenceFile).filter_by(submission_id=sid).one()
        file_id, state = f.id, f.preview_state
    assert state == "made", name
    table = _raw_table(inline_app, file_id)
    head = data[:CSV_HEAD_BYTES]
    assert table == json.loads(json.dumps(csv_table(head, complete=len(data) <= len(head))))
    assert table["formulas"] >= 1
    status, html = _review_html(inline_app, sid)
    assert status == 200 and f'data-testid="csv-{file_id}"' in html and 'class="formula"' in html


# ---- a real gunicorn whose worker is killed (-9) while 1 MiB CSV uploads are in flight --------


_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _session(port: int, email: str):
    import requests

    s = requests.Session()
    base = f"http://127.0.0.1:{port}"
    token = _TOKEN.search(s.get(f"{base}/login", timeout=30).text).group(1)
    r = s.post(f"{base}/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
               allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    return s, base


def _upload(s, base: str, data: bytes):
    token = _TOKEN.search(s.get(f"{base}/submissions/new", timeout=60).text).group(1)
    return s.post(f"{base}/submissions/new", data={
        "csrf_token": token, "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "city": "Leeds"},
        files={"files": (f"{uuid.uuid4().hex}.csv", data, "text/csv")}, allow_redirects=False, timeout=120)


def _mib_csv() -> bytes:
    row = b"=1+2," + b",".join([b"v" * 60] * 12) + b"\n"
    return row * (1024 * 1024 // len(row))


def test_a_worker_killed_mid_upload_leaves_no_row_without_its_object_and_the_next_client_is_served(
        tmp_path, migrated_database):
    from app import create_app
    from core.accounts.users import create_user
    from core.platform.settings import Settings
    from core.points.catalogue import seed_catalogue
    from tests.conftest import base_env

    storage = tmp_path / "storage"
    setup = create_app(Settings.from_env(base_env(str(storage))))
    email = f"kill-{uuid.uuid4().hex[:8]}@example.com"
    with setup.app_context():
        seed_catalogue()
        uid = create_user(email, "uploader", PASSWORD)[0].id
        db.session.commit()

    statuses: list[int] = []
    errors: list[str] = []
    stop_at = time.monotonic() + 12
    data = _mib_csv()
    with gunicorn.running(tmp_path, WEB_CONCURRENCY="2", WEB_THREADS="4", INLINE_SCAN_MAX_MB="2") as (proc, port):
        def client():
            try:
                s, base = _session(port, email)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"login: {exc!r}")
                return
            while time.monotonic() < stop_at:
                try:
                    statuses.append(_upload(s, base, data).status_code)
                except Exception as exc:  # noqa: BLE001  (a killed worker drops its connections)
                    errors.append(type(exc).__name__)

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        killed = 0
        for delay in (2.0, 2.5, 2.5):
            time.sleep(delay)
            pids = children_of(proc.pid)
            if pids:
                os.kill(pids[killed % len(pids)], signal.SIGKILL)
                killed += 1
        for t in threads:
            t.join(timeout=180)
        assert killed == 3
        time.sleep(3)  # the master starts new workers
        s, base = _session(port, email)
        after = _upload(s, base, data)
        assert after.status_code == 302, (after.status_code, after.text[:300])
    assert statuses and all(code < 500 for code in statuses), (statuses, errors)
    assert 302 in statuses, (statuses, errors)
    with setup.app_context():
        rows = db.session.execute(text(
            "SELECT id, storage_key, deleted_at, preview_state, preview_table IS NOT NULL, ext FROM evidence_files"
            " WHERE user_id = :u"), {"u": uid}).all()  # the migrated database is shared
    assert rows
    mine = storage / "evidence" / str(uid)
    objects = {str(p.relative_to(storage)) for p in mine.rglob("*") if p.is_file()}
    live = {r.storage_key for r in rows if r.deleted_at is None}
    # A killed worker's adopted-but-uncommitted object has no row (at most one per killed request):
    # the orphan sweep removes it, and nothing else.
    assert live <= objects and len(objects - live) <= 3 * 4, sorted(objects - live)
    from datetime import timedelta

    from core.evidence import orphans
    from core.platform.db import utcnow as _now
    with setup.app_context():
        counts = orphans.sweep(setup.extensions["points"].storage, now=_now() + timedelta(hours=2))
    assert {str(p.relative_to(storage)) for p in mine.rglob("*") if p.is_file()} == live, counts
    from core.storage.local import _TMP_PREFIX
    assert [p for p in storage.rglob(_TMP_PREFIX + "*")] == []  # spools are O_TMPFILE: a kill leaves no name
    assert not (storage / "previews").exists() or not any((storage / "previews").rglob("*.json"))
    missing = [r for r in rows if r.deleted_at is None and not (storage / r.storage_key).is_file()]
    assert missing == [], missing
    no_table = [r for r in rows if r.deleted_at is None and r.preview_state == "made" and not r[4]]
    assert no_table == [], no_table


@pytest.mark.parametrize("name", ["utf16 odd byte count", "utf16be with bom", "utf16 pair cut at 64 KiB"])
def test_a_utf16_table_made_by_the_job_is_the_one_made_in_the_request(app, name):
    from tests.evidence_support import run_worker, submit

    data = dict((n, d) for n, d in [
        ("utf16 odd byte count", codecs.BOM_UTF16_LE + FORMULA_ROWS.encode("utf-16-le") + b"\x3d"),
        ("utf16be with bom", codecs.BOM_UTF16_BE + FORMULA_ROWS.encode("utf-16-be")),
        ("utf16 pair cut at 64 KiB", codecs.BOM_UTF16_LE
         + ((",".join(["\U0001F600" * 9] * 3) + ",=1+2\n") * 2000).encode("utf-16-le"))])[name]
    owner = setup_people(app)["owner"]
    _, (file_id,) = submit(app, owner, [("u16.csv", data)])
    run_worker(app)
    head = data[:CSV_HEAD_BYTES]
    table = _raw_table(app, file_id)
    assert table == json.loads(json.dumps(csv_table(head, complete=len(data) <= len(head))))
    assert table["formulas"] >= 1
