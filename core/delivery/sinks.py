"""Where outbox records go: analytics (HTTP or a JSON-lines file) and the Redis cache.

Every sink is idempotent on the record's idempotency key, because the outbox delivers at least
once (a worker killed between "sink applied" and "row marked delivered" redelivers the record)
and `flask outbox replay` delivers again on purpose. Nothing a sink needs for that lives only in
Redis, so a Redis that loses its data cannot make a replay apply anything twice:

- Cache: derived state. Each delivery SETS the user's totals, leaderboard score and badges to
  what the ledger says now (never adds a delta), guarded by the number of the user's ledger rows
  (append-only, so a larger count is a newer view): a late or repeated delivery can only write
  the same or a newer value. After Redis loses everything, a replay rebuilds it. No key record.
- Analytics file: the record of applied keys is the `sink_keys` table (core.delivery.sink_keys).
  A batch is first noted there as being written (key -> file offset, committed), then written with
  one append, then marked applied. A key found "being written" on redelivery is looked up in the
  file from that offset, and only written if it is not there: one line per key even after kill -9.
- Analytics HTTP: the receiver dedupes on the `Idempotency-Key` header.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import requests
from redis import Redis
from sqlalchemy import func, select

from core.delivery import sink_keys
from core.platform.db import db
from core.platform.models import LedgerEntry, UserBadge
from core.platform.settings import Settings

HTTP_TIMEOUT = (2, 5)  # connect, read: a slow sink must not hold the claimed batch for long
# Per batch: with one last POST's 7 s it ends well inside the delivery job's 120 s timeout, even
# when the job's own 60 s budget (jobs/outbox.py) runs out just as a batch starts.
HTTP_BUDGET_S = 45.0

_CACHE_SET = """
-- KEYS: version key, user totals hash, leaderboard zset, user badges set
-- ARGV: version (the user's ledger row count), user id, total, then activity/points pairs,
--       then '|', then badge codes
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local version = tonumber(ARGV[1])
if version < current then return 0 end
redis.call('SET', KEYS[1], version)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'total', ARGV[3])
local i = 4
while ARGV[i] ~= '|' do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
for j = i + 1, #ARGV do redis.call('SADD', KEYS[4], ARGV[j]) end
return 1
"""


@dataclass(frozen=True)
class Message:
    id: int
    topic: str
    key: str
    payload: dict


class CacheSink:
    """User totals (hash per user), a leaderboard (sorted set) and badges (set per user), each
    set from the ledger (see the module's docstring), so applying a record twice is harmless."""

    name = "cache"

    def __init__(self, redis: Redis, prefix: str = ""):
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_CACHE_SET)

    def keys_for(self, user_id) -> list[str]:
        p = self.prefix
        return [f"{p}cache:user:{user_id}:version", f"{p}cache:user:{user_id}:totals", f"{p}cache:leaderboard",
                f"{p}cache:user:{user_id}:badges"]

    @staticmethod
    def ledger_view(user_ids: set[int]) -> dict[int, tuple[int, dict[str, int], list[str]]]:
        """{user id: (ledger row count, {activity: points}, badge codes)}, read from the database."""
        rows: dict[int, int] = dict.fromkeys(user_ids, 0)
        points: dict[int, dict[str, int]] = {uid: {} for uid in user_ids}
        badges: dict[int, list[str]] = {uid: [] for uid in user_ids}
        for uid, activity, count, total in db.session.execute(
                select(LedgerEntry.user_id, LedgerEntry.activity_code, func.count(),
                       func.coalesce(func.sum(LedgerEntry.delta_points), 0))
                .where(sink_keys.one_of(LedgerEntry.user_id, sorted(user_ids))).group_by(LedgerEntry.user_id, LedgerEntry.activity_code)):
            rows[uid] += count
            points[uid][activity] = int(total)
        for uid, badge in db.session.execute(select(UserBadge.user_id, UserBadge.badge_code)
                                             .where(sink_keys.one_of(UserBadge.user_id, sorted(user_ids)))):
            badges[uid].append(badge)
        return {uid: (rows[uid], points[uid], badges[uid]) for uid in user_ids}

    def deliver(self, messages: Sequence[Message]) -> dict[int, str | None]:
        user_ids = {int(m.payload["user_id"]) for m in messages if m.payload.get("user_id") is not None}
        if user_ids:
            pipe = self.redis.pipeline(transaction=False)  # one round trip; each script is atomic itself
            for uid, (version, by_activity, badges) in self.ledger_view(user_ids).items():
                pairs = [x for activity, points in sorted(by_activity.items()) for x in (activity, points)]
                self._script(keys=self.keys_for(uid),
                             args=[version, uid, sum(by_activity.values()), *pairs, "|", *badges], client=pipe)
            pipe.execute()
        return {m.id: None for m in messages}


class AnalyticsFileSink:
    name = "analytics"

    def __init__(self, path: str):
        self.path = path

    def _already_in_file(self, keys: dict[str, int]) -> set[str]:
        """Keys (with the offset where their write began) that a killed worker did write."""
        if not keys or not os.path.exists(self.path):
            return set()
        found = set()
        with open(self.path, "rb") as fh:
            fh.seek(min(keys.values()))
            for line in fh:
                try:
                    key = json.loads(line).get("idempotency_key")
                except ValueError:
                    continue  # a torn last line from a kill mid-write; the record is written again
                if key in keys:
                    found.add(key)
        return found

    def deliver(self, messages: Sequence[Message]) -> dict[int, str | None]:
        if not messages:
            return {}
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            # Lines written from here on start at or after this offset (O_APPEND only grows it).
            offset = os.fstat(fd).st_size
            noted, _applied, writing = sink_keys.claim(self.name, [m.key for m in messages], offset)
            written = self._already_in_file(writing)
            redo = [key for key in writing if key not in written]  # noted by a writer that died first
            sink_keys.note_writing(self.name, redo, offset)
            todo = [m for m in messages if m.key in noted or m.key in redo]
            if todo:
                # A torn last line (kill mid-write) must not swallow the first new one.
                torn = offset > 0 and os.pread(fd, 1, offset - 1) != b"\n"
                data = (b"\n" if torn else b"") + b"".join(json.dumps({"idempotency_key": m.key, "topic": m.topic, "outbox_id": m.id,
                                            **m.payload}, sort_keys=True).encode() + b"\n" for m in todo)
                os.write(fd, data)  # one append; O_APPEND keeps concurrent workers' lines whole
                os.fsync(fd)
        finally:
            os.close(fd)
        sink_keys.mark_applied(self.name, [m.key for m in todo] + sorted(written))
        return {m.id: None for m in messages}


class AnalyticsHttpSink:
    """One POST per message. A slow receiver must not hold a claimed batch past the delivery job's
    timeout: after `budget_s` the rest of the batch is left out of the result (not tried), so its
    records stay pending with no attempt counted and the next run carries on."""
    name = "analytics"

    def __init__(self, url: str, budget_s: float = HTTP_BUDGET_S):
        self.url = url
        self.budget_s = budget_s
        self.session = requests.Session()

    def deliver(self, messages: Sequence[Message]) -> dict[int, str | None]:
        results: dict[int, str | None] = {}
        stop_at = time.monotonic() + self.budget_s
        for m in messages:
            if time.monotonic() >= stop_at:
                break
            try:
                response = self.session.post(self.url, json={"topic": m.topic, "idempotency_key": m.key, **m.payload},
                                             headers={"Idempotency-Key": m.key}, timeout=HTTP_TIMEOUT)
                results[m.id] = None if response.status_code < 300 or response.status_code == 409 else f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                results[m.id] = f"{type(exc).__name__}: {exc}"[:500]
        return results


def build_sinks(settings: Settings, redis: Redis) -> list:
    analytics = (AnalyticsHttpSink(settings.analytics_sink_url) if settings.analytics_sink_url
                 else AnalyticsFileSink(settings.analytics_file))
    return [CacheSink(redis, settings.queue_prefix), analytics]
