"""The files API: who may read what, in which scan state, with which headers, on both backends."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from core.platform.db import db, utcnow
from core.platform.models import AuditEvent, EvidenceFile
from tests.evidence_support import (CLEAN_PDF, PASSWORD, minio_env, png, run_worker, setup_people, sign_in,
                                    submit)

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
WHO = ("anonymous", "other", "owner", "reviewer", "admin")


def make_files(app) -> dict[str, int]:
    """Files of `owner` in each state: clean, infected, pending, deleted (built-in EICAR scanner)."""
    people = setup_people(app)
    _, [clean, infected] = submit(app, people["owner"], [("Report 2024.pdf", CLEAN_PDF), ("eicar.csv", EICAR)])
    _, [gone] = submit(app, people["owner"], [("old.png", png())])
    run_worker(app)
    _, [pending] = submit(app, people["owner"], [("later.pdf", CLEAN_PDF)])
    with app.app_context():
        db.session.get(EvidenceFile, gone).deleted_at = utcnow()
        db.session.commit()
    return {"clean": clean, "infected": infected, "pending": pending, "deleted": gone, **people}


def client_for(app, who: str):
    client = app.test_client()
    if who != "anonymous":
        sign_in(client, who)
    return client


EXPECTED = {  # state -> (status, code) for a user who may see the file
    "clean": (200, None),
    "pending": (409, "file_not_ready"),
    "infected": (410, "file_infected"),
    "deleted": (410, "file_deleted"),
}


@pytest.fixture
def files_app(app):
    return app, make_files(app)


@pytest.mark.parametrize("who", WHO)
def test_access_matrix_for_download_and_signed_url(files_app, who):
    app, ids = files_app
    client = client_for(app, who)
    for state, (status, code) in EXPECTED.items():
        for path in (f"/api/files/{ids[state]}", f"/api/files/{ids[state]}/signed-url"):
            with client.get(path) as response:  # closing releases a streamed file
                response.get_data()
            if who == "anonymous":
                want = (401, "unauthenticated")
            elif who == "other":
                want = (404, "file_not_found")  # someone else's file does not exist, whatever its state
            else:
                want = (status, code)
            got = (response.status_code, response.json["code"] if response.is_json and response.status_code >= 400 else None)
            assert got == want, (who, state, path)
            if response.status_code >= 400:
                assert set(response.json) == {"type", "code", "message", "details"}


@pytest.mark.parametrize("who", WHO)
def test_access_matrix_for_batch_links(files_app, who):
    app, ids = files_app
    client = client_for(app, who)
    asked = [ids["clean"], ids["pending"], ids["infected"], ids["deleted"], 999999]
    response = client.post("/api/files/signed-urls", json={"file_ids": asked, "ttl": 7200})
    if who == "anonymous":
        assert response.status_code == 401 and response.json["code"] == "unauthenticated"
        return
    assert response.status_code == 200
    body = response.json
    errors = {e["file_id"]: e["code"] for e in body["errors"]}
    if who == "other":
        assert body["urls"] == []
        assert set(errors.values()) == {"file_not_found"} and len(errors) == 5
        return
    assert [u["file_id"] for u in body["urls"]] == [ids["clean"]]
    assert body["urls"][0]["ttl"] == 3600
    assert errors == {ids["pending"]: "file_not_ready", ids["infected"]: "file_infected",
                      ids["deleted"]: "file_deleted", 999999: "file_not_found"}


def test_batch_links_validate_their_body(files_app):
    app, _ = files_app
    client = client_for(app, "reviewer")
    for body in ({}, {"file_ids": []}, {"file_ids": ["1"]}, {"file_ids": list(range(101))}, [1, 2],
                 {"file_ids": [1], "ttl": "\u00b2"}):  # "²" passes str.isdigit() but not int()
        response = client.post("/api/files/signed-urls", json=body)
        assert response.status_code == 400 and response.json["code"] == "invalid_parameter", body
    response = client.post("/api/files/signed-urls", json={"file_ids": [1], "ttl": "soon"})
    assert response.status_code == 400 and response.json["details"][0]["field"] == "ttl"


def test_local_download_headers(files_app):
    app, ids = files_app
    with client_for(app, "owner").get(f"/api/files/{ids['clean']}") as response:
        assert response.status_code == 200 and response.data == CLEAN_PDF
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert not response.headers.get("Content-Encoding")
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Report 2024.pdf\"; filename*=UTF-8''Report%202024.pdf")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert int(response.headers["Content-Length"]) == len(CLEAN_PDF)


def test_ttl_is_clamped_and_every_link_is_audited(files_app):
    app, ids = files_app
    client = client_for(app, "reviewer")
    before = datetime.now(timezone.utc)
    body = client.get(f"/api/files/{ids['clean']}/signed-url?ttl=7200").json
    assert body["ttl"] == 3600
    assert datetime.fromisoformat(body["expires_at"]) <= before + timedelta(seconds=3601)
    assert client.get(f"/api/files/{ids['clean']}/signed-url?ttl=60").json["ttl"] == 60
    assert client.get(f"/api/files/{ids['clean']}/signed-url").json["ttl"] == 3600
    for bad in ("0", "-5", "abc", "1.5"):
        response = client.get(f"/api/files/{ids['clean']}/signed-url?ttl={bad}")
        assert response.status_code == 400 and response.json["code"] == "invalid_parameter"
    with app.app_context():
        events = db.session.query(AuditEvent).filter_by(action="file.link_issued").order_by(AuditEvent.id).all()
        assert [(e.actor_id, e.subject_id, e.details["ttl"]) for e in events] == [
            (ids["reviewer"], str(ids["clean"]), 3600), (ids["reviewer"], str(ids["clean"]), 60),
            (ids["reviewer"], str(ids["clean"]), 3600)]


def test_local_links_work_over_http_and_refuse_tampering_and_expiry(files_app, live_server):
    app, ids = files_app
    http = requests.Session()
    response = http.post(f"{live_server}/login", data={"email": "owner@example.com", "password": PASSWORD},
                         allow_redirects=False, timeout=10)
    assert response.status_code == 302
    link = http.get(f"{live_server}/api/files/{ids['clean']}/signed-url?ttl=7200", timeout=10).json()
    assert link["ttl"] == 3600

    # The link itself is the authorisation: a client without the session cookie can use it.
    download = requests.get(live_server + link["url"], timeout=10)
    assert download.status_code == 200 and download.content == CLEAN_PDF
    assert download.headers["Content-Disposition"].startswith('attachment; filename="Report 2024.pdf"')
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"

    query = {k: v[0] for k, v in parse_qs(urlsplit(link["url"]).query).items()}
    for tampered in ({**query, "exp": str(int(query["exp"]) + 3600)},
                     {**query, "key": query["key"].replace(".pdf", ".png")},
                     {**query, "fn": "evil.html"},
                     {**query, "sig": "0" * 64}):
        response = requests.get(f"{live_server}/api/storage/local?{urlencode(tampered)}", timeout=10)
        assert response.status_code == 403 and response.json()["code"] == "link_invalid"

    with app.app_context():
        key = db.session.get(EvidenceFile, ids["clean"]).storage_key
    storage = app.extensions["points"].storage
    expired = storage.signed_url(key, ttl=60, filename="x.pdf", _now=datetime.now(timezone.utc) - timedelta(seconds=120))
    response = requests.get(live_server + expired.url, timeout=10)
    assert response.status_code == 403 and response.json()["code"] == "link_expired"

    # The download route itself streams over HTTP too.
    response = http.get(f"{live_server}/api/files/{ids['clean']}", timeout=10)
    assert response.status_code == 200 and response.content == CLEAN_PDF


def test_minio_download_redirects_to_a_short_presigned_attachment_link(make_app, s3_endpoint):
    app = make_app(**minio_env(s3_endpoint, f"t-{uuid.uuid4().hex[:12]}"))
    ids = make_files(app)
    client = client_for(app, "reviewer")
    response = client.get(f"/api/files/{ids['clean']}")
    assert response.status_code == 302
    assert response.headers["Cache-Control"] == "private, no-store"
    location = response.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert int(query["X-Amz-Expires"][0]) <= 3600
    assert query["response-content-disposition"][0].startswith('attachment; filename="Report 2024.pdf"')
    download = requests.get(location, timeout=10)
    assert download.status_code == 200 and download.content == CLEAN_PDF
    assert download.headers["Content-Disposition"].startswith("attachment;")

    link = client.get(f"/api/files/{ids['clean']}/signed-url?ttl=7200").json
    assert link["ttl"] == 3600 and parse_qs(urlsplit(link["url"]).query)["X-Amz-Expires"] == ["3600"]
    assert client.get(f"/api/files/{ids['pending']}").status_code == 409
    assert client.get(f"/api/files/{ids['infected']}").status_code == 410
    # The bucket is private: the object itself cannot be fetched without a signature.
    bare = location.split("?", 1)[0]
    assert requests.get(bare, timeout=10).status_code == 403
