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
from dataclasses import dataclass, field

import numpy as np

from tracecalc.evaluator import Compiled, Diff, column_digests, diff_panels
from tracecalc.model import FormulaRunStats

NONE = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class Outcome:
    """A formula evaluated over some entities, against what is stored.

    Only entities whose digest differs from the stored one are kept here (``ids``); the
    others are unchanged and need no write.
    """

    ids: np.ndarray  # sorted entity ids compared cell by cell with the stored records
    new: np.ndarray  # their new panel, periods x ids
    diff: Diff  # against the stored records of ids
    digests: np.ndarray  # the new digest of each of ids (to store)
    # a point-in-time formula's version rows to delete and to insert (tracecalc.pit)
    versions: tuple | None = None
    version_changed: np.ndarray = field(default_factory=lambda: NONE)  # entities

    @property
    def changed(self) -> np.ndarray:
        out = self.ids[self.diff.changed_columns]
        return np.union1d(out, self.version_changed) if len(self.version_changed) else out


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
            read_stored: Callable[[np.ndarray], np.ndarray],
            verify: bool = False) -> tuple[Outcome, int]:
    """Compare a new panel with storage: digests for every entity, cells for the entities
    whose digest differs (for every entity with ``verify``). Returns the outcome and the
    count of unchanged cells."""
    digests = column_digests(new)
    differ = digests != stored_digests
    if verify and len(ids):
        # Every stored record is read and diffed: a digest that matches the new values
        # says nothing about records changed behind it. Kept (written) are the entities
        # whose cells or digest differ.
        full = diff_panels(new, read_stored(ids))
        differ[full.changed_columns] = True
        diff = Diff(full.insert[:, differ], full.update[:, differ], full.delete[:, differ],
                    int((~(full.insert | full.update | full.delete)[:, differ]
                         & ~np.isnan(new[:, differ])).sum()))
        return Outcome(ids[differ], new[:, differ], diff, digests[differ]), full.unchanged
    sub = ids[differ]
    new_sub = new[:, differ]
    diff = diff_panels(new_sub, read_stored(sub) if len(sub) else new_sub)
    same = int((~np.isnan(new[:, ~differ])).sum())
    return Outcome(sub, new_sub, diff, digests[differ]), diff.unchanged + same


def merge_stats(a: FormulaRunStats | None, b: FormulaRunStats) -> FormulaRunStats:
    if a is None:
        return b
    return FormulaRunStats(b.name, a.entities + b.entities,
                           a.records_written + b.records_written,
                           a.records_unchanged + b.records_unchanged, a.seconds + b.seconds,
                           a.changed_entities + b.changed_entities,
                           a.write_seconds + b.write_seconds)


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

    def within(self, chunk: np.ndarray) -> Task:
        return Task(self.name, self.compiled, self.uses, within(self.own, chunk),
                    self.cross_sectional, self.verify, self.pit)


def within(ids: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """The sorted ``ids`` that are in the sorted ``chunk``."""
    if len(ids) == 0 or len(chunk) == 0:
        return NONE
    lo, hi = np.searchsorted(ids, [chunk[0], chunk[-1] + 1])
    part = ids[lo:hi]
    return part[np.isin(part, chunk, assume_unique=True)]
