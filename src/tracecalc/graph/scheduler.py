"""Running a dependency graph: a thread-safe scheduler and a demand-driven planner.

The scheduler is the runner of a build system: register nodes with their dependencies,
``schedule`` a node with a callback that fires once every dependency is ``done`` (at once if
they already are), and mark nodes done from any thread. The planner starts from targets and
walks dependencies on demand, taking a node from the cache when the caller says its result is
available (its dependencies are then not visited at all).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from tracecalc.errors import TracecalcError
from tracecalc.graph.core import Graph

N = TypeVar("N", bound=Hashable)


class SchedulerError(TracecalcError):
    """The scheduler was used out of order (unknown node, dependencies changed too late)."""


class Scheduler(Generic[N]):
    """Fires ``when_ready`` callbacks once all of a node's dependencies are done.

    Invariants, kept under one lock: a callback fires exactly once, never before every
    dependency of its node is done, and never while the lock is held (a callback may call
    ``done`` or ``schedule`` itself, on any thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deps: dict[N, frozenset[N]] = {}
        self._dependants: dict[N, set[N]] = {}
        self._missing: dict[N, int] = {}  # dependencies not yet done, per node
        self._done: set[N] = set()
        self._pending: dict[N, list[Callable[[N], None]]] = {}
        self._local = threading.local()

    def add(self, node: N, dependencies: Iterable[N] = ()) -> None:
        """Register ``node`` and what it depends on (unknown dependencies are registered)."""
        deps = frozenset(dependencies)
        with self._lock:
            if node in self._pending:
                raise SchedulerError(f"{node!r} is already scheduled; register it first")
            for d in self._deps.get(node, ()):
                self._dependants[d].discard(node)
            for d in deps:
                if d not in self._deps:
                    self._register(d, frozenset())
                self._dependants[d].add(node)
            self._register(node, deps)

    def _register(self, node: N, deps: frozenset[N]) -> None:
        self._deps[node] = deps
        self._dependants.setdefault(node, set())
        self._missing[node] = sum(1 for d in deps if d not in self._done)

    def schedule(self, node: N, when_ready: Callable[[N], None]) -> None:
        """Call ``when_ready(node)`` once all its dependencies are done (now, if they are)."""
        with self._lock:
            if node not in self._deps:
                raise SchedulerError(f"{node!r} is not registered")
            if self._missing[node]:
                self._pending.setdefault(node, []).append(when_ready)
                return
        self._fire([(when_ready, node)])

    def done(self, node: N) -> None:
        """Mark ``node`` done and fire the callbacks of dependants it releases.

        Marking a node done twice is harmless: the second call releases nothing.
        """
        fire: list[tuple[Callable[[N], None], N]] = []
        with self._lock:
            if node not in self._deps:
                raise SchedulerError(f"{node!r} is not registered")
            if node in self._done:
                return
            self._done.add(node)
            for d in self._dependants[node]:
                self._missing[d] -= 1
                if self._missing[d] == 0 and d in self._pending:
                    fire.extend((cb, d) for cb in self._pending.pop(d))
        self._fire(fire)

    def _fire(self, fire: list[tuple[Callable[[N], None], N]]) -> None:
        # A callback that calls done() would recurse once per link of a chain; instead the
        # outermost call on this thread runs a queue (a trampoline), so depth stays constant.
        local = self._local
        queue = getattr(local, "queue", None)
        if queue is not None:
            queue.extend(fire)
            return
        local.queue = queue = deque(fire)
        try:
            while queue:
                cb, d = queue.popleft()
                cb(d)
        finally:
            local.queue = None

    def is_done(self, node: N) -> bool:
        with self._lock:
            return node in self._done

    def is_ready(self, node: N) -> bool:
        """All dependencies done."""
        with self._lock:
            return self._missing[node] == 0

    def dependencies(self, node: N) -> frozenset[N]:
        return self._deps[node]


@dataclass(frozen=True)
class Plan(Generic[N]):
    """What a demand-driven walk found: nodes to compute in dependency order, and the nodes
    taken from the cache (whose dependencies were not visited)."""

    order: tuple[N, ...]
    cached: frozenset[N]
    visited: int


def plan(targets: Iterable[N], dependencies: Callable[[N], Iterable[N]],
         cached: Callable[[N], bool] = lambda n: False,
         key: Callable[[N], object] | None = None) -> Plan[N]:
    """Walk from ``targets`` through ``dependencies``, each node considered at most once.

    A node for which ``cached(node)`` is true is taken from the cache: it is not computed and
    its dependencies are not visited (unless something else needs them). Raises CycleError
    if the nodes to compute hold a cycle.
    """
    g: Graph[N] = Graph()
    from_cache: set[N] = set()
    seen: set[N] = set()
    stack = list(targets)[::-1]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if cached(n):
            from_cache.add(n)
            g.add_node(n)
            continue
        deps = list(dependencies(n))
        g.add_node(n, deps)
        stack.extend(d for d in reversed(deps) if d not in seen)
    compute = [n for n in g if n not in from_cache]
    return Plan(tuple(g.topological_order(compute, key=key)), frozenset(from_cache), len(seen))


def _graph(deps: Mapping[N, Iterable[N]]) -> Graph[N]:
    g: Graph[N] = Graph()
    for n, ds in deps.items():
        g.add_node(n, ds)
    return g


def static_order(deps: Mapping[N, Iterable[N]], key: Callable[[N], object] | None = None
                 ) -> list[N]:
    """Every node after its dependencies (smallest ``key`` first among ready nodes)."""
    return _graph(deps).topological_order(key=key)


def generations(deps: Mapping[N, Iterable[N]]) -> list[list[N]]:
    """Batches that can run in parallel, each depending only on earlier batches."""
    return _graph(deps).generations()
