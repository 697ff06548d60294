"""Sign-in and sign-out. Repeated failures are throttled per e-mail and per address, in Redis."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from core.accounts import users as accounts
from portal.blueprint import bp
from portal.forms import LoginForm, LogoutForm


def _safe_next(target: str | None) -> str:
    """Only a same-site path, never an open redirect. Browsers drop tabs and newlines from a URL,
    so "/<TAB>/evil.com" would become "//evil.com": control characters are refused outright."""
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("portal.home")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("portal.home"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.email.data, form.password.data, request.remote_addr or "-")
        except accounts.LoginThrottled as exc:
            form.password.errors.append(str(exc))
            return render_template("portal/login.html", form=form), 429
        except accounts.LoginUnavailable as exc:
            form.password.errors.append(str(exc))
            return render_template("portal/login.html", form=form), 503
        if user is None:
            form.password.errors.append("That e-mail and password do not match an account.")
            return render_template("portal/login.html", form=form), 200
        login_user(user)
        return redirect(_safe_next(request.args.get("next")))
    return render_template("portal/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        logout_user()
        flash("You have signed out.", "info")
    return redirect(url_for("portal.login"))


@bp.get("/")
def home():
    # Each role starts where its work is.
    if not current_user.is_authenticated:
        return redirect(url_for("portal.login"))
    if current_user.is_reviewer:
        return redirect(url_for("portal.queue"))
    return redirect(url_for("portal.my_submissions"))
