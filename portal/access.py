"""Who may open which portal page: the role decorators, in one place.

Anonymous visitors are sent to sign in (Flask-Login's redirect); a signed-in user without the
role gets 403, so a wrong role is never mistaken for an expired session."""
from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user, login_required


def role_required(*roles: str):
    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not current_user.has_role(*roles):
                abort(403, description="Your account cannot open this page.")
            return view(*args, **kwargs)

        wrapped.allowed_roles = roles  # read by the access-matrix test's report
        return wrapped

    return decorator


reviewer_required = role_required("reviewer", "admin")
admin_required = role_required("admin")
signed_in_required = role_required("uploader", "reviewer", "admin")
