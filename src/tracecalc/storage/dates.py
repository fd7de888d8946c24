"""Dates and frequencies of input files and arguments: periods as days, frequency names.

Every check reports the value and its row (1-based, counting the header line) like the rest
of ``files``; ``files`` gives these names too.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

from tracecalc.errors import DataError, clip
from tracecalc.model import Frequency
from tracecalc.storage.lazy import pandas as pd

# Dates are kept as days; the range is that of four-digit ISO years (and datetime.date), which
# SQLite, PostgreSQL and MariaDB all store and return exactly.
FIRST_DAY = np.datetime64("0001-01-01", "D")
LAST_DAY = np.datetime64("9999-12-31", "D")
_DATE_HELP = "expected a date YYYY-MM-DD from 0001-01-01 to 9999-12-31"
_MIDNIGHT = re.compile(r"(\d{4}-\d{1,2}-\d{1,2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?")


def read_periods(col: pd.Series, row_no: np.ndarray, label: str,
                 what: str = "period") -> np.ndarray:
    """A period column as days (datetime64[D]): ISO text, dates, Timestamps or datetime64,
    so that what ``records()`` and ``export`` give back loads back unchanged. A time of day
    other than midnight is refused with its row, never dropped."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_localize(None)  # the wall-clock date, as it prints
    if pd.api.types.is_datetime64_dtype(col.dtype):
        stamps = col.to_numpy()
        days = stamps.astype("datetime64[D]")
        bad = np.isnat(stamps) | (days != stamps)
        if bad.any():
            i = int(np.argmax(bad))
            why = "empty" if np.isnat(stamps[i]) else "has a time of day"
            raise DataError(f"bad {what} {clip(str(col.iloc[i]))} ({why}; {_DATE_HELP})",
                            row=int(row_no[i]), source=label)
    elif pd.api.types.is_string_dtype(col) and not col.isna().any():
        text = col.str.strip()
        # the fast path: plain dates (a CSV of millions of rows); the rest one by one
        days = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").to_numpy()
        days = days.astype("datetime64[D]")
        for i in np.flatnonzero(np.isnat(days)):
            days[i] = _day(text.iloc[i], int(row_no[i]), label, what)
    else:
        days = np.array([_day(x, int(r), label, what) for x, r in zip(col, row_no)],
                        dtype="datetime64[D]")
    out = (days < FIRST_DAY) | (days > LAST_DAY)
    if out.any():
        i = int(np.argmax(out))
        raise DataError(f"bad {what} {clip(str(col.iloc[i]))} (out of range; {_DATE_HELP})",
                        row=int(row_no[i]), source=label)
    return days


def _day(x, row: int | None, label: str, what: str = "period") -> np.datetime64:
    """One date-like value as a day, or a DataError naming it."""
    why = "not a date"
    if x is None or x is pd.NaT or (isinstance(x, float) and np.isnan(x)):
        why, x = "empty", ""
    elif isinstance(x, str):
        m = _MIDNIGHT.fullmatch(x.strip())
        try:
            day = dt.datetime.strptime(m[1], "%Y-%m-%d").date() if m else None
        except ValueError:  # no such day, or year 0
            day = None
        if m and m[2] and m[2].strip("0:.") != "":
            why = "has a time of day"
        elif day is not None:
            return np.datetime64(day, "D")
        elif not x.strip():
            why = "empty"
    elif isinstance(x, dt.datetime):  # pd.Timestamp too (nanoseconds beyond .time())
        wall = x.replace(tzinfo=None)
        if wall.time() == dt.time(0) and getattr(x, "nanosecond", 0) == 0:
            return np.datetime64(wall.date(), "D")
        why = "has a time of day"
    elif isinstance(x, dt.date):
        return np.datetime64(x, "D")
    elif isinstance(x, np.datetime64):
        day = x.astype("datetime64[D]")
        if np.isnat(x):
            why = "empty"
        elif day == x:
            return day
        else:
            why = "has a time of day"
    raise DataError(f"bad {what} {clip(str(x))} ({why}; {_DATE_HELP})", row=row, source=label)


def to_day(x, what: str, source: str) -> np.datetime64:
    """A date argument (``start``, ``end``, a period) as a day, in the supported range."""
    day = _day(x, None, source, what)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise DataError(f"bad {what} {clip(str(x))} (out of range; {_DATE_HELP})", source=source)
    return day


def frequency(text, *, row: int | None = None, source: str | None = None,
              item: str | None = None) -> Frequency:
    """A frequency's name (any case) as a ``Frequency``; a ``DataError`` lists the valid ones."""
    try:
        return Frequency(str(text).strip().lower())
    except ValueError:
        what = f" for item '{item}'" if item else ""
        raise DataError(f"bad frequency {clip(str(text))}{what} (one of "
                        f"{', '.join(x.value for x in Frequency)})", row=row,
                        source=source) from None


def infer_frequency(periods: np.ndarray) -> Frequency | None:
    """The frequency of a set of dates from the median gap between them; None if unclear."""
    p = np.unique(periods.astype("datetime64[D]"))
    if len(p) < 2:
        return None
    gap = float(np.median(np.diff(p).astype(np.int64)))
    for freq, lo, hi in ((Frequency.DAILY, 1, 4), (Frequency.WEEKLY, 6, 8),
                         (Frequency.MONTHLY, 27, 32), (Frequency.QUARTERLY, 85, 95),
                         (Frequency.ANNUAL, 360, 370)):
        if lo <= gap <= hi:
            return freq
    return None


def read_known_at(col, per: np.ndarray, row_no: np.ndarray, label: str) -> np.ndarray:
    """The ``known_at`` column as days: empty means the period itself; a date before the
    period (known before it ended) is refused with its row."""
    if pd.api.types.is_string_dtype(col) or col.dtype == object:
        text = col.astype(object).where(col.notna(), "").astype(str).str.strip()
        empty = (text == "").to_numpy()
        col = text.where(~empty, "1970-01-01")
    else:
        empty = col.isna().to_numpy()
        col = col.where(~empty, pd.Timestamp("1970-01-01"))
    days = read_periods(col, row_no, label, what="known_at")
    days = np.where(empty, per, days)
    early = days < per
    if early.any():
        i = int(np.argmax(early))
        raise DataError(f"known_at {days[i]} is before its period {per[i]} (a value becomes "
                        "known when its period has ended or later; leave known_at empty for "
                        "the period itself)", row=int(row_no[i]), source=label)
    return days.astype("datetime64[D]")
