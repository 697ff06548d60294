"""How a portal form reports a refusal: the same words and the same undo everywhere."""
from __future__ import annotations

from flask import flash, redirect

from core.platform.db import db
from core.platform.errors import DomainError


def refused(exc: DomainError, target: str):
    """A decision the rules refused: undo the transaction, say why, and go back (PRG)."""
    db.session.rollback()
    flash(f"{exc.message} Nothing was changed.", "error")
    return redirect(target)
