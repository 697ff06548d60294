"""Where outbox records go: analytics (HTTP or a JSON-lines file) and the Redis cache.

Every sink is idempotent on the record's idempotency key, because the outbox delivers at least
once: a worker killed between "sink applied" and "row marked delivered" redelivers the record.

- Cache: one Lua script per record does "seen? else apply and mark seen" atomically in Redis, so
  no crash can fall between applying and marking.
- Analytics file: the line and the seen mark live in two systems, so a batch is first noted as
  in flight (key -> file offset) in Redis, then written with one append, then marked seen. A
  record found in flight on redelivery is looked up in the file from that offset, and only
  written if it is not there: exactly one line per key even after kill -9.
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

from core.platform.settings import Settings

HTTP_TIMEOUT = (2, 5)  # connect, read: a slow sink must not hold the claimed batch for long
# Per batch: with one last POST's 7 s it ends well inside the delivery job's 120 s timeout, even
# when the job's own 60 s budget (jobs/outbox.py) runs out just as a batch starts.
HTTP_BUDGET_S = 45.0

_CACHE_APPLY = """
-- KEYS: seen set, user totals hash, leaderboard zset, user badges set
-- ARGV: idempotency key, user id, delta points, activity code, badge code ('' for none)
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
local delta = tonumber(ARGV[3])
if delta ~= 0 then
  redis.call('HINCRBY', KEYS[2], 'total', delta)
  redis.call('HINCRBY', KEYS[2], ARGV[4], delta)
  redis.call('ZINCRBY', KEYS[3], delta, ARGV[2])
end
if ARGV[5] ~= '' then redis.call('SADD', KEYS[4], ARGV[5]) end
return 1
"""


@dataclass(frozen=True)
class Message:
    id: int
    topic: str
    key: str
    payload: dict


class CacheSink:
    """User totals (hash per user), a leaderboard (sorted set) and badges (set per user)."""

    name = "cache"

    def __init__(self, redis: Redis, prefix: str = ""):
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_CACHE_APPLY)

    def keys_for(self, user_id) -> list[str]:
        p = self.prefix
        return [f"{p}cache:seen", f"{p}cache:user:{user_id}:totals", f"{p}cache:leaderboard", f"{p}cache:user:{user_id}:badges"]

    def deliver(self, messages: Sequence[Message]) -> dict[int, str | None]:
        pipe = self.redis.pipeline(transaction=False)  # one round trip; each script is atomic itself
        for m in messages:
            user_id = m.payload.get("user_id")
            delta = int(m.payload.get("delta_points", 0)) if m.topic == "ledger.recorded" else 0
            badge = m.payload.get("badge_code", "") if m.topic == "badge.awarded" else ""
            self._script(keys=self.keys_for(user_id), args=[m.key, user_id, delta, m.payload.get("activity_code", ""), badge],
                         client=pipe)
        pipe.execute()
        return {m.id: None for m in messages}


class AnalyticsFileSink:
    name = "analytics"

    def __init__(self, redis: Redis, path: str, prefix: str = ""):
        self.redis = redis
        self.path = path
        self.seen_key = f"{prefix}analytics:seen"
        self.inflight_key = f"{prefix}analytics:inflight"

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
        keys = [m.key for m in messages]
        seen = self.redis.smismember(self.seen_key, keys)
        todo = [m for m, s in zip(messages, seen) if not s]
        if todo:
            inflight = self.redis.hmget(self.inflight_key, [m.key for m in todo])
            recovering = {m.key: int(o) for m, o in zip(todo, inflight) if o is not None}
            written = self._already_in_file(recovering)
            todo = [m for m in todo if m.key not in written]
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                if todo:
                    offset = os.fstat(fd).st_size
                    self.redis.hset(self.inflight_key, mapping={m.key: offset for m in todo})
                    # A torn last line (kill mid-write) must not swallow the first new one.
                    torn = offset > 0 and os.pread(fd, 1, offset - 1) != b"\n"
                    data = (b"\n" if torn else b"") + b"".join(json.dumps({"idempotency_key": m.key, "topic": m.topic, "outbox_id": m.id,
                                                **m.payload}, sort_keys=True).encode() + b"\n" for m in todo)
                    os.write(fd, data)  # one append; O_APPEND keeps concurrent workers' lines whole
                    os.fsync(fd)
            finally:
                os.close(fd)
            done = [m.key for m in todo] + list(written)
            if done:
                pipe = self.redis.pipeline()
                pipe.sadd(self.seen_key, *done)
                pipe.hdel(self.inflight_key, *done)
                pipe.execute()
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
                 else AnalyticsFileSink(redis, settings.analytics_file, settings.queue_prefix))
    return [CacheSink(redis, settings.queue_prefix), analytics]
