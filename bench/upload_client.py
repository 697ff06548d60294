"""bench.upload's client: signs in as the bench uploader, sends the portal's upload form and
watches each file's row until it is `clean` (one at a time, back to back, or 16 uploaders at
once). Apart from bench/upload.py, which starts the services and prints the figures."""
from __future__ import annotations

import http.client
import re
import threading
import time
from urllib.parse import urlsplit

import psycopg
import requests

PASSWORD = "bench-password-123"


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    if not match:
        raise SystemExit("error: no CSRF token in the form")
    return match.group(1)


class AppUnderTest:
    def __init__(self, base: str, db_url: str):
        self.base = base
        self.http = requests.Session()
        self.db = psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True)
        page = self.http.get(f"{base}/login", timeout=10).text
        r = self.http.post(f"{base}/login", data={"email": "bench@example.com", "password": PASSWORD,
                                                   "csrf_token": csrf(page)}, allow_redirects=False, timeout=10)
        if r.status_code != 302:
            raise SystemExit(f"error: sign-in failed with {r.status_code}")
        self.token = csrf(self.http.get(f"{base}/submissions/new", timeout=10).text)
        self.signed_in = self.http.cookies.copy()
        self.poller_pid = self.db.execute("SELECT pg_backend_pid()").fetchone()[0]

    def prepared(self, data: bytes, name: str) -> requests.PreparedRequest:
        # Bodies are encoded before the clock starts, as the baseline's bytes are ready in
        # memory: encoding 25 MiB in `requests` took 13-20 ms of this client's time.
        return self.http.prepare_request(requests.Request("POST", f"{self.base}/submissions/new", data={
            "csrf_token": self.token, "activity_code": "EXPLORE", "session_date": time.strftime("%Y-%m-%d"),
        }, files={"files": (name, data, "text/csv")}))

    def post(self, request: requests.PreparedRequest) -> None:
        r = self.http.send(request, allow_redirects=False, timeout=300)
        # A browser follows the redirect and shows the "sent" message, which leaves the session
        # cookie as it was; kept here instead, the messages would pile up in it, upload after
        # upload, and every request would pay to decode and sign a growing cookie.
        self.http.cookies = self.signed_in.copy()
        if r.status_code != 302:
            raise SystemExit(f"error: upload answered {r.status_code}: {r.text[:300]}")

    def last_id(self) -> int:
        return self.db.execute("SELECT coalesce(max(id), 0) FROM evidence_files").fetchone()[0]

    def wait_clean(self, after_id: int, count: int, poll: float = 0.001) -> None:
        while True:
            states = dict(self.db.execute("SELECT scan_state, count(*) FROM evidence_files WHERE id > %s "
                                          "GROUP BY scan_state", (after_id,)).fetchall())
            if set(states) - {"pending", "clean"}:
                raise SystemExit(f"error: files ended {states}")
            if states.get("clean", 0) == count:
                return
            time.sleep(poll)  # a 10 ms poll added ~5 ms to every run, ~4% of a 1 MiB upload

    def upload_until_clean(self, data: bytes, name: str) -> float:
        before, request = self.last_id(), self.prepared(data, name)
        started = time.perf_counter()
        self.post(request)
        self.wait_clean(before, 1)
        return time.perf_counter() - started

    def back_to_back(self, requests_: list[requests.PreparedRequest]) -> float:
        """Seconds until the last file is clean. Returns only once the worker has also made
        every file's preview (queued when a file turns clean), so the CPU counted around this
        call holds all of an upload's work, and none of it spills into the baseline's count.
        The bodies come encoded (prepared()) before the CPU count starts, as the baseline's
        bytes are ready in memory."""
        before, count = self.last_id(), len(requests_)
        started = time.perf_counter()
        for request in requests_:
            self.post(request)
        # Polled every 10 ms here: this phase counts CPU, and the client's polling is not upload
        # work (a 1 ms poll cost the client 10-20 ms per file on the loaded machine); the last
        # file's time moves by at most one poll, against the batch's hundreds of ms.
        self.wait_clean(before, count, poll=0.01)
        seconds = time.perf_counter() - started
        while self.db.execute("SELECT count(*) FROM evidence_files WHERE id > %s AND preview_state IS NULL",
                              (before,)).fetchone()[0]:
            time.sleep(0.01)
        return seconds


    def backends(self) -> set[int]:
        """This database's PostgreSQL backends (web and worker pools), the poller's left out."""
        return {pid for (pid,) in self.db.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                                  "AND pid <> pg_backend_pid()").fetchall()}

    def concurrent(self, data: bytes, uploaders: int, seconds: float) -> tuple[list[float], list[str]]:
        """`uploaders` threads, each sending a file, waiting until it is clean and sending the
        next, for `seconds`. Returns (seconds from each POST's first byte to clean, errors).
        Each uploader looks at its file's row once when the POST answers (scanned in the request,
        it is clean by then); a file still pending is left to one poller thread that reads every
        waiting file's state, so the database sees one query per poll rather than one per
        uploader."""
        lock = threading.Lock()
        waiting: dict[int, tuple[float, threading.Event]] = {}
        latencies: list[float] = []
        errors: list[str] = []
        stop_at = time.perf_counter() + seconds
        running = threading.Event()
        running.set()

        def uploader(n: int) -> None:
            session = requests.Session()
            session.cookies.update(self.http.cookies)
            # One body per uploader, encoded before any clock starts, sent again each time.
            request = session.prepare_request(requests.Request("POST", f"{self.base}/submissions/new", data={
                "csrf_token": self.token, "activity_code": "EXPLORE", "session_date": time.strftime("%Y-%m-%d"),
            }, files={"files": (f"u{n}.csv", data, "text/csv")}))
            own = psycopg.connect(self.db.info.dsn, autocommit=True)
            # Sent with http.client, not requests: the uploaders share the service's 2 cores, and
            # requests' per-request work (adapters, cookie jar, response hooks) cost the 16 of
            # them about 2.5 ms of CPU per file, a tenth of the whole upload's, that a browser
            # on its own machine would not take from the server. The bytes sent are the same.
            url = urlsplit(request.url)
            headers = dict(request.headers)
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    conn.request("POST", url.path, body=request.body, headers=headers)
                    r = conn.getresponse()
                    r.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # reconnects on the next request
                    with lock:
                        errors.append(f"{type(exc).__name__}")
                    continue
                if r.status != 302:
                    with lock:
                        errors.append(f"HTTP {r.status}")
                    continue
                submission_id = int(r.getheader("Location").rstrip("/").rsplit("/", 1)[1])
                # A file scanned in the request is clean when the POST answers: one look at its row
                # settles it, instead of the poller's query every 2 ms (its CPU and PostgreSQL's
                # were taken from the uploads on this shared box). Otherwise the poller watches it.
                states = {state for (state,) in own.execute(
                    "SELECT scan_state FROM evidence_files WHERE submission_id = %s", (submission_id,))}
                if states == {"clean"}:
                    with lock:
                        latencies.append(time.perf_counter() - started)
                    continue
                done = threading.Event()
                with lock:
                    waiting[submission_id] = (started, done)
                if not done.wait(120):
                    with lock:
                        errors.append("not clean within 120 s")
            own.close()
            conn.close()

        def poller() -> None:
            with psycopg.connect(self.db.info.dsn, autocommit=True) as conn:
                while running.is_set():
                    with lock:
                        ids = list(waiting)
                    if ids:
                        rows = conn.execute("SELECT submission_id, scan_state FROM evidence_files "
                                            "WHERE submission_id = ANY(%s) AND scan_state <> 'pending'", (ids,)).fetchall()
                        now = time.perf_counter()
                        with lock:
                            for submission_id, state in rows:
                                started, done = waiting.pop(submission_id)
                                if state == "clean":
                                    latencies.append(now - started)
                                else:
                                    errors.append(f"file ended {state}")
                                done.set()
                    time.sleep(0.002)

        watcher = threading.Thread(target=poller, daemon=True)
        watcher.start()
        threads = [threading.Thread(target=uploader, args=(n,), daemon=True) for n in range(uploaders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        running.clear()
        watcher.join()
        return latencies, errors
