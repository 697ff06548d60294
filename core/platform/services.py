"""The objects that talk to the outside world, built once in create_app (app.build_services) and
kept on the app. Only the holder lives here, so the platform imports no domain package."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from redis import Redis

from core.platform.settings import Settings

EXTENSION_KEY = "points"


@dataclass
class Services:
    settings: Settings
    storage: Any  # core.storage.base.Storage
    scanner: Any  # core.evidence.scanning.Scanner
    redis: Redis
    queues: Any  # core.platform.queues.Queues


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]


def settings() -> Settings:
    return services().settings
