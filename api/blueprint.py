"""The /api blueprint itself, apart from the package so route modules import it without an import
circle (api/__init__.py imports the route modules)."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")
