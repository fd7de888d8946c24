"""Each frequency's calendar: a fixed grid of period ends, never the dates that were loaded.

- daily: business days, Monday to Friday (``weekdays``, the default), or the sessions of an
  exchange calendar (``exchange_calendars``: ``XNYS``, ``XLON``, ...) chosen per database;
- weekly: Fridays; monthly: the last day of each month; quarterly: Mar 31, Jun 30, Sep 30
  and Dec 31; annual: Dec 31.

A frequency's stored calendar (``tc_periods``) is every grid date from its first data point
to its last, so a holiday inside it is a missing value, not a shifted window, and a load for
one entity moves no other entity's windows. A date off the grid is refused at load, or with
``snap`` moved by one documented rule (``snap``); the original date is kept.
"""

from __future__ import annotations

import functools

import numpy as np

from tracecalc.errors import DataError

WEEKDAYS = "weekdays"  # the default daily calendar
_FRIDAY = 4
_RULES = {
    "daily": "Monday to Friday",
    "weekly": "Fridays",
    "monthly": "the last day of each month",
    "quarterly": "Mar 31, Jun 30, Sep 30 and Dec 31",
    "annual": "Dec 31",
}
# How ``snap`` moves a date onto each calendar (docs/formula-language.md, "Calendars").
SNAP_RULES = {
    "daily": "the calendar day on or before it",
    "weekly": "the Friday of its week (Monday to Sunday)",
    "monthly": "the last day of its month",
    "quarterly": "the nearest quarter end (a tie goes to the earlier)",
    "annual": "the nearest year end (a tie goes to the earlier)",
}


def _days(a) -> np.ndarray:
    return np.asarray(a, dtype="datetime64[D]")


def check_daily(name: str) -> str:
    """A daily calendar's name as stored: ``weekdays`` or an exchange calendar's code."""
    name = str(name).strip()
    if name.lower() == WEEKDAYS:
        return WEEKDAYS
    import exchange_calendars as xc

    known = xc.get_calendar_names(include_aliases=True)
    if name.upper() in known:
        return name.upper()
    from tracecalc.errors import close_matches

    like = close_matches(name.upper(), known)
    hint = f" (did you mean {', '.join(like)}?)" if like else ""
    raise DataError(f"unknown daily calendar {name!r}{hint}: use 'weekdays' (Monday to "
                    "Friday) or an exchange calendar code such as XNYS, XLON or XTKS")


@functools.lru_cache(maxsize=8)
def _exchange(name: str, start_year: int, end_year: int) -> np.ndarray:
    import exchange_calendars as xc

    cal = xc.get_calendar(name, start=f"{start_year}-01-01", end=f"{end_year}-12-31")
    return cal.sessions.to_numpy().astype("datetime64[D]")


def _sessions(name: str, lo: np.datetime64, hi: np.datetime64) -> np.ndarray:
    """The exchange's sessions covering [lo, hi] (whole years around them, cached)."""
    y0 = min(1990, int(str(lo)[:4]) - 1)
    y1 = max(int(str(hi)[:4]) + 1, int(str(np.datetime64("today", "D"))[:4]) + 1)
    return _exchange(name, y0, y1)


def _month_ends(lo: np.datetime64, hi: np.datetime64, step: int) -> np.ndarray:
    months = np.arange(lo.astype("datetime64[M]"), hi.astype("datetime64[M]") + 1)
    months = months[(months.astype(np.int64) % 12 + 1) % step == 0]  # the period's last month
    ends = (months + 1).astype("datetime64[D]") - 1
    return ends[(ends >= lo) & (ends <= hi)]


def grid(frequency: str, lo, hi, daily: str = WEEKDAYS) -> np.ndarray:
    """Every calendar date of ``frequency`` from ``lo`` to ``hi`` (inclusive), sorted."""
    lo, hi = np.datetime64(lo, "D"), np.datetime64(hi, "D")
    if hi < lo:
        return np.empty(0, "datetime64[D]")
    if frequency == "daily":
        if daily == WEEKDAYS:
            days = np.arange(lo, hi + 1, dtype="datetime64[D]")
            return days[np.is_busday(days)]
        s = _sessions(daily, lo, hi)
        return s[(s >= lo) & (s <= hi)]
    if frequency == "weekly":
        first = lo + (_FRIDAY - _weekday(lo)) % 7
        return np.arange(first, hi + 1, 7, dtype="datetime64[D]")
    return _month_ends(lo, hi, {"monthly": 1, "quarterly": 3, "annual": 12}[frequency])


def _weekday(days):
    """Monday 0 ... Sunday 6 (1970-01-01 was a Thursday)."""
    return (_days(days).astype(np.int64) + 3) % 7


def on_calendar(frequency: str, days, daily: str = WEEKDAYS) -> np.ndarray:
    """Which ``days`` are dates of the frequency's calendar (a bool per day)."""
    days = _days(days)
    if len(days) == 0:
        return np.zeros(0, bool)
    if frequency == "daily":
        if daily == WEEKDAYS:
            return np.is_busday(days)
        return np.isin(days, _sessions(daily, days.min(), days.max()))
    if frequency == "weekly":
        return _weekday(days) == _FRIDAY
    month_end = (days + 1).astype("datetime64[M]") != days.astype("datetime64[M]")
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    step = {"monthly": 1, "quarterly": 3, "annual": 12}[frequency]
    return month_end & (month % step == 0)


def snap(frequency: str, days, daily: str = WEEKDAYS) -> np.ndarray:
    """Each day moved onto the calendar by ``SNAP_RULES`` (a calendar date stays)."""
    days = _days(days)
    if len(days) == 0:
        return days
    if frequency == "daily":
        if daily == WEEKDAYS:
            return np.busday_offset(days, 0, roll="backward")
        s = _sessions(daily, days.min(), days.max())
        i = np.searchsorted(s, days, side="right") - 1
        if (i < 0).any():
            d = days[np.argmax(i < 0)]
            raise DataError(f"{d} is before the first {daily} session ({s[0]})")
        return s[i]
    if frequency == "weekly":
        return days + (_FRIDAY - _weekday(days))
    months = days.astype("datetime64[M]")
    if frequency == "monthly":
        return (months + 1).astype("datetime64[D]") - 1
    step = 3 if frequency == "quarterly" else 12
    m = months.astype(np.int64)
    after = (m // step + 1) * step  # the first month after the period ending on or after
    end_after = after.astype("datetime64[M]").astype("datetime64[D]") - 1
    end_before = (after - step).astype("datetime64[M]").astype("datetime64[D]") - 1
    nearer_before = (days - end_before) <= (end_after - days)
    return np.where((days != end_after) & nearer_before, end_before, end_after)


def nearest(frequency: str, day, daily: str = WEEKDAYS) -> list[str]:
    """The calendar dates just before and just after an off-calendar ``day``."""
    day = np.datetime64(day, "D")
    span = {"daily": 15, "weekly": 8}.get(frequency, 370)
    from tracecalc.storage.dates import FIRST_DAY, LAST_DAY

    near = grid(frequency, max(day - span, FIRST_DAY), min(day + span, LAST_DAY), daily)
    before, after = near[near < day], near[near > day]
    return [str(d) for d in (before[-1:].tolist() + after[:1].tolist())]


def describe(frequency: str, daily: str = WEEKDAYS) -> str:
    """The calendar in words, for messages: ``daily (Monday to Friday)``."""
    if frequency == "daily" and daily != WEEKDAYS:
        return f"daily ({daily} sessions)"
    return f"{frequency} ({_RULES[frequency]})"


# --- from a finer calendar to a coarser one (the downsampling functions) ----------------------

FREQUENCIES = ("daily", "weekly", "monthly", "quarterly", "annual")  # finer to coarser


def _last_on_or_before(frequency: str, days: np.ndarray, daily: str) -> np.ndarray:
    """For each of ``days``, the latest date of ``frequency``'s calendar on or before it."""
    days = _days(days)
    g = grid(frequency, days.min() - 400, days.max(), daily)
    return g[np.searchsorted(g, days, side="right") - 1]


def covered(fine_frequency: str, fine: np.ndarray, coarse_frequency: str,
            daily: str = WEEKDAYS) -> np.ndarray:
    """The periods of ``coarse_frequency`` that the finer stored calendar ``fine`` (a
    contiguous stretch of its grid) completes: each one ending on or after its first date
    whose last finer date is no later than its last (a first period may start before the
    finer data does; a last one must be whole)."""
    fine = _days(fine)
    if len(fine) == 0:
        return fine
    ends = grid(coarse_frequency, fine[0], fine[-1] + 400, daily)
    return ends[_last_on_or_before(fine_frequency, ends, daily) <= fine[-1]]


def periods_of(fine_frequency: str, fine: np.ndarray, coarse_frequency: str,
               coarse: np.ndarray, daily: str = WEEKDAYS) -> tuple[np.ndarray, np.ndarray]:
    """How a finer calendar's rows fall into a coarser calendar's periods: per finer date the
    index in ``coarse`` of the period it belongs to (the first coarser date on or after it;
    -1 outside ``coarse``), and per coarser period whether ``fine`` reaches its last finer
    date (``functions.downsample_panel`` gives a partial period NaN)."""
    fine, coarse = _days(fine), _days(coarse)
    if len(fine) == 0 or len(coarse) == 0:
        return np.full(len(fine), -1, np.int64), np.zeros(len(coarse), bool)
    i = np.searchsorted(coarse, fine, side="left")
    before = grid(coarse_frequency, coarse[0] - 400, coarse[0] - 1, daily)[-1]
    i[(i >= len(coarse)) | (fine <= before)] = -1
    complete = _last_on_or_before(fine_frequency, coarse, daily) <= fine[-1]
    return i.astype(np.int64), complete
