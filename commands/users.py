"""flask users create EMAIL --role ROLE [--password P]"""
from __future__ import annotations

import click
from flask.cli import AppGroup

from core.accounts.users import create_user
from core.platform.db import db
from core.platform.errors import DomainError
from core.platform.models import ROLES

cli = AppGroup("users", help="Manage portal users.")


@cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@click.option("--password", default=None, help="Without it a random password is generated and printed.")
@click.option("--name", default="", help="Display name.")
def create(email: str, role: str, password: str | None, name: str) -> None:
    """Create a user; prints the password when it was generated."""
    try:
        user, used = create_user(email, role, password, name=name)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"created {user.email} ({user.role}) id={user.id}")
    if password is None:
        click.echo(f"password: {used}")
