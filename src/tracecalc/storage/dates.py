"""Times and dates as tracecalc stores them: UTC without a zone, and dates that SQLite's
driver may hand back as text."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


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
