"""JSON blueprint under /api. Each route module registers its routes on `bp` when imported."""
from api import cron, files, internal, local_links, openapi, stats, webhooks  # noqa: F401  (routes register on import)
from api.blueprint import bp

__all__ = ["bp"]
