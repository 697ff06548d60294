"""Operations jobs: the per-minute backlog sample behind the admin dashboard's charts."""
from __future__ import annotations

from jobs.context import job_context


def sample() -> dict:
    """Write this minute's sample and trim old ones (core.monitoring.ops_samples)."""
    from core.monitoring import ops_samples
    from core.platform.services import services

    with job_context():
        return ops_samples.sample(services().queues)
