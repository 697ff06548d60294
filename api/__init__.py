"""JSON blueprint under /api. Each module registers its routes on `bp` when imported."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from api import cron, files, internal, local_links, openapi, stats, webhooks  # noqa: E402,F401
