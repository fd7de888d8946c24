"""Running a recalculation plan: the stage driver, shared by a local run and a Dask one.

``run_plan`` bounds memory as the universe grows: entities are split into chunks and the
plan runs chunk by chunk. Formulas with a cross-sectional function need every entity of a
period, so they are the synchronisation points: the plan is cut into stages at them
(``stages``), each stage runs its cross-sectional formulas over every entity, then its
other formulas chunk by chunk (``run_stages``; on a cluster, partition by partition). A
formula is finished (marked fresh, logged) with its last chunk. A plan that fits in one
chunk runs as one batch: no stage waits for another.

Each batch (``runner.Runner``) evaluates on a thread pool and writes on one I/O thread; a
``Tally`` carries what the batches did to the next: each formula's stats, its chunks
merged, and the entities where it changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from tracecalc.model import FormulaRunStats
from tracecalc.runner import Runner
from tracecalc.task import NONE, Outcome, Task, merge_stats, within
from tracecalc.tracer import earliest

CHUNK_CELLS = 400_000  # entities x periods per chunk when run_plan is given no chunk size

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RunOptions:
    """How one recalculation runs (``Engine.recalc`` builds it)."""

    workers: int = 2  # evaluation threads
    chunk_entities: int | None = None  # entities per chunk; None: about CHUNK_CELLS cells
    # a second connection reads while the writer writes (not in one shared transaction,
    # nor in an in-memory SQLite database: one connection)
    concurrent_reads: bool = False
    verify: bool = False  # compare every recomputed entity's records cell by cell
    dask: Any = None  # a scheduler address or a distributed.Client: run on that cluster
    lock_holder: int | None = None  # the run's lock connection: every commit checks it
    atomic: bool = False  # the whole run is one transaction


class Storage(Protocol):
    """Where a run reads and writes (``work.RunIO``)."""

    def read(self, name: str, ids: np.ndarray) -> np.ndarray: ...

    def digests(self, name: str, ids: np.ndarray) -> np.ndarray: ...

    def write(self, stats: FormulaRunStats, outcome: Outcome | None, final: bool) -> None: ...

    def group(self) -> AbstractContextManager: ...


def stages(tasks: Sequence[Task]) -> list[list[Task]]:
    """Cut a topological plan at its cross-sectional formulas: stage k holds cross-sectional
    formulas that need stage k-1 finished for every entity, and entity-wise formulas whose
    inputs are all in stages <= k."""
    names = {t.name for t in tasks}
    level: dict[str, int] = {}
    for t in tasks:
        k = max((level[u] for u in t.uses if u in names), default=0)
        level[t.name] = k + 1 if t.cross_sectional else k
    out: list[list[Task]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for t in tasks:
        out[level[t.name]].append(t)
    return [s for s in out if s]


def chunks(universe: np.ndarray, size: int) -> list[np.ndarray]:
    """The universe in near-equal consecutive chunks of at most ``size`` entities."""
    n = max(1, -(-len(universe) // max(1, size)))
    return [c for c in np.array_split(universe, n) if len(c)] or [universe]


def forget_unused(changed: dict[str, np.ndarray], later: Sequence[Sequence[Task]]) -> None:
    """Drop the changed entities of formulas no later stage uses (memory follows the
    stages, not the whole plan)."""
    needed = {u for stage in later for t in stage for u in t.uses}
    for name in [n for n in changed if n not in needed]:
        del changed[name]


class PlanRun(NamedTuple):
    stats: list[FormulaRunStats]  # one per formula, its chunks merged, in plan order
    io_seconds: float  # the I/O (writer) threads' busy time: writes and commits


class Tally:
    """What a run's batches have done: each formula's stats (its parts merged), the
    entities where each changed, the writers' busy time, and the progress reported."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress = total, progress
        self.stats: dict[str, FormulaRunStats] = {}
        self.changed: dict[str, np.ndarray] = {}
        self.first: dict[str, object] = {}  # name -> the first period that changed
        self.io_seconds = 0.0
        self.done = 0

    def finished(self, name: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, name)

    def within(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The changed entities so far, among ``ids``."""
        return {k: within(v, ids) for k, v in self.changed.items()}

    def add(self, stats: Sequence[FormulaRunStats], changed: dict[str, np.ndarray],
            io_seconds: float = 0.0, first: dict | None = None) -> None:
        for st in stats:
            self.stats[st.name] = merge_stats(self.stats.get(st.name), st)
        for name, ch in changed.items():
            if len(ch):
                for key in (name, (name, "known")):
                    day = (first or {}).get(key)
                    self.first[key] = earliest(self.first[key], day) \
                        if len(self.changed.get(name, NONE)) else day
            self.changed[name] = np.union1d(self.changed.get(name, NONE), ch)
        self.io_seconds += io_seconds

    def result(self, order: Sequence[str]) -> PlanRun:
        return PlanRun([self.stats[n] for n in order], self.io_seconds)


@dataclass(frozen=True)
class Here:
    """Batches run in this process, through ``storage``."""

    storage: Storage
    workers: int
    concurrent_reads: bool

    def run(self, tasks: Sequence[Task], ids: np.ndarray, tally: Tally,
            final: bool = True) -> None:
        """``tasks`` over the entities ``ids``; with ``final`` their last part (each is
        finished, its stats merged with the tally's)."""
        s = self.storage
        runner = Runner(tasks, ids, s.read, s.write, self.workers, digests=s.digests,
                        changed=tally.within(ids), prior=tally.stats, final=final,
                        finished=tally.finished if final else None,
                        concurrent_reads=self.concurrent_reads, group=s.group,
                        versions=getattr(s, "versions", None),
                        stored_versions=getattr(s, "stored_versions", None),
                        calendar=getattr(s, "calendar", None),
                        downsample=getattr(s, "downsample", None),
                        inline=getattr(s, "inline", None), first=tally.first,
                        groups=getattr(s, "groups", None))
        tally.add(runner.run(), runner.changed, runner.io_seconds, runner.first)


def run_stages(tasks: Sequence[Task], universe: np.ndarray, tally: Tally, here: Here,
               spread: Callable[[list[Task]], None]) -> None:
    """The stage loop: each stage's cross-sectional formulas here over every entity, then
    ``spread(formulas)`` runs and finishes its other formulas (over entity chunks, or over
    a cluster's partitions)."""
    cut = stages(tasks)
    for k, stage in enumerate(cut):
        across = [t for t in stage if t.cross_sectional]
        if across:
            here.run(across, universe, tally)
        local = [t for t in stage if not t.cross_sectional]
        if local:
            spread(local)
        forget_unused(tally.changed, cut[k + 1:])


def run_plan(tasks: Sequence[Task], universe: np.ndarray, storage: Storage,
             options: RunOptions, *, periods: int = 1,
             progress: Progress | None = None) -> PlanRun:
    """Run a plan over ``universe``, in entity chunks of ``options.chunk_entities``
    (default: about ``CHUNK_CELLS`` cells of ``periods`` periods)."""
    universe = np.asarray(universe, dtype=np.int64)
    parts = chunks(universe, options.chunk_entities or max(1, CHUNK_CELLS // max(1, periods)))
    tally = Tally(len(tasks), progress)
    here = Here(storage, options.workers, options.concurrent_reads)
    if len(parts) == 1:  # every entity at once: one batch, no stage waits for another
        here.run(tasks, universe, tally)
    else:
        def by_chunk(local: list[Task]) -> None:
            for i, part in enumerate(parts):
                here.run([t.within(part) for t in local], part, tally, i == len(parts) - 1)

        run_stages(tasks, universe, tally, here, by_chunk)
    return tally.result([t.name for t in tasks])
