"""One formula's work in a recalculation, and how its result compares with storage.

A ``Task`` is a formula of the plan: its compiled function, the formulas of the plan it
uses, its own stale entities. Its result is compared with the stored records (``compare``):
each entity's new column is digested (``column_digests``) and only entities whose digest
differs from the stored one have their stored records read and diffed cell by cell, so a
full run over unchanged data reads digests, not records. A verifying task (``Task.verify``,
``recalc --verify``) diffs every entity's records cell by cell instead, so records changed
behind an intact digest are rewritten; the stored digests then only decide which digests
need rewriting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from tracecalc.evaluator import Compiled, Diff, column_digests, diff_panels, updated_digests
from tracecalc.model import FormulaRunStats
from tracecalc.tracer import Day, earliest

NONE = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class Outcome:
    """A formula evaluated over some entities, against what is stored.

    Only entities whose digest differs from the stored one are kept here (``ids``); the
    others are unchanged and need no write. ``new`` holds the rows from ``row0`` on (a
    run that recomputes from a later period compares and writes only those).
    """

    ids: np.ndarray  # sorted entity ids compared cell by cell with the stored records
    new: np.ndarray  # their new panel, periods (from row0) x ids
    diff: Diff  # against the stored records of ids
    digests: np.ndarray  # the new digest of each of ids (to store; 0: none known)
    # a point-in-time formula's version rows to delete and to insert (tracecalc.pit)
    versions: tuple | None = None
    version_changed: np.ndarray = field(default_factory=lambda: NONE)  # entities
    row0: int = 0  # the calendar row of new's first row
    first: Day = None  # the first period whose value changed (None: none, or the first)
    first_known: Day = None  # the earliest known_at of the versions that changed
    read: int = 0  # stored records read to compare

    @property
    def changed(self) -> np.ndarray:
        out = self.ids[self.diff.changed_columns]
        return np.union1d(out, self.version_changed) if len(self.version_changed) else out


def _first_changed(diff: Diff, days: np.ndarray) -> Day:
    rows = np.flatnonzero((diff.insert | diff.update | diff.delete).any(axis=1))
    return days[rows[0]] if len(rows) else None


# read(name, entity ids) -> panel (periods x ids) of an item or of stored records
Read = Callable[[str, np.ndarray], np.ndarray]
# digests(name, sorted entity ids) -> the stored digests, 0 where none is stored
Digests = Callable[[str, np.ndarray], np.ndarray]
# write(stats, outcome, final): outcome None when nothing was computed; final: the last part
# of this formula in the run (mark it fresh and log it with stats, which cover every part)
Write = Callable[[FormulaRunStats, Outcome | None, bool], None]


def no_digests(name: str, ids: np.ndarray) -> np.ndarray:
    return np.zeros(len(ids), dtype=np.int64)


def compare(new: np.ndarray, ids: np.ndarray, stored_digests: np.ndarray,
            read_stored: Callable[[np.ndarray], np.ndarray], days: np.ndarray,
            verify: bool = False) -> tuple[Outcome, int]:
    """Compare a new panel (rows at ``days``: the whole calendar) with storage: digests for
    every entity, cells for the entities whose digest differs (for every entity with
    ``verify``). Returns the outcome and the count of unchanged cells."""
    digests = column_digests(new, days)
    differ = digests != stored_digests
    if verify and len(ids):
        # Every stored record is read and diffed: a digest that matches the new values
        # says nothing about records changed behind it. Kept (written) are the entities
        # whose cells or digest differ.
        old = read_stored(ids)
        full = diff_panels(new, old)
        differ[full.changed_columns] = True
        diff = Diff(full.insert[:, differ], full.update[:, differ], full.delete[:, differ],
                    int((~(full.insert | full.update | full.delete)[:, differ]
                         & ~np.isnan(new[:, differ])).sum()))
        return Outcome(ids[differ], new[:, differ], diff, digests[differ],
                       first=_first_changed(full, days),
                       read=int((~np.isnan(old)).sum())), full.unchanged
    sub = ids[differ]
    new_sub = new[:, differ]
    old = read_stored(sub) if len(sub) else new_sub
    diff = diff_panels(new_sub, old)
    same = int((~np.isnan(new[:, ~differ])).sum())
    return Outcome(sub, new_sub, diff, digests[differ], first=_first_changed(diff, days),
                   read=int((~np.isnan(old)).sum()) if len(sub) else 0), diff.unchanged + same


def compare_since(new: np.ndarray, ids: np.ndarray, stored_digests: np.ndarray,
                  read_stored: Callable[[np.ndarray], np.ndarray], days: np.ndarray,
                  row0: int) -> tuple[Outcome, int]:
    """Compare the rows a run recomputed from calendar row ``row0`` on (at ``days``) with
    the stored records there (``read_stored`` reads those rows only): cell by cell, and
    each digest updated from the cells that changed (``updated_digests``). Kept are the
    entities whose cells changed. Returns the outcome and the count of unchanged cells."""
    old = read_stored(ids)
    full = diff_panels(new, old)
    keep = full.changed_columns
    digests = updated_digests(stored_digests[keep], old[:, keep], new[:, keep], days)
    diff = Diff(full.insert[:, keep], full.update[:, keep], full.delete[:, keep],
                int((~(full.insert | full.update | full.delete)[:, keep]
                     & ~np.isnan(new[:, keep])).sum()))
    return Outcome(ids[keep], new[:, keep], diff, digests, row0=row0,
                   first=_first_changed(full, days),
                   read=int((~np.isnan(old)).sum())), full.unchanged


def merge_stats(a: FormulaRunStats | None, b: FormulaRunStats) -> FormulaRunStats:
    if a is None:
        return b
    first = (b.first_period if not a.entities else a.first_period if not b.entities
             else earliest(a.first_period, b.first_period))
    return FormulaRunStats(b.name, a.entities + b.entities,
                           a.records_written + b.records_written,
                           a.records_unchanged + b.records_unchanged, a.seconds + b.seconds,
                           a.changed_entities + b.changed_entities,
                           a.write_seconds + b.write_seconds, first,
                           a.records_read + b.records_read)


@dataclass(frozen=True)
class Task:
    """One formula of the plan."""

    name: str
    compiled: Compiled
    uses: tuple[str, ...]  # formulas of the plan it needs evaluated first
    own: np.ndarray = field(default_factory=lambda: NONE)  # stale entities (sorted ids)
    cross_sectional: bool = False
    verify: bool = False  # compare every recomputed entity cell by cell (see compare)
    pit: bool = False  # also compute its versions over its inputs' (tracecalc.pit)
    since: Day = None  # its own marks' first period (None: the first one)
    # periods before t its inputs are read to give its values from t on (None: all of
    # history, a recursive function: it is recomputed whole and compared from t on)
    window: int | None = None
    # an ema or wilder at its root over an argument with a window: (function, n, the
    # compiled argument); recomputed from t, it continues from its last value before t
    resume: tuple | None = None

    def within(self, chunk: np.ndarray) -> Task:
        return replace(self, own=within(self.own, chunk))


def within(ids: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """The sorted ``ids`` that are in the sorted ``chunk``."""
    if len(ids) == 0 or len(chunk) == 0:
        return NONE
    lo, hi = np.searchsorted(ids, [chunk[0], chunk[-1] + 1])
    part = ids[lo:hi]
    return part[np.isin(part, chunk, assume_unique=True)]
