"""The objects that talk to the outside world, built once in create_app and kept on the app."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from redis import Redis

from core.settings import Settings

EXTENSION_KEY = "points"


@dataclass
class Services:
    settings: Settings
    storage: Any  # core.storage.base.Storage
    scanner: Any  # core.scanning.Scanner
    redis: Redis
    queues: Any  # core.queues.Queues


def build_services(settings: Settings) -> Services:
    # Imported here so a bad optional backend never breaks importing core.
    from core.scanning import build_scanner
    from core.storage import build_storage
    from core.queues import Queues

    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
    return Services(
        settings=settings,
        storage=build_storage(settings),
        scanner=build_scanner(settings),
        redis=redis,
        queues=Queues(redis, prefix=settings.queue_prefix),
    )


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]


def settings() -> Settings:
    return services().settings
