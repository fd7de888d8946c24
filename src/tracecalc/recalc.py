"""Running a recalculation plan: evaluation on a thread pool, database I/O on one thread.

The toolkit's ``Scheduler`` releases a formula to the pool once every formula it uses has
been evaluated (numpy releases the GIL, so independent formulas run at the same time). All
database work goes through a single I/O thread, reads before writes: evaluation overlaps
the writes of earlier formulas, SQLite keeps its one writer, and an in-memory database sees
one connection. Each formula's records are written in one transaction together with
clearing its stale mark, so an interrupted run leaves consistent data and the rest stale.

Invariants: a panel is kept only while a formula that uses it has not run; at most
``MAX_PENDING_WRITES`` evaluated panels wait for the writer (back-pressure bounds memory).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tracecalc.evaluator import Compiled
from tracecalc.graph import Scheduler
from tracecalc.model import FormulaRunStats

MAX_PENDING_WRITES = 4


@dataclass(frozen=True)
class Task:
    """One formula of the plan."""

    name: str
    compiled: Compiled
    uses: tuple[str, ...]  # formulas of the plan it needs evaluated first


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
    """Evaluates ``tasks`` (in dependency order) and writes each result.

    ``load(name)`` reads an input panel (an item, or a formula outside the plan);
    ``write(name, panel)`` stores a result and returns the number of records written. Both
    run on the I/O thread. ``progress(done, total, name)`` is called after each write.
    """

    def __init__(self, tasks: Sequence[Task], load: Callable[[str], np.ndarray],
                 write: Callable[[str, np.ndarray], int], workers: int = 2,
                 progress: Callable[[int, int, str], None] | None = None):
        self.tasks = {t.name: t for t in tasks}
        self.order = [t.name for t in tasks]
        self.load, self.write, self.progress = load, write, progress
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._remaining = Counter(n for t in tasks for n in t.compiled.inputs)
        self._panels: dict[str, np.ndarray] = {}
        self._loading: dict[str, Future] = {}
        self._slots = threading.Semaphore(MAX_PENDING_WRITES)
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self.stats: list[FormulaRunStats] = []

    def run(self) -> list[FormulaRunStats]:
        if not self.tasks:
            return []
        self._io = IOThread()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tracecalc-eval")
        sched: Scheduler[str] = Scheduler()
        self._sched = sched
        try:
            for name in self.order:
                sched.add(name, self.tasks[name].uses)
            for name in self.order:
                sched.schedule(name, self._submit)
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

    def _input(self, name: str) -> np.ndarray:
        with self._lock:
            panel = self._panels.get(name)
            if panel is not None:
                return panel
            fut = self._loading.get(name)
            if fut is None:  # first to ask: the I/O thread reads it, others wait on it
                fut = self._loading[name] = self._io.submit(IOThread.READ,
                                                            lambda: self.load(name))
        panel = fut.result()
        with self._lock:
            if self._remaining[name] > 0:
                self._panels.setdefault(name, panel)
            self._loading.pop(name, None)
        return panel

    def _evaluate(self, name: str) -> None:
        try:
            task = self.tasks[name]
            t0 = time.perf_counter()
            out = task.compiled(*(self._input(n) for n in task.compiled.inputs))
            seconds = time.perf_counter() - t0
            with self._lock:
                for n in task.compiled.inputs:
                    self._remaining[n] -= 1
                    if self._remaining[n] == 0:
                        self._panels.pop(n, None)  # its last consumer has run
                if self._remaining[name] > 0:
                    self._panels[name] = out
            self._slots.acquire()
            self._io.submit(IOThread.WRITE, lambda: self._store(name, out, seconds))
            self._sched.done(name)
        except BaseException as e:
            self._fail(e)

    def _store(self, name: str, panel: np.ndarray, seconds: float) -> None:
        try:
            if self._error is not None:
                return
            written = self.write(name, panel)
            stats = FormulaRunStats(name, written, int(panel.size - written), seconds)
            with self._lock:
                self.stats.append(stats)
                done = len(self.stats)
            if self.progress:
                self.progress(done, len(self.order), name)
            if done == len(self.order):
                self._finished.set()
        except BaseException as e:
            self._fail(e)
        finally:
            self._slots.release()
