"""The review queue: its filters, one keyset page of rows, and the capped count per status. The
page reads only the columns the queue shows, as plain rows, with their people in one look-up;
callers render them (portal/review.py)."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import NamedTuple

from sqlalchemy import String, and_, case, func, literal, not_, or_, select, true, union_all

from core.accounts import users as accounts
from core.platform.db import db, ids_in, is_postgres, utcnow
from core.platform.errors import ValidationError
from core.platform.models import SUBMISSION_STATES, Submission, User
from core.platform.numbers import BIGINT_MAX

PAGE_SIZE = 50
COUNT_CAP = 1_000  # counts stop here ("1000+"): past that the exact number changes nothing a reviewer does
UPLOADER_IDS_MAX = 500  # see _uploader_condition

# Sort key -> (column, descending). Each is paged by (column, id) and served by a (status, column) index.
SORTS = {
    "oldest": ("created_at", False),
    "newest": ("created_at", True),
    "session_date": ("session_date", False),
    "-session_date": ("session_date", True),
}


@dataclass
class QueueFilters:
    status: str = "in_review"
    activity: str = ""
    uploader: str = ""  # part of a name or e-mail
    date_from: date | None = None
    date_to: date | None = None
    claimed_by_me: bool = False
    reviewed_by_me: bool = False
    sort: str = "oldest"
    after: str = ""  # opaque keyset cursor


class Person(NamedTuple):
    id: int
    name: str
    email: str


class QueueRow(NamedTuple):
    """One row of the queue page: the submission's shown columns, its uploader, and who holds its
    lease now (None when nobody does or the lease has run out)."""
    id: int
    user_id: int
    activity_code: str
    status: str
    session_date: date
    created_at: datetime
    claimed_by_id: int | None
    claim_expires_at: datetime | None
    user: Person
    holder: Person | None


# What QueueRow reads from submissions, in its order.
ROW_COLUMNS = (Submission.id, Submission.user_id, Submission.activity_code, Submission.status,
               Submission.session_date, Submission.created_at, Submission.claimed_by_id,
               Submission.claim_expires_at)


@dataclass
class QueuePage:
    items: list[QueueRow]
    next_cursor: str | None
    counts: dict[str, int]


def encode_cursor(value, row_id: int) -> str:
    raw = json.dumps([value.isoformat() if value is not None else None, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSOR_MAX = 200  # characters of an `after` cursor


def decode_cursor(cursor: str, column: str):
    """(the sort column's value, row id) of an `after` cursor from encode_cursor. Raises
    ValidationError `cursor_invalid` for anything else: not base64 JSON, a row id that is not a
    whole number within bigint (1e999, 10**23), a moment that cannot be put in UTC (year 1 at
    +14:00 overflows)."""
    try:
        if len(cursor) > CURSOR_MAX:  # ours are under 100 characters; a deep one would recurse
            raise ValueError("cursor too long")
        value, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(row_id, bool) or not isinstance(row_id, int) or not 0 <= row_id <= BIGINT_MAX:
            raise ValueError("row id")
        if column == "session_date":
            return date.fromisoformat(value), row_id
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed.astimezone(timezone.utc)  # what the query's bind does: must not overflow
        return parsed, row_id
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ValidationError("cursor_invalid", "That page link is broken; start from the first page.",
                              [{"field": "after", "issue": "invalid"}]) from None


def conditions(f: QueueFilters, reviewer_id: int) -> tuple[list, bool]:
    """The filters, and whether one of them pins a few people (uploader ids, claimer, decider):
    then an index led by that column finds every match cheaply (see status_counts)."""
    conds, anchored = [], f.claimed_by_me or f.reviewed_by_me
    if f.activity:
        conds.append(Submission.activity_code == f.activity)
    if f.uploader:
        cond, few = _uploader_condition(f.uploader)
        conds.append(cond)
        anchored = anchored or few
    if f.date_from:
        conds.append(Submission.session_date >= f.date_from)
    if f.date_to:
        conds.append(Submission.session_date <= f.date_to)
    if f.claimed_by_me:
        conds.append(Submission.claimed_by_id == reviewer_id)
        conds.append(Submission.claim_expires_at >= utcnow())
    if f.reviewed_by_me:
        conds.append(Submission.decided_by_id == reviewer_id)
    return conds, anchored


def _uploader_condition(text: str, limit: int = UPLOADER_IDS_MAX):
    """Resolved to user ids first, so the page's several statements do not each scan users and
    the planner sees a real list (db.ids_in: one constant array). Few people match -> `= ANY` them,
    served by the user-led indexes. Nearly everyone matches -> `<> ALL` the few who do not, a cheap
    filter on the status index scans. Both sets large -> `= ANY` every match (at most the users
    table), which PostgreSQL hashes as a filter on the status index for the page and probes through
    (user_id, status) for the counts. As a subquery, each statement scanned users again and joined
    every match before its LIMIT: p95 699 ms for a thousand people at 1M submissions
    (docs/performance.md, "Seventh session"). Returns the condition and whether an index led by
    user_id should serve the counts (see status_counts)."""
    matches = accounts.matching(text)
    hits, misses, matched, unmatched = (_sides_pg if is_postgres() else _sides)(matches, limit)
    if hits <= limit:
        return ids_in(Submission.user_id, matched), True
    if misses <= limit:
        return (ids_in(Submission.user_id, unmatched, negate=True) if unmatched else true()), False
    if matched is None:  # SQLite: one parameter per id, and a limit on them
        return Submission.user_id.in_(select(User.id).where(matches)), False
    return ids_in(Submission.user_id, matched), True


def _sides_pg(matches, limit: int):
    """(matching users, others, the matches' ids, the others' ids) in one scan of users, each id
    list sent back only when _uploader_condition uses it (else None)."""
    # Each row's test once (OFFSET 0 keeps PostgreSQL from copying it into every aggregate's
    # FILTER: four times the LIKEs). A NULL name is no match, and so in the complement.
    users = select(User.id, func.coalesce(matches, False).label("hit")).offset(0).subquery()
    hit = users.c.hit
    hits, misses = func.count().filter(hit), func.count().filter(not_(hit))
    n_hits, n_misses, matched, unmatched = db.session.execute(select(
        hits, misses,
        case((or_(hits <= limit, misses > limit), func.array_agg(users.c.id).filter(hit))),
        case((misses <= limit, func.array_agg(users.c.id).filter(not_(hit)))))).one()
    return n_hits, n_misses, matched or [], unmatched or []


def _sides(matches, limit: int):
    """_sides_pg elsewhere, with counts that stop past `limit` and no list of every match."""
    ids = db.session.scalars(select(User.id).where(matches).limit(limit + 1)).all()
    if len(ids) <= limit:
        return len(ids), 0, ids, []
    others = db.session.scalars(select(User.id).where(not_(matches)).limit(limit + 1)).all()
    return len(ids), len(others), None, others


def queue(f: QueueFilters, reviewer_id: int, *, page_size: int = PAGE_SIZE) -> QueuePage:
    """One page of the queue under `f` for this reviewer, with the capped counts per status.
    Raises ValidationError `status_invalid` or `cursor_invalid`."""
    if f.status not in SUBMISSION_STATES:
        raise ValidationError("status_invalid", f"Unknown status {f.status!r}.", [{"field": "status", "issue": f.status}])
    column_name, descending = SORTS.get(f.sort, SORTS["oldest"])
    column = getattr(Submission, column_name)
    conds, anchored = conditions(f, reviewer_id)
    # Plain rows of the shown columns: ORM entities were about a fifth of the page's Python (JSON
    # counters, identity map, two relationship loads), mostly for values the page never shows.
    query = select(*ROW_COLUMNS).where(Submission.status == f.status, *conds)
    rows, next_cursor = keyset_page(query, column, f.after, descending=descending, page_size=page_size,
                                    entities=False)
    return QueuePage(_with_people(rows), next_cursor,
                     status_counts(conds, anchored, dated=bool(f.date_from or f.date_to)))


def _with_people(rows, now: datetime | None = None) -> list[QueueRow]:
    """The rows with their uploaders and lease holders (a lease past `now` is nobody's), read in
    one look-up by id after the LIMIT.
    Joined into the page query, PostgreSQL joined every match before its top-N sort (1,667 rows
    and two hashes of the users table for 51 shown, at 5M submissions)."""
    now = now or utcnow()
    ids = {r.user_id for r in rows} | {r.claimed_by_id for r in rows if r.claimed_by_id}
    people = {p.id: Person(*p) for p in db.session.execute(
        select(User.id, User.name, User.email).where(ids_in(User.id, sorted(ids))))} if ids else {}
    return [QueueRow(*r, user=people[r.user_id],
                     holder=people.get(r.claimed_by_id) if r.claim_expires_at and r.claim_expires_at >= now else None)
            for r in rows]


def keyset_page(query, column, after: str, *, descending: bool, page_size: int,
                entities: bool = True) -> tuple[list, str | None]:
    """One page of submissions in (column, id) order, after the opaque cursor `after` (ValidationError
    `cursor_invalid` if it is broken); returns the rows and the next page's cursor, or None. The
    rows are `query`'s first entity (Submission objects), or with entities=False its rows, which
    must carry `id` and the column."""
    if after:
        value, row_id = decode_cursor(after, column.key)
        # Written as `col >= v AND (col > v OR id > i)` so the index range starts at v.
        if descending:
            query = query.where(column <= value, or_(column < value, and_(column == value, Submission.id < row_id)))
        else:
            query = query.where(column >= value, or_(column > value, and_(column == value, Submission.id > row_id)))
    order = (column.desc(), Submission.id.desc()) if descending else (column.asc(), Submission.id.asc())
    result = db.session.execute(query.order_by(*order).limit(page_size + 1))
    rows = list(result.scalars() if entities else result)
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    return rows, encode_cursor(getattr(rows[-1], column.key), rows[-1].id)


def _capped(state: str, conds: list, anchored: bool, dated: bool = False):
    """Rows in `state` under the filters, at most COUNT_CAP + 1. Unanchored, the ORDER BY keeps the
    planner on the (status, created_at) index, not a sequential scan that a LIMIT makes look cheap.
    Anchored, no ORDER BY and no columns: the anchor's index (user ids; decided_by with its covering
    columns) answers index-only and stops at the cap, where a sort would have to fetch every match.
    Dated (a session-date filter), ordered by session_date instead: the (status, session_date) index
    then gives the range in order and stops at the cap. Ordered by created_at, PostgreSQL either
    fetched and sorted every match in the range or walked the status's rows filtering on the date
    (p95 77-169 ms at 2.5M submissions, docs/performance.md)."""
    if anchored:
        return select(literal(1)).where(Submission.status == state, *conds).limit(COUNT_CAP + 1)
    order = Submission.session_date if dated else Submission.created_at
    return select(order).where(Submission.status == state, *conds).order_by(order).limit(COUNT_CAP + 1)


def status_counts(conds: list, anchored: bool = False, *, dated: bool = False) -> dict[str, int]:
    """Per status, under the same filters, capped at COUNT_CAP: one bounded scan each. `dated`:
    the filters include a session-date bound (see _capped).
    The statuses are the rows of a small derived table and the capped count one subquery
    correlated to them, so the database plans it once for every status. As six subqueries of a
    UNION ALL, each was planned apart, and with a long uploader-id array that planning was most of
    the page: 21 ms of about 30 for 3,441 ids (docs/performance.md, "Seventh session"). The
    derived table is a UNION ALL of literals rather than VALUES, whose statement SQLAlchemy
    cannot cache (it was compiled anew on every page: about 4 ms of CPU)."""
    states = union_all(*[select(literal(state, String).label("status")) for state in SUBMISSION_STATES]
                       ).subquery("states")
    capped = _capped(states.c.status, conds, anchored, dated).correlate(states).subquery()
    counted = select(func.count()).select_from(capped).scalar_subquery()
    return {status: int(n) for status, n in db.session.execute(select(states.c.status, counted)).all()}
