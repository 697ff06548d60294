"""Storage backends, chosen by STORAGE_BACKEND through a registry.

The MinIO backend is imported only when it is asked for, so the minio SDK is loaded by
core/storage/minio.py alone and a dev setup on local storage never touches it.

May import: core.platform.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from core.platform.settings import Settings
from core.storage.base import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    SignedUrl,
    Storage,
    content_disposition,
)
from core.storage.local import LocalStorage


class _LazyBackends(Mapping):
    """{"local": LocalStorage, "minio": MinioStorage}, importing each class on first lookup."""

    def __init__(self, paths: dict[str, str]):
        self._paths = paths

    def __getitem__(self, name: str) -> type[Storage]:
        module, _, attr = self._paths[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


BACKENDS: Mapping[str, type[Storage]] = _LazyBackends({
    "local": "core.storage.local:LocalStorage",
    "minio": "core.storage.minio:MinioStorage",
})


def build_storage(settings: Settings, **options) -> Storage:
    """The Storage named by settings.storage_backend; `options` go to its constructor
    (e.g. public_base_url for local)."""
    try:
        backend = BACKENDS[settings.storage_backend]
    except KeyError:
        raise ValueError(f"unknown storage backend {settings.storage_backend!r}; known: {', '.join(BACKENDS)}") from None
    return backend(settings, **options)


def __getattr__(name: str):
    # `from core.storage import MinioStorage` works without importing the SDK at package import.
    if name == "MinioStorage":
        return BACKENDS["minio"]
    raise AttributeError(name)


__all__ = [
    "BACKENDS", "InvalidKey", "LocalStorage", "MinioStorage", "ObjectInfo", "ObjectNotFound", "SignedUrl",
    "Storage", "build_storage", "content_disposition",
]
