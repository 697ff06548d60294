"""The RQ worker. Jobs that only talk to services (scans: clamd over a socket; the ledger,
outbox and maintenance jobs: PostgreSQL and Redis) run in the worker process itself, which keeps
its warm database pool; RQ's SIGALRM timeout still bounds them. Jobs that decode untrusted bytes
in C (thumbnails: Pillow, on the `media` queue) run in a forked work horse, so a crash or a leak
dies with the job; a media job enqueued with meta IN_PROCESS (a CSV's preview) runs in the worker.

Forking cost 56-119 ms per job here (a fresh connection, statement compilation), more than a
whole 1 MiB scan; see docs/performance.md.
"""
from __future__ import annotations

import logging
import signal
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from core.platform.queues import IN_PROCESS

FORKED_QUEUES = ("media",)
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0  # back-off ceiling while Redis is away
log = logging.getLogger("worker")


class PointsWorker(Worker):
    def __init__(self, queues, *args, forked_queues: tuple[str, ...] = (), **kwargs):
        super().__init__(queues, *args, **kwargs)
        self.forked_queues = frozenset(forked_queues)  # full names, prefix included
        self.jobs_run = 0  # counted here, not in Redis: it must survive Redis going away

    def forks_for(self, job: Job) -> bool:
        return job.origin in self.forked_queues and not (job.meta or {}).get(IN_PROCESS)

    def execute_job(self, job: Job, queue: Queue) -> None:
        self.jobs_run += 1
        if self.forks_for(job):
            from core.evidence import render_server

            render_server.restart_in_worker()  # a warm PDF renderer for the horse, if the last one died
            return super().execute_job(job, queue)
        # As rq.SimpleWorker does: perform_job applies the job's timeout with SIGALRM.
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if self.forks_for(job):
            return super().get_heartbeat_ttl(job, working_time)
        # Nothing heartbeats while an in-process job runs, so the key must outlive its timeout.
        if job.timeout == -1:
            return DEFAULT_WORKER_TTL
        return int(job.timeout or DEFAULT_WORKER_TTL) + 60


def build_worker(svc, queue_names: list[str] | None = None) -> PointsWorker:
    """A worker on the named queues (default: all), forking only for FORKED_QUEUES."""
    queues = [svc.queues[name] for name in queue_names] if queue_names else svc.queues.all()
    if not queue_names or "media" in queue_names:
        _preload_media()
    return PointsWorker(queues, connection=svc.redis,
                        forked_queues=tuple(svc.queues[name].name for name in FORKED_QUEUES))


def _wait_for_redis(redis, stopped) -> bool:
    """Ping Redis with exponential back-off (0.5 s doubling up to 30 s) until it answers (True)
    or a signal arrives (False)."""
    wait = RECONNECT_FIRST_S
    while not stopped():
        try:
            redis.ping()
            return True
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("Redis unavailable (%s); trying again in %.1f s", exc, wait)
        until = time.monotonic() + wait
        while time.monotonic() < until and not stopped():
            time.sleep(0.1)
        wait = min(wait * 2, RECONNECT_MAX_S)
    return False


def run(svc, queue_names: list[str] | None = None, *, burst: bool = False, max_jobs: int | None = None,
        logging_level: str = "INFO") -> int:
    """Work until a signal (SIGINT/SIGTERM), the end of a burst, or `max_jobs` jobs. Returns jobs run.

    RQ's work loop retries a lost connection only while it waits for a job; Redis going away at
    any other moment (a job finishing, a heartbeat, its maintenance) ends the loop. Then this waits
    for Redis with back-off and starts a fresh worker, so a Redis outage or restart never ends
    the process: only a signal does. Jobs that finished while Redis was away are not recorded as
    finished there; they are idempotent, and the sweepers find their follow-up work."""
    signalled: list[int] = []

    def on_signal(signum, _frame) -> None:
        signalled.append(signum)

    total, quick_restarts = 0, 0
    while True:
        worker, started = build_worker(svc, queue_names), time.monotonic()
        left = None if max_jobs is None else max_jobs - total
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level=logging_level, max_jobs=left)
        except (RedisConnectionError, RedisTimeoutError) as exc:  # at start-up or in teardown
            log.warning("worker lost Redis: %s", exc)
        total += worker.jobs_run
        # RQ's handlers raise StopRequested outside its loop: take signals over while waiting.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        if worker._shutdown_requested_date is not None or signalled:
            return total
        if max_jobs is not None and total >= max_jobs:
            return total
        if not _wait_for_redis(svc.redis, lambda: bool(signalled)):
            return total
        # A loop that keeps ending with Redis up (a bug, not an outage) must not spin.
        quick_restarts = quick_restarts + 1 if time.monotonic() - started < RECONNECT_MAX_S else 0
        pause_until = time.monotonic() + min(RECONNECT_FIRST_S * 2 ** quick_restarts, RECONNECT_MAX_S)
        while time.monotonic() < pause_until and not signalled:
            time.sleep(0.1)
        if signalled:
            return total
        if burst and not _queues_have_work(svc, queue_names):
            return total
        log.warning("Redis is back; starting the worker again")


def _queues_have_work(svc, queue_names: list[str] | None) -> bool:
    queues = [svc.queues[name] for name in queue_names] if queue_names else svc.queues.all()
    return any(queue.count for queue in queues)

def _preload_media() -> None:
    """Import what media jobs use (Pillow, imagehash with numpy and scipy: ~0.5 s) once in the
    worker, so each forked work horse inherits it instead of importing it per job, and start the
    PDF render server (core.evidence.render_server) the horses use."""
    import imagehash  # noqa: F401
    import scipy.fftpack  # noqa: F401  (imagehash.phash's DCT)

    import core.evidence.previews  # noqa: F401
    from core.evidence import render_server

    # The warm PDF renderer, started here so the work horses forked from this process share it
    # (one start per worker, not per PDF). If it cannot start, each render starts one-shot.
    try:
        render_server.SERVER.start()
    except render_server.Unavailable as exc:
        log.warning("PDF render server not started: %s", exc)
