"""Server-rendered portal: sign-in, uploader forms, reviewer queue, admin pages."""
from flask import Flask

from portal import account, admin, admin_files, auth, confirm, operations, review, run_words, site, uploader  # noqa: F401  (routes register on import)
from portal.blueprint import bp, csrf, login_manager

__all__ = ["bp", "init_portal"]


def init_portal(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "portal.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    # The JSON API authenticates webhooks and cron by secret, not by form tokens.
    from api.blueprint import bp as api_bp

    csrf.exempt(api_bp)

