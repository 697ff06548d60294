"""The RQ worker. Jobs that only talk to services (scans: clamd over a socket; the ledger,
outbox and maintenance jobs: PostgreSQL and Redis) run in the worker process itself, which keeps
its warm database pool; RQ's SIGALRM timeout still bounds them. Jobs that decode untrusted bytes
in C (thumbnails: Pillow, on the `media` queue) run in a forked work horse, so a crash or a leak
dies with the job.

Forking cost 56-119 ms per job here (a fresh connection, statement compilation), more than a
whole 1 MiB scan; see docs/performance.md.
"""
from __future__ import annotations

from rq import Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

FORKED_QUEUES = ("media",)


class PointsWorker(Worker):
    def __init__(self, queues, *args, forked_queues: tuple[str, ...] = (), **kwargs):
        super().__init__(queues, *args, **kwargs)
        self.forked_queues = frozenset(forked_queues)  # full names, prefix included

    def forks_for(self, job: Job) -> bool:
        return job.origin in self.forked_queues

    def execute_job(self, job: Job, queue: Queue) -> None:
        if self.forks_for(job):
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


def _preload_media() -> None:
    """Import what media jobs use (Pillow, imagehash with numpy and scipy: ~0.5 s) once in the
    worker, so each forked work horse inherits it instead of importing it per job."""
    import imagehash  # noqa: F401
    import scipy.fftpack  # noqa: F401  (imagehash.phash's DCT)

    import core.evidence.previews  # noqa: F401
