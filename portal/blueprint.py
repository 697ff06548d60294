"""The portal blueprint and its Flask-Login and CSRF objects, apart from the package so route
modules import them without an import circle (portal/__init__.py imports the route modules)."""
from flask import Blueprint
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

bp = Blueprint("portal", "portal", template_folder="templates")
login_manager = LoginManager()
csrf = CSRFProtect()


@login_manager.user_loader
def _load_user(user_id: str):
    from core.platform.db import db
    from core.platform.models import User
    from core.platform.numbers import parse_id

    uid = parse_id(user_id)  # the signed session's; never anything but digits, but never a 500
    return db.session.get(User, uid) if uid is not None else None
