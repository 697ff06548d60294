"""Server-rendered portal: sign-in, uploader forms, reviewer queue, admin pages."""
from flask import Blueprint, Flask
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

bp = Blueprint("portal", __name__, template_folder="templates")
login_manager = LoginManager()
csrf = CSRFProtect()


def init_portal(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "portal.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    # The JSON API authenticates webhooks and cron by secret, not by form tokens.
    from api import bp as api_bp

    csrf.exempt(api_bp)


@login_manager.user_loader
def _load_user(user_id: str):
    from core.db import db
    from core.models import User

    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


from portal import auth  # noqa: E402,F401
from portal import admin, review, uploader  # noqa: E402,F401  (routes register on import)
