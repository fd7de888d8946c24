"""Checking the periods a load adds to a frequency's calendar.

Every time-series window of a frequency steps through its whole calendar, so one odd date
(a mid-quarter day, a weekend in daily data) shifts ``lag`` and ``growth`` for every entity.
Appending the next period after the last one is the normal case; a new period inside or
before the calendar, or off the frequency's usual grid, is worth a loud warning.
"""

from __future__ import annotations

import calendar
from collections import Counter

import numpy as np

SHOWN = 5  # dates listed in one warning
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _days(a) -> np.ndarray:
    return np.unique(np.asarray(a, dtype="datetime64[D]"))


def _slot(frequency: str, day: np.datetime64):
    """Where a date sits on its frequency's grid; dates of one regular calendar share it."""
    d = day.item()
    if frequency == "daily":
        return d.weekday() >= 5  # True: a weekend day
    if frequency == "weekly":
        return d.weekday()
    end = d.day == calendar.monthrange(d.year, d.month)[1]  # the last day of its month
    mark = "end" if end else d.day
    if frequency == "monthly":
        return (mark,)
    if frequency == "quarterly":
        return (mark, d.month % 3)
    return (mark, d.month)  # annual


def _grid(frequency: str, reference: np.ndarray):
    """The slot of a regular date, read from the calendar (None: anything goes)."""
    if len(reference) == 0:
        return None
    slots = Counter(_slot(frequency, d) for d in reference)
    if frequency == "daily":
        # A seven-day calendar (2 days in 7 at weekends) keeps weekends; else they are odd.
        return None if slots[True] >= 0.2 * len(reference) else False
    return slots.most_common(1)[0][0]


def _describe(frequency: str, grid) -> str:
    """Why a date is off the grid, for the warning."""
    like = "like the rest of the calendar"
    if frequency == "daily":
        return "on a weekend, where the calendar has working days only"
    if frequency == "weekly":
        return f"not a {_WEEKDAYS[grid]} {like}"
    day = "the last day" if grid[0] == "end" else f"day {grid[0]}"
    if frequency == "monthly":
        return f"not {day} of a month {like}"
    if frequency == "quarterly":
        months = "/".join(_MONTHS[m - 1] for m in range(1, 13) if m % 3 == grid[1])
        return f"not {day} of {months} {like}"
    return f"not {day} of {_MONTHS[grid[1] - 1]} {like}"


def odd_periods(frequency: str, before, added) -> list[tuple[np.datetime64, list[str]]]:
    """The added periods worth a warning, each with why: inside or before the calendar as
    it was, or off its grid. Periods appended after the last one on the grid are not."""
    before, added = _days(before), _days(added)
    if len(added) == 0:
        return []
    # A first load has no calendar to follow: its own dates set the grid.
    grid = _grid(frequency, before if len(before) >= 2 else np.union1d(before, added))
    out = []
    for d in added:
        why = []
        if len(before) and d < before[0]:
            why.append("before the calendar")
        elif len(before) and d < before[-1]:
            why.append("inside the calendar")
        if grid is not None and _slot(frequency, d) != grid:
            why.append(_describe(frequency, grid))
        if why:
            out.append((d, why))
    return out


def warning_text(frequency: str, odd: list[tuple[np.datetime64, list[str]]]) -> str:
    """One warning line for a frequency's odd new periods (the first few listed)."""
    days = [str(d) for d, _ in odd]
    reasons = list(dict.fromkeys(r for _, why in odd for r in why))
    if len(days) == 1:
        head = f"{days[0]} is new to the {frequency} calendar"
        it = "it"
    else:
        shown = ", ".join(days[:SHOWN]) + (f" and {len(days) - SHOWN} more"
                                            if len(days) > SHOWN else "")
        head = f"{len(days)} dates are new to the {frequency} calendar ({shown})"
        it = "them"
    return (f"{head}: every {frequency} time-series window now steps through {it} "
            f"({'; '.join(reasons)}); if that is a mistake, delete those points "
            f"(delete-data ITEM --period DATE) and the calendar shrinks back")
