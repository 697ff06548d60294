"""flask demo seed: the demo catalogue and demo users. Running it twice changes nothing."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from core.accounts.users import create_user
from core.points.catalogue import seed_catalogue
from core.platform.db import db
from core.platform.models import User

cli = AppGroup("demo", help="Demo data for a local run.")

DEMO_USERS = [
    ("admin@example.com", "admin", "Ada Admin", "London"),
    ("reviewer@example.com", "reviewer", "Rui Reviewer", "London"),
    ("reviewer2@example.com", "reviewer", "Rita Reviewer", "Leeds"),
    ("uploader@example.com", "uploader", "Uma Uploader", "London"),
    ("uploader2@example.com", "uploader", "Ugo Uploader", "Leeds"),
]
DEMO_PASSWORD = "demo-password"


@cli.command("seed")
def seed() -> None:
    """Seed the catalogue and the demo logins (password: demo-password)."""
    added = seed_catalogue()
    created = []
    for email, role, name, city in DEMO_USERS:
        if db.session.query(User.id).filter_by(email=email).first() is None:
            create_user(email, role, DEMO_PASSWORD, name=name, city=city)
            created.append(email)
    db.session.commit()
    click.echo(f"catalogue rows added: {added}; users created: {len(created)}")
    click.echo("demo logins (password: %s):" % DEMO_PASSWORD)
    for email, role, _name, _city in DEMO_USERS:
        click.echo(f"  {role:<9} {email}")
