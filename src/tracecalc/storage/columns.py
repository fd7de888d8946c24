"""Column values as tracecalc stores them: times in UTC without a zone, dates that SQLite's
driver may hand back as text, and the indexable key of a canonical form."""

from __future__ import annotations

import datetime as dt
import hashlib


def now() -> dt.datetime:
    """The time as stored: UTC without a zone, to the second."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


# The canonical form of a formula saved alone as a new formula, until a save that computes
# forms anyway fills it in (a real form is never empty): such a save needs no sympy.
PENDING_CANONICAL = ""


def canonical_key(canonical: str) -> str:
    """An indexable digest of a canonical form (the form itself is unbounded text)."""
    return hashlib.sha1(canonical.encode()).hexdigest()


def _utc(row, *columns: str) -> dict:
    """A row as a dict, its timestamps (stored as UTC without a zone) made aware."""
    out = dict(row._mapping)
    for c in columns:
        if out[c] is not None:
            out[c] = out[c].replace(tzinfo=dt.UTC)
    return out


def _date(v) -> dt.date | None:
    """A date column's value (SQLite's driver may hand back text)."""
    if v is None or isinstance(v, dt.date):
        return v.date() if isinstance(v, dt.datetime) else v
    return dt.date.fromisoformat(str(v)[:10])
