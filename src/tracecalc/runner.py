"""One batch of a recalculation (a whole plan, or a stage's formulas over one chunk of
entities): evaluation on a thread pool, database I/O on one thread, early cutoff entity by
entity.

One loop on the calling thread (``Runner.run``) owns the batch's state. It takes the
formulas a ``graphlib.TopologicalSorter`` says are ready, hands the one that comes first in
the plan to a free evaluation thread, and gives each evaluated formula to the writer; only
then may the formulas that use it start. ``concurrent.futures.wait`` wakes it at whichever
comes first: an evaluation done, a panel written, a group committed. Evaluation threads get
what they read from as arguments and return their result (numpy releases the GIL, so
independent formulas run at the same time). All database work goes through one I/O thread,
reads before writes: evaluation overlaps the writes of earlier formulas, SQLite keeps its
one writer, and an in-memory database sees one connection. Reads run on a second thread
(and connection) when the database allows it.

Each formula is computed only for the entities that need it: its own stale marks plus the
entities where a formula it uses actually changed in this run (every entity when it has a
cross-sectional function). Its result is compared with what is stored (``task.compare``);
only the cells that differ are written, and only the entities that changed reach its users.

Invariants: a panel is kept only while a formula that uses it has not run; at most
``MAX_PENDING_WRITES`` evaluated panels are being evaluated or wait for the writer
(back-pressure bounds memory); a formula's write touches only entities it recomputed, so
reading its other entities from the database is safe while that write is pending.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from functools import partial
from graphlib import TopologicalSorter
from typing import NamedTuple

import numpy as np

from tracecalc import pit, tracer
from tracecalc.facts import parse_asof_input, source_of
from tracecalc.inputs import Inputs, Source
from tracecalc.iothread import IOThread, short_switch_interval
from tracecalc.model import FormulaRunStats
from tracecalc.storage.versions import Versions, diff
from tracecalc.task import (
    NONE,
    Digests,
    Outcome,
    Read,
    Task,
    Write,
    compare,
    compare_since,
    merge_stats,
    no_digests,
)

MAX_PENDING_WRITES = 8



class Evaluated(NamedTuple):
    stats: FormulaRunStats
    outcome: Outcome | None  # None: nothing upstream changed (early cutoff)
    ids: np.ndarray  # the entities computed
    new: np.ndarray | None  # their panel, periods x ids
    versions: object = None  # a point-in-time formula's every version there (Versions)
    row0: int = 0  # the calendar row of new's first row


def _sources(inputs, inline: dict) -> list[str]:
    """The formulas and items compiled inputs come from (``asof:x:...`` reads x, and
    ``asof:ttm(x):...`` x: what the expression reads)."""
    return list(dict.fromkeys(r for n in inputs for r in (
        inline[source_of(n)].compiled.inputs if source_of(n) in inline else (source_of(n),))))


class _Waits:
    """Seconds an evaluation spent waiting for reads (not counted as its own time)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, fut: Future):
        t0 = time.perf_counter()
        try:
            return fut.result()
        finally:
            self.seconds += time.perf_counter() - t0


class Runner(Inputs):
    """Evaluates ``tasks`` (in dependency order) over ``universe`` (the entity ids in play).

    ``changed`` gives, for formulas that ran earlier in this recalculation (an earlier stage
    or chunk), the entities where they changed, ``first`` the first period that changed;
    ``prior`` their stats so far, merged into what a ``final`` write logs.
    ``finished(name)`` is called as each formula is committed.

    A formula is recomputed from the first period its own marks or the changes upstream
    give (``tracer.first_to_compute``) when that is not its first: its inputs are read from
    its ``window`` before that on, and only the rows from that period on are compared and
    written (a recursive one, without a window, is recomputed whole, compared from there).
    """

    def __init__(self, tasks: Sequence[Task], universe: np.ndarray, read: Read, write: Write,
                 workers: int = 2, *, digests: Digests = no_digests,
                 changed: dict[str, np.ndarray] | None = None,
                 prior: dict[str, FormulaRunStats] | None = None, final: bool = True,
                 finished: Callable[[str], None] | None = None, concurrent_reads: bool = False,
                 group: Callable[[], AbstractContextManager] = nullcontext,
                 versions: Callable | None = None, stored_versions: Callable | None = None,
                 calendar: Callable[[str], np.ndarray] | None = None,
                 downsample: Callable | None = None, inline: dict | None = None,
                 first: dict | None = None, groups: Callable | None = None):
        self.tasks = {t.name: t for t in tasks}
        self.order = [t.name for t in tasks]
        self._position = {n: i for i, n in enumerate(self.order)}
        for t in tasks:  # _flush writes a batch in plan order: it must be topological
            for u in t.uses:
                if u in self._position and self._position[u] >= self._position[t.name]:
                    raise ValueError(f"plan order puts {t.name} before {u}, which it uses")
        self.universe = np.asarray(universe, dtype=np.int64)
        self.read, self.write, self.digests = read, write, digests
        self.versions, self.stored_versions = versions, stored_versions
        self.calendar, self.downsample = calendar, downsample
        self.inline, self.groups = inline or {}, groups  # asof's expressions; by='s codes
        self.final, self.prior, self.finished = final, prior or {}, finished
        self.workers = max(1, workers)
        self.concurrent_reads, self.group = concurrent_reads, group
        self._earlier = dict(changed or {})  # changed entities of formulas run before
        self._earlier_first = dict(first or {})  # and the first period that changed
        self.changed: dict[str, np.ndarray] = {}  # name -> entity ids changed in this run
        self.first: dict[str, object] = {}  # name -> the first period changed in this run
        # formula -> what it reads through asof (it sees their changes from known_at on)
        self._via_asof = {t.name: {r for n in t.compiled.inputs if parse_asof_input(n)
                                   for r in _sources([n], self.inline)} for t in tasks}
        # input -> the widest window a task reads it with (one shared read serves them all)
        self._widest: dict[str, int] = {}
        for t in tasks:
            for n in t.compiled.inputs:
                self._widest[n] = max(self._widest.get(n, 0), t.window or 0)
        self.stats: list[FormulaRunStats] = []  # as committed
        self.io_seconds = 0.0  # the I/O thread's busy time
        # The loop's own; evaluation threads only get what they need as arguments.
        self._remaining = Counter(n for t in tasks
                                  for n in _sources(t.compiled.inputs, self.inline))
        self._full: dict[str, Future] = {}  # inputs read for every entity, by compiled name
        self._readers = Counter(n for t in tasks for n in set(t.compiled.inputs))
        self._computed: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (ids, panel)
        self._versions: dict[str, tuple[np.ndarray, object]] = {}  # name -> (ids, Versions)
        # evaluated, for the writer: (stats, outcome, set once written); deque: thread-safe
        self._queue: deque[tuple[FormulaRunStats, Outcome | None, Future]] = deque()
        self._stopped = False  # the run is over or failed: queued writes are dropped

    def run(self) -> list[FormulaRunStats]:
        if not self.tasks:
            return []
        with short_switch_interval():
            self._io = IOThread()
            # Reads on their own thread (and connection) while the writer writes, when the
            # database allows it; else they overtake writes on the one I/O thread.
            self._reader = IOThread() if self.concurrent_reads else self._io
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tracecalc-eval")
            try:
                self._loop(pool)
            finally:  # also after a failure: nothing is left running
                self._stopped = True
                pool.shutdown(wait=True, cancel_futures=True)
                self._io.close()
                self.io_seconds = self._io.busy
                if self._reader is not self._io:
                    self._reader.close()
        return self.stats

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        """Until every formula is committed. The first error raised (an evaluation's, a
        write's) ends the run."""
        sorter = TopologicalSorter({n: [u for u in self.tasks[n].uses if u in self.tasks]
                                    for n in self.order})
        sorter.prepare()
        ready: list[tuple[int, str]] = []  # heap of (plan position, formula)
        evaluating: dict[Future, str] = {}
        unwritten: set[Future] = set()  # panels with the writer, not yet written
        commits: set[Future] = set()
        while sorter.is_active() or commits:
            for name in sorter.get_ready():
                heapq.heappush(ready, (self._position[name], name))
            # Free threads take the ready formula that comes first in the plan, so results
            # reach the writer close to plan order (see _flush).
            while (ready and len(evaluating) < self.workers
                   and len(evaluating) + len(unwritten) < MAX_PENDING_WRITES):
                name = heapq.heappop(ready)[1]
                evaluating[pool.submit(self._evaluate, *self._start(name))] = name
            done, _ = wait([*evaluating, *unwritten, *commits], return_when=FIRST_COMPLETED)
            for fut in done:
                if fut in unwritten:
                    unwritten.discard(fut)
                elif fut in commits:
                    commits.discard(fut)
                    self._committed(fut.result())
                else:
                    name = evaluating.pop(fut)
                    unwritten.add(self._evaluated(name, fut.result()))
                    commits.add(self._io.submit(IOThread.WRITE, self._flush))
                    # Only now may its users run: queued after it, they are written after it
                    # (a write marks users stale where it changed; a user written earlier
                    # would stay stale).
                    sorter.done(name)

    def _rows(self, task: Task, upstream: list[np.ndarray]) -> tuple[int, int]:
        """(the first calendar row to recompute, the first row to read inputs from)."""
        since = tracer.first_to_compute(
            task.own, task.since, upstream,
            [(self.first if u in self.changed else self._earlier_first).get(
                (u, "known") if u in self._via_asof[task.name] else u) for u in task.uses])
        if since is None or task.pit or task.verify or self.calendar is None:
            return 0, 0
        calendar = self.calendar(task.name)
        row = int(np.searchsorted(calendar, since))
        if row >= len(calendar):  # the calendar lost the periods since then: all of it
            return 0, 0
        return row, 0 if task.window is None else max(0, row - task.window)

    def _start(self, name: str) -> tuple[Task, np.ndarray, list[Source], int, int, int]:
        """An evaluation's arguments: the entities to compute, the rows, and where each
        input comes from. An input needed for every entity is read once, shared by its
        consumers (from the row the widest window of them needs)."""
        task, position = self.tasks[name], self._position[name]
        upstream = [self.changed[u] if u in self.changed else self._earlier.get(u, NONE)
                    for u in task.uses]
        ids = tracer.entities_to_compute(task.own, upstream, task.cross_sectional,
                                         self.universe)
        row, lo = self._rows(task, upstream) if len(ids) else (0, 0)
        sources: list[Source] = []
        for n in task.compiled.inputs if len(ids) else ():
            if source_of(n) != n and (source_of(n) in self._computed
                                      or source_of(n) in self.inline):  # read in _input
                sources.append(None)
                continue
            computed = self._computed.get(n)
            if computed is None and len(ids) == len(self.universe):
                shared = self._full.get(n)
                if shared is None or shared[1] > lo:
                    start = 0 if lo == 0 else max(0, row - self._widest[n])
                    shared = self._full[n] = (self._reader.submit(
                        IOThread.READ, self._read(n, self.universe, start), position), start)
                sources.append(shared)
                continue
            sources.append(computed)
        return task, ids, sources, position, row, lo

    def _read(self, name: str, ids: np.ndarray, row0: int) -> Callable[[], np.ndarray]:
        """A read of input ``name`` at ``ids`` from calendar row ``row0`` on."""
        return partial(self.read, name, ids, row0) if row0 else partial(self.read, name, ids)

    def _evaluate(self, task: Task, ids: np.ndarray, sources: list[Source],
                  position: int, row: int, lo: int) -> Evaluated:
        """On an evaluation thread. Its reads overtake those of later formulas (``position``),
        so results reach the writer near plan order."""
        try:
            return self._compute(task, ids, sources, position, row, lo)
        except BaseException:
            self._stopped = True  # the first error ends the run: nothing more is written
            raise

    def _compute(self, task: Task, ids: np.ndarray, sources: list[Source],
                 position: int, row: int, lo: int) -> Evaluated:
        waits = _Waits()
        t0 = time.perf_counter()

        def read(name: str, sub: np.ndarray, row0: int = 0) -> np.ndarray:
            return waits(self._reader.submit(IOThread.READ, self._read(name, sub, row0),
                                             position))

        new = outcome = every = None
        unchanged, changed = 0, NONE
        if len(ids):  # else nothing upstream changed: early cutoff
            before = 0
            if row and task.resume:  # continued from its last value before row
                new, tail, before = self._resumed(task, ids, sources, row, lo, read, waits)
                lo, read_tail = row, (lambda sub, tail=tail: tail)
            else:
                new = task.compiled(*(self._input(n, src, ids, read, waits, lo)
                                      for n, src in zip(task.compiled.inputs, sources)),
                                    groups=self._groups(task, ids))
                read_tail = partial(read, task.name, row0=row)
            stored = waits(self._reader.submit(
                IOThread.READ, partial(self.digests, task.name, ids), position))
            if row:  # from a later period on: only those rows are compared and kept
                new = new[row - lo:]
                outcome, unchanged = compare_since(
                    new, ids, stored, read_tail, self.calendar(task.name)[row:], row)
                outcome = replace(outcome, read=outcome.read + before)
            else:
                days = self.calendar(task.name) if self.calendar else np.arange(
                    len(new)).astype("datetime64[D]")
                outcome, unchanged = compare(new, ids, stored, partial(read, task.name),
                                             days, task.verify)
            if task.pit:
                outcome, every = self._pit(task, ids, outcome, waits, position)
            changed = outcome.changed
        seconds = time.perf_counter() - t0 - waits.seconds
        first = None if self.calendar is None or not len(ids) else \
            self.calendar(task.name)[row] if row else None
        return Evaluated(FormulaRunStats(task.name, len(ids),
                                         0 if outcome is None else outcome.diff.written,
                                         unchanged, seconds, len(changed), 0.0, first,
                                         0 if outcome is None else outcome.read),
                         outcome, ids, new, every, row)

    def _pit(self, task: Task, ids: np.ndarray, outcome: Outcome, waits, position: int):
        """A point-in-time formula's versions at ``ids`` (``tracecalc.pit``) against its
        stored ones: the outcome with the version rows to write, and every version."""
        def read(fn, name):
            return waits(self._reader.submit(IOThread.READ, partial(fn, name, ids), position))

        calendar = self.calendar(task.name)
        inputs = [self._input_versions(n, ids, read, calendar) for n in task.compiled.inputs]
        lay = pit.layout(ids, inputs)
        out = task.compiled(*(pit.expand(v, calendar, lay) for v in inputs))
        _, every, keep = pit.extract(out, calendar, lay)
        new = Versions(*(a[keep] for a in every))
        drop, add = diff(read(self.stored_versions, task.name), new)
        touched = np.union1d(drop.entity_ids, add.entity_ids).astype(np.int64)
        known = np.concatenate([drop.known_at, add.known_at]).astype("datetime64[D]")
        return replace(outcome, versions=(drop, add), version_changed=touched,
                       first_known=known.min() if len(known) else outcome.first
                       ), Versions(*every)

    def _evaluated(self, name: str, ev: Evaluated) -> Future:
        """Record an evaluation, free the panels it was the last consumer of, and queue it
        for the writer. Returns the future set once it is written."""
        self.changed[name] = NONE if ev.outcome is None else ev.outcome.changed
        self.first[name] = None if ev.outcome is None else ev.outcome.first
        if ev.outcome is not None:  # what a reader through asof sees change first
            self.first[(name, "known")] = ev.outcome.first_known or ev.outcome.first
        for n in set(self.tasks[name].compiled.inputs):  # (asof:x and to:x reads included)
            self._readers[n] -= 1
            if self._readers[n] == 0:
                self._full.pop(n, None)
        for n in _sources(self.tasks[name].compiled.inputs, self.inline):
            self._remaining[n] -= 1
            if self._remaining[n] == 0:  # its last consumer has run
                self._computed.pop(n, None)
                self._versions.pop(n, None)
        if ev.new is not None and self._remaining[name] > 0:
            self._computed[name] = (ev.ids, ev.new, ev.row0)
            if ev.versions is not None:
                self._versions[name] = (ev.ids, ev.versions)
        written: Future = Future()
        self._queue.append((ev.stats, ev.outcome, written))
        return written

    def _flush(self) -> list[FormulaRunStats]:
        """On the I/O thread: write every evaluated formula waiting for the writer, in one
        group (one transaction when the caller's ``group`` gives one: fewer commits).
        Returns the stats of what it committed."""
        batch = []
        while self._queue:
            batch.append(self._queue.popleft())
        if self._stopped or not batch:
            return []
        # In plan order, which follows the formula ids where dependencies allow: each
        # formula's rows then land after the previous one's in the records' key. Appending
        # to a b-tree is far cheaper than inserting in its middle (SQLite: 8.2 s against
        # 13.5 s for 8M rows of 100 formulas written in id order or shuffled). A formula
        # still comes after every formula it uses: those were queued before it ran.
        batch.sort(key=lambda w: self._position[w[0].name])
        stats = [s for s, _, _ in batch]
        try:
            with self.group():
                for i, (st, outcome, written) in enumerate(batch):
                    t0 = time.perf_counter()
                    logged = merge_stats(self.prior.get(st.name), st) if self.final else st
                    self.write(logged, outcome, self.final)
                    st.write_seconds = time.perf_counter() - t0
                    # The panel is in the transaction now: let it go, so evaluation refills
                    # the queue while the rest of the group is written.
                    batch[i] = outcome = None
                    written.set_result(None)
        except BaseException:
            # No write after a failed one, even before the loop hears of it: the users of a
            # formula whose write was rolled back would be fresh over values never stored.
            self._stopped = True
            raise
        return stats

    def _committed(self, stats: list[FormulaRunStats]) -> None:
        for st in stats:
            self.stats.append(st)
            if self.finished:
                self.finished(st.name)
