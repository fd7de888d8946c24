"""The database side of a run's threads: one thread that runs database calls one at a time
(reads overtake writes), and the short GIL switch interval it needs."""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

SWITCH_INTERVAL = 0.0005  # seconds; see short_switch_interval

_switch_lock = threading.Lock()
_switch_state = {"runs": 0, "saved": 0.005}


@contextmanager
def short_switch_interval() -> Iterator[None]:
    """The writer releases the GIL inside every statement and must get it back from the
    evaluation threads; a short switch interval keeps it from waiting 5 ms each time. Set
    while any run is going (several may share a process), then restored."""
    with _switch_lock:
        if _switch_state["runs"] == 0:
            _switch_state["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_state["saved"], SWITCH_INTERVAL))
        _switch_state["runs"] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_state["runs"] -= 1
            if _switch_state["runs"] == 0:
                sys.setswitchinterval(_switch_state["saved"])


class IOThread:
    """Runs database calls one at a time on its own thread; reads overtake writes."""

    READ, WRITE = 0, 1

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self.busy = 0.0  # seconds spent running calls
        self._thread = threading.Thread(target=self._run, name="tracecalc-io", daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[[], object], order: int = 0) -> Future:
        """Queue ``fn``; calls run by ``priority``, then ``order``, then as submitted."""
        fut: Future = Future()
        self._queue.put((priority, order, next(self._seq), fn, fut))
        return fut

    def _run(self) -> None:
        while True:
            _, _, _, fn, fut = self._queue.get()
            if fn is None:
                return
            if fut.set_running_or_notify_cancel():
                t0 = time.perf_counter()
                try:
                    fut.set_result(fn())
                except BaseException as e:  # handed to whoever waits on the future
                    fut.set_exception(e)
                finally:
                    self.busy += time.perf_counter() - t0

    def close(self) -> None:
        """Stop once every queued call has run."""
        self._queue.put((2, 0, next(self._seq), None, None))
        self._thread.join()
