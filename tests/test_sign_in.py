"""Sign-in: where it sends you afterwards (never off the site) and how repeated failures are
throttled in Redis, including guesses sent in parallel."""
from __future__ import annotations

import re
import threading
import time

import pytest

from tests.evidence_support import PASSWORD, setup_people


def _login(client, password: str, next_: str | None = None):
    url = "/login" if next_ is None else "/login?next=" + next_
    return client.post(url, data={"email": "owner@example.com", "password": password})


@pytest.mark.parametrize("next_, lands_on", [
    ("/review?status=in_review", "/review?status=in_review"),  # a page of the site: kept
    ("/%09/evil.example", "/"),  # a tab, which browsers drop: "//evil.example"
    ("/%0a/evil.example", "/"),  # a newline, likewise
    ("//evil.example", "/"),
    ("https://evil.example/", "/"),
    ("/%5Cevil.example", "/"),  # a backslash, which browsers read as a slash
    ("javascript:alert(1)", "/"),
])
def test_after_sign_in_you_stay_on_the_site(make_app, next_, lands_on):
    app = make_app()
    setup_people(app)
    response = _login(app.test_client(), PASSWORD, next_)
    assert response.status_code == 302 and response.headers["Location"] == lands_on


def test_failures_are_throttled_and_a_success_clears_them(make_app, redis_conn):
    app = make_app(LOGIN_MAX_FAILURES=3)
    setup_people(app)
    client = app.test_client()
    assert [_login(client, "wrong-password").status_code for _ in range(2)] == [200, 200]
    assert _login(client, PASSWORD).status_code == 302  # a success clears the e-mail's count
    client = app.test_client()
    assert [_login(client, "wrong-password").status_code for _ in range(3)] == [200, 200, 200]
    time.sleep(1.1)
    locked = _login(client, PASSWORD)  # even the right password waits now
    assert locked.status_code == 429 and "Wait 15 minutes" in locked.get_data(as_text=True)
    # Refused attempts are not counted and do not extend the window, so waiting it out is enough.
    assert int(redis_conn.get("login:fail:email:owner@example.com")) == 3
    assert redis_conn.pttl("login:fail:email:owner@example.com") < 15 * 60 * 1000 - 1000
    # The success and the refused attempt took their counts back: the address holds the five failures.
    assert int(redis_conn.get("login:fail:addr:127.0.0.1")) == 5


def test_guesses_sent_in_parallel_get_no_more_tries_than_the_limit(make_app):
    app = make_app(LOGIN_MAX_FAILURES=3)
    setup_people(app)
    statuses: list[int] = []
    start = threading.Barrier(12)

    def guess() -> None:
        client = app.test_client()
        start.wait()
        statuses.append(_login(client, "wrong-password").status_code)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each 200 is a password that was checked; the rest were refused before the hash.
    assert sorted(statuses) == [200] * 3 + [429] * 9


def test_behind_a_proxy_the_throttle_counts_the_client_not_the_proxy(make_app, redis_conn):
    app = make_app(PROXY_COUNT=1)
    setup_people(app)
    client = app.test_client()
    client.post("/login", data={"email": "owner@example.com", "password": "wrong-password"},
                headers={"X-Forwarded-For": "203.0.113.7"})
    assert int(redis_conn.get("login:fail:addr:203.0.113.7")) == 1
    assert redis_conn.get("login:fail:addr:127.0.0.1") is None
    # Without PROXY_COUNT the header is ignored: anyone could send it.
    direct = make_app()
    direct.test_client().post("/login", data={"email": "owner@example.com", "password": "wrong-password"},
                              headers={"X-Forwarded-For": "198.51.100.9"})
    assert redis_conn.get("login:fail:addr:198.51.100.9") is None
    assert int(redis_conn.get("login:fail:addr:127.0.0.1")) == 1


def test_behind_a_tls_proxy_forms_pass_the_https_referrer_check(make_app):
    """Behind a TLS terminator the app sees https (X-Forwarded-Proto), so Flask-WTF checks each
    form's Referer against the host; the host comes from X-Forwarded-Host, as the browser saw it."""
    app = make_app({}, PROXY_COUNT=1)  # {}: CSRF on, as in production
    setup_people(app)
    client = app.test_client()
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "points.example.com", "X-Forwarded-For": "203.0.113.7"}
    page = client.get("/login", headers=proxy).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = {"email": "owner@example.com", "password": PASSWORD, "csrf_token": token}
    signed_in = client.post("/login", data=form, headers={**proxy, "Referer": "https://points.example.com/login"})
    assert signed_in.status_code == 302
    # A form posted from another site is still refused.
    client = app.test_client()
    page = client.get("/login", headers=proxy).get_data(as_text=True)
    form["csrf_token"] = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    elsewhere = client.post("/login", data=form, headers={**proxy, "Referer": "https://evil.example/login"})
    assert elsewhere.status_code == 400
