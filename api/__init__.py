"""JSON blueprint under /api. Each module registers its routes on `bp`."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from api import internal, local_links, openapi  # noqa: E402,F401  (routes register on import)
from api import webhooks, stats  # noqa: E402,F401
from api import files, cron  # noqa: E402,F401
