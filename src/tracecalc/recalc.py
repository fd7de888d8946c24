"""Running a recalculation plan: evaluation on a thread pool, database I/O on one thread,
and early cutoff entity by entity.

The toolkit's ``Scheduler`` releases a formula to the pool once every formula it uses has
been evaluated (numpy releases the GIL, so independent formulas run at the same time). All
database work goes through a single I/O thread, reads before writes: evaluation overlaps
the writes of earlier formulas, SQLite keeps its one writer, and an in-memory database sees
one connection.

Each formula is computed only for the entities that need it: its own stale marks plus the
entities where a formula it uses actually changed in this run (every entity when it has a
cross-sectional function). The result is compared with the stored records; only the cells
that differ are written, and only the entities that changed reach its dependants.

Invariants: a panel is kept only while a formula that uses it has not run; at most
``MAX_PENDING_WRITES`` evaluated panels wait for the writer (back-pressure bounds memory); a
formula's write touches only entities it recomputed, so reading its other entities from the
database is safe while that write is pending.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tracecalc.evaluator import Compiled, Diff, diff_panels
from tracecalc.graph import Scheduler
from tracecalc.model import FormulaRunStats

MAX_PENDING_WRITES = 4
NONE = np.empty(0, dtype=np.int64)

# read(name, entity ids) -> panel (periods x ids) of an item or of stored records
Read = Callable[[str, np.ndarray], np.ndarray]
# write(stats, entity ids, new panel, diff); diff None: nothing was computed, mark it fresh
Write = Callable[[FormulaRunStats, np.ndarray, np.ndarray | None, Diff | None], None]


@dataclass(frozen=True)
class Task:
    """One formula of the plan."""

    name: str
    compiled: Compiled
    uses: tuple[str, ...]  # formulas of the plan it needs evaluated first
    own: np.ndarray = field(default_factory=lambda: NONE)  # stale entities (sorted ids)
    cross_sectional: bool = False


class IOThread:
    """Runs database calls one at a time on its own thread; reads overtake writes."""

    READ, WRITE = 0, 1

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._run, name="tracecalc-io", daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[[], object]) -> Future:
        fut: Future = Future()
        self._queue.put((priority, next(self._seq), fn, fut))
        return fut

    def _run(self) -> None:
        while True:
            _, _, fn, fut = self._queue.get()
            if fn is None:
                return
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # handed to whoever waits on the future
                    fut.set_exception(e)

    def close(self) -> None:
        self._queue.put((2, next(self._seq), None, None))
        self._thread.join()


class Runner:
    """Evaluates ``tasks`` (in dependency order) over ``universe`` (every entity id)."""

    def __init__(self, tasks: Sequence[Task], universe: np.ndarray, read: Read, write: Write,
                 workers: int = 2, progress: Callable[[int, int, str], None] | None = None):
        self.tasks = {t.name: t for t in tasks}
        self.order = [t.name for t in tasks]
        self.universe = np.asarray(universe, dtype=np.int64)
        self.read, self.write, self.progress = read, write, progress
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._remaining = Counter(n for t in tasks for n in t.compiled.inputs)
        self._full: dict[str, np.ndarray] = {}  # inputs read for every entity, shared
        self._loading: dict[str, Future] = {}
        self._computed: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (ids, panel)
        self._changed: dict[str, np.ndarray] = {}  # name -> entity ids changed in this run
        self._slots = threading.Semaphore(MAX_PENDING_WRITES)
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self.stats: list[FormulaRunStats] = []

    def run(self) -> list[FormulaRunStats]:
        if not self.tasks:
            return []
        self._io = IOThread()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tracecalc-eval")
        self._sched: Scheduler[str] = Scheduler()
        try:
            for name in self.order:
                self._sched.add(name, self.tasks[name].uses)
            for name in self.order:
                self._sched.schedule(name, self._submit)
            self._finished.wait()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._io.close()
        if self._error is not None:
            raise self._error
        return self.stats

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = e
        self._finished.set()

    def _submit(self, name: str) -> None:
        if self._error is None:
            try:
                self._pool.submit(self._evaluate, name)
            except RuntimeError:  # the pool is shutting down after a failure
                pass

    def _read(self, name: str, ids: np.ndarray) -> np.ndarray:
        return self._io.submit(IOThread.READ, lambda: self.read(name, ids)).result()

    def _read_all(self, name: str) -> np.ndarray:
        """Every entity of an input, read once and shared while consumers remain."""
        with self._lock:
            panel = self._full.get(name)
            if panel is not None:
                return panel
            fut = self._loading.get(name)
            if fut is None:
                fut = self._loading[name] = self._io.submit(
                    IOThread.READ, lambda: self.read(name, self.universe))
        panel = fut.result()
        with self._lock:
            if self._remaining[name] > 0:
                self._full.setdefault(name, panel)
            self._loading.pop(name, None)
        return panel

    def _input(self, name: str, ids: np.ndarray) -> np.ndarray:
        """Input ``name`` at entities ``ids``: this run's values where it was recomputed,
        stored values elsewhere (unchanged by this run)."""
        everything = len(ids) == len(self.universe)
        with self._lock:
            computed = self._computed.get(name)
        if computed is None:
            if everything:
                return self._read_all(name)
            with self._lock:
                full = self._full.get(name)
            if full is not None:
                return full[:, np.searchsorted(self.universe, ids)]
            return self._read(name, ids)
        cols, panel = computed
        pos = np.minimum(np.searchsorted(cols, ids), len(cols) - 1)
        hit = cols[pos] == ids
        if hit.all():
            return panel[:, pos]
        out = np.empty((panel.shape[0], len(ids)))
        out[:, hit] = panel[:, pos[hit]]
        out[:, ~hit] = self._read(name, ids[~hit])
        return out

    def _entities(self, task: Task) -> np.ndarray:
        parts = [task.own] + [self._changed[u] for u in task.uses]
        ids = np.unique(np.concatenate(parts)) if any(len(p) for p in parts) else NONE
        if task.cross_sectional and len(ids):
            return self.universe  # a change anywhere moves every entity's rank or score
        return ids

    def _evaluate(self, name: str) -> None:
        try:
            task = self.tasks[name]
            ids = self._entities(task)
            t0 = time.perf_counter()
            if len(ids):
                new = task.compiled(*(self._input(n, ids) for n in task.compiled.inputs))
                diff = diff_panels(new, self._read(name, ids))
                changed = ids[diff.changed_columns]
            else:  # nothing upstream changed: early cutoff
                new, diff, changed = None, None, NONE
            seconds = time.perf_counter() - t0
            with self._lock:
                self._changed[name] = changed
                for n in task.compiled.inputs:
                    self._remaining[n] -= 1
                    if self._remaining[n] == 0:  # its last consumer has run
                        self._full.pop(n, None)
                        self._computed.pop(n, None)
                if new is not None and self._remaining[name] > 0:
                    self._computed[name] = (ids, new)
            stats = FormulaRunStats(name, len(ids), 0 if diff is None else diff.written,
                                    0 if diff is None else diff.unchanged, seconds, len(changed))
            self._slots.acquire()
            self._io.submit(IOThread.WRITE, lambda: self._store(stats, ids, new, diff))
            self._sched.done(name)
        except BaseException as e:
            self._fail(e)

    def _store(self, stats: FormulaRunStats, ids, new, diff) -> None:
        try:
            if self._error is not None:
                return
            self.write(stats, ids, new, diff)
            with self._lock:
                self.stats.append(stats)
                done = len(self.stats)
            if self.progress:
                self.progress(done, len(self.order), stats.name)
            if done == len(self.order):
                self._finished.set()
        except BaseException as e:
            self._fail(e)
        finally:
            self._slots.release()
