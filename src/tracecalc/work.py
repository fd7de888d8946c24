"""One recalculation's plan and its database side.

``RunPlan`` is what the engine decided to compute: the formulas in dependency order, each
one's stale entities, the calendars and the ids everything has in the database. It is plain
data (picklable), so a Dask worker can take a part of it and run that part on its own
connection. ``RunIO`` is the plan bound to a ``Store``: it reads panels and digests, and
writes a formula's changed cells, its digests, its users' stale marks and (with its last
part) its fresh state and its line of the run log, all in one transaction (several
formulas' writes share one when the writer has a group of them ready).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from tracecalc import catalog, pit, tracer
from tracecalc.evaluator import from_panel, to_panel
from tracecalc.facts import FormulaFacts, parse_asof_input, parse_downsample_input
from tracecalc.functions import asof_panel, downsample_panel
from tracecalc.model import FormulaRunStats, FormulaState
from tracecalc.storage import Store, calendars
from tracecalc.task import NONE, Outcome, Task


@dataclass(frozen=True)
class FormulaRef:
    """A formula as the plan saw it when the run started."""

    name: str
    id: int
    version: int
    stale_seq: int
    frequency: str


@dataclass
class RunPlan:
    url: str
    run_id: int
    universe: np.ndarray  # every entity id, sorted
    items: dict[str, tuple[int, str]]  # name -> (id, frequency)
    formulas: dict[str, FormulaRef]  # the formulas it computes, reads and marks
    calendars: dict[str, np.ndarray]  # frequency -> periods
    order: list[str]  # the formulas to compute, in dependency order
    uses: dict[str, tuple[str, ...]]  # formula -> formulas of the plan it uses
    own: dict[str, np.ndarray]  # formula -> its stale entities
    facts: dict[str, FormulaFacts]  # of the formulas to compute (compiled on first use)
    # formula -> its users (name, id, cross-sectional, reads it through asof): marked stale
    # where it changed
    users: dict[str, list[tuple[str, int, bool, bool]]] = field(default_factory=dict)
    verify: bool = False  # compare every recomputed entity's records cell by cell
    # the run's recalculation lock connection (RecalcLock.holder): every write checks it
    lock_holder: int | None = None
    pit: frozenset[str] = frozenset()  # formulas computed with their versions (tracecalc.pit)
    daily: str = calendars.WEEKDAYS  # the database's daily calendar (weekdays or an exchange)
    inline: dict[str, FormulaFacts] = field(default_factory=dict)  # asof(ttm(eps)): ttm(eps)
    since: dict[str, np.datetime64 | None] = field(default_factory=dict)  # own first periods
    # entity attribute -> the group code of each universe entity (by=sector; -1: none)
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def tasks(self, names: list[str] | None = None) -> list[Task]:
        out = []
        for n in self.order if names is None else names:
            f = self.facts[n]
            resume = None if n in self.pit else f.resume
            window = None if n in self.pit else resume[3] if resume else f.window
            out.append(Task(n, f.compiled, self.uses[n], self.own[n], f.cross_sectional,
                            self.verify, n in self.pit, self.since.get(n), window,
                            resume[:3] if resume else None))
        return out

    @property
    def periods(self) -> int:
        """The longest calendar in play (for sizing entity chunks)."""
        return max((len(c) for c in self.calendars.values()), default=1)


def run_transaction(store: Store, shared=None, write: bool = True) -> AbstractContextManager:
    """A transaction of a run: inside an atomic run's one ``shared`` transaction (its
    connection), else a transaction of its own."""
    return nullcontext(shared) if shared is not None else store.transaction(write=write)


class RunIO:
    """A plan's reads and writes through one store (inside ``shared``, the connection of
    an atomic run's one transaction, when given)."""

    def __init__(self, plan: RunPlan, store: Store, shared=None):
        self.plan, self.store, self.shared = plan, store, shared
        self._local = threading.local()  # the writer thread's group transaction
        self._periods: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def tx(self, write: bool = True) -> AbstractContextManager:
        return run_transaction(self.store, self.shared, write)

    @contextmanager
    def group(self) -> Iterator[None]:
        """Writes on this thread inside the block share one transaction (one commit)."""
        # an atomic run's own transaction already holds everything
        if self.shared is not None or getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.store.transaction() as conn:
            # Records are derived data: if the server crashes, the last commits may be
            # lost, never torn (their formulas stay stale and the next run redoes them).
            self.store.bulk.relaxed_commit(conn)
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    def _write_tx(self) -> AbstractContextManager:
        conn = getattr(self._local, "conn", None)
        return nullcontext(conn) if conn is not None else self.tx()

    def _frequency(self, name: str) -> str:
        if name in self.plan.items:
            return self.plan.items[name][1]
        return self.plan.formulas[name].frequency

    def read(self, name: str, ids: np.ndarray, row0: int = 0) -> np.ndarray:
        """Input ``name`` at ``ids``, from its calendar's row ``row0`` on (a downsampled
        input: the whole calendar)."""
        down = parse_downsample_input(name)
        if down is not None:  # a finer input aggregated onto the formula's calendar
            ref, freq, how = down
            return self.downsample(ref, freq, how, self.read(ref, ids))
        asof = parse_asof_input(name)
        with self.tx(write=False) as conn:
            if asof is not None:  # a coarser input as known on each date of the formula's
                ref, max_age, freq = asof
                if ref in self.plan.inline:  # an expression, with its versions
                    f = self.plan.inline[ref]
                    v = pit.versions_of(f.compiled, [self._versions(conn, n, ids)
                                                     for n in f.compiled.inputs],
                                        self.plan.calendars[f.frequency], ids)
                else:
                    v = self._versions(conn, ref, ids)
                return asof_panel(*v, self.plan.calendars[freq][row0:], ids, max_age)
            days = self.plan.calendars[self._frequency(name)][row0:]
            span = (days[0], None) if row0 and len(days) else None
            if name in self.plan.items:
                rows = self.store.read_item(conn, self.plan.items[name][0], ids, span)
            else:
                rows = self.store.read_records(conn, self.plan.formulas[name].id, ids, span)
        return to_panel(*rows, days, ids)

    def downsample(self, ref: str, frequency: str, how: str, panel: np.ndarray) -> np.ndarray:
        """``panel`` of the finer ``ref`` (on its calendar) aggregated per period of
        ``frequency``'s calendar (``quarterly_last(close)``)."""
        fine = self._frequency(ref)
        key = (fine, frequency)
        if key not in self._periods:
            self._periods[key] = calendars.periods_of(
                fine, self.plan.calendars[fine], frequency, self.plan.calendars[frequency],
                self.plan.daily)
        period, complete = self._periods[key]
        return downsample_panel(panel, period, len(complete), how, complete)

    @property
    def inline(self) -> dict[str, FormulaFacts]:
        return self.plan.inline

    def groups(self, attribute: str, ids: np.ndarray) -> np.ndarray:
        """The group codes by ``attribute`` of entities ``ids`` (as the run started)."""
        return self.plan.groups[attribute][np.searchsorted(self.plan.universe, ids)]

    def calendar(self, name: str | None, frequency: str | None = None) -> np.ndarray:
        """The calendar of formula or item ``name`` (or of ``frequency``)."""
        return self.plan.calendars[frequency or self._frequency(name)]

    def _versions(self, conn, name: str, ids: np.ndarray):
        if name in self.plan.items:
            return self.store.every_version(conn, self.plan.items[name][0], ids)
        return self.store.every_version(conn, self.plan.formulas[name].id, ids, "records")

    def versions(self, name: str, ids: np.ndarray):
        """Every version of an input at ``ids`` (``storage.versions.Versions``);
        ``stored_versions``: a formula's own version rows."""
        with self.tx(write=False) as conn:
            return self._versions(conn, name, ids)

    def stored_versions(self, name: str, ids: np.ndarray):
        with self.tx(write=False) as conn:
            return self.store.read_versions(conn, "records", self.plan.formulas[name].id, ids)

    def digests(self, name: str, ids: np.ndarray) -> np.ndarray:
        with self.tx(write=False) as conn:
            return self.store.read_digests(conn, self.plan.formulas[name].id, ids)

    def write(self, stats: FormulaRunStats, outcome: Outcome | None, final: bool) -> None:
        """Store one part of a formula's result; with ``final`` also finish the formula."""
        ref = self.plan.formulas[stats.name]
        with self._write_tx() as conn:
            # saves and loads wait for this commit; no commit once the run lost its lock
            self.store.lock_for_run(conn, self.plan.lock_holder)
            marks = self.store.current_marks(conn, ref.id)
            if marks is None or marks[0] != ref.version:
                return  # deleted or edited during the run: it is stale already
            if outcome is not None and (len(outcome.ids) or outcome.versions is not None):
                self._write_changes(conn, ref, outcome)
            if final:
                self._finish(conn, ref, marks, stats)

    def finish(self, stats: FormulaRunStats) -> None:
        """Finish a formula whose parts were written elsewhere (by Dask workers)."""
        ref = self.plan.formulas[stats.name]
        with self._write_tx() as conn:
            self.store.lock_for_run(conn, self.plan.lock_holder)
            marks = self.store.current_marks(conn, ref.id)
            if marks is not None and marks[0] == ref.version:
                self._finish(conn, ref, marks, stats)

    def _finish(self, conn, ref: FormulaRef, marks: tuple[int, int],
                stats: FormulaRunStats) -> None:
        if marks[1] == ref.stale_seq:  # else marked again during the run: keep it stale
            self.store.set_state(conn, [ref.name], FormulaState.FRESH)
        self.store.log_formula_run(conn, self.plan.run_id, ref.version, stats)

    def _write_changes(self, conn, ref: FormulaRef, out: Outcome) -> None:
        """A formula's changed cells (row by row when few stored cells changed, as a
        rewrite of the entities when most did: a range delete and a bulk insert beat
        rewriting rows in place), then its digests. What changed makes its users stale in
        the same transaction, so a crash leaves exactly the remaining work stale."""
        diff, ids = out.diff, out.ids
        calendar = self.plan.calendars[ref.frequency][out.row0:]
        everything = len(ids) == len(self.plan.universe) and out.row0 == 0
        if diff.written:
            rewritten = int(diff.update.sum() + diff.delete.sum())
            # (from a later row on: row by row, the rewrite would delete earlier rows)
            if out.row0 == 0 and 2 * rewritten > rewritten + diff.unchanged:
                self.store.write_diff(conn, ref.id, from_panel(out.new, calendar, ids),
                                      (NONE, NONE), None if everything else ids, replace=True)
            else:
                self.store.write_diff(
                    conn, ref.id, from_panel(out.new, calendar, ids, diff.insert | diff.update),
                    from_panel(out.new, calendar, ids, diff.update | diff.delete)[:2], None,
                    replace=False)
        if out.versions is not None and (len(out.versions[0]) or len(out.versions[1])):
            self.store.write_versions(conn, "records", ref.id, *out.versions)
        if diff.written or len(out.version_changed):
            users = self.plan.users.get(ref.name, ())
            marks = tracer.result_written([(n, cs, a) for n, _, cs, a in users], out.changed,
                                          out.first, out.first_known)
            catalog.apply(self.store, conn, marks, {n: fid for n, fid, _, _ in users})
        self.store.write_digests(conn, ref.id, ids, out.digests, everything)
