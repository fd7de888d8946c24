"""A generic dependency graph: nodes are hashable values, an edge means "node depends on
predecessor".

Pure standard library so that planning and validation never load pandas or SQLAlchemy.
Every traversal is iterative: catalogs reach 1M nodes and chains 100k deep, beyond the
recursion limit. Ties are broken by insertion order (never by set or hash order, which
changes between processes for strings), so every result is deterministic.
"""

from __future__ import annotations

import graphlib
import heapq
from collections import deque
from collections.abc import Callable, Container, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from tracecalc.errors import CycleError

N = TypeVar("N", bound=Hashable)
_START = object()


class Graph(Generic[N]):
    """Directed dependency graph kept as adjacency sets in both directions.

    ``predecessors``/``successors`` return frozensets; ordered results (``nodes``,
    ``edges``, ``topological_order``, ``generations``, cycle paths) follow insertion order.
    """

    __slots__ = ("_index", "_next", "_preds", "_succs")

    def __init__(self) -> None:
        self._preds: dict[N, set[N]] = {}
        self._succs: dict[N, set[N]] = {}
        # Insertion position of each node: the deterministic tie-break everywhere.
        self._index: dict[N, int] = {}
        self._next = 0

    # --- building -------------------------------------------------------------------------

    def _ensure(self, node: N) -> None:
        if node not in self._preds:
            self._preds[node] = set()
            self._succs[node] = set()
            self._index[node] = self._next
            self._next += 1

    def add_node(self, node: N, predecessors: Iterable[N] = ()) -> None:
        """Create ``node`` if needed and replace its predecessors (created if missing).

        Pass a sequence, not a set, if the insertion order of new predecessors matters.
        """
        preds, succs = self._preds, self._succs
        if node not in preds:
            self._ensure(node)
        ps = list(predecessors)
        for p in ps:
            if p not in preds:
                self._ensure(p)
        new = set(ps)
        old = preds[node]
        if old:  # a new node (the common case while building) skips the set differences
            for p in old - new:
                succs[p].discard(node)
            added = new - old
        else:
            added = new
        for p in added:
            succs[p].add(node)
        preds[node] = new

    def add_nodes(self, nodes: Iterable[N]) -> None:
        """Create each of ``nodes`` that is missing, without edges."""
        preds = self._preds
        for n in nodes:
            if n not in preds:
                self._ensure(n)

    def add_edge(self, node: N, predecessor: N) -> None:
        """Make ``node`` depend on ``predecessor``, creating either if missing."""
        if node not in self._preds:
            self._ensure(node)
        if predecessor not in self._preds:
            self._ensure(predecessor)
        self._preds[node].add(predecessor)
        self._succs[predecessor].add(node)

    def remove_node(self, node: N) -> None:
        """Remove ``node`` and every edge to or from it; KeyError if absent."""
        for p in self._preds[node]:
            self._succs[p].discard(node)
        for s in self._succs[node]:
            self._preds[s].discard(node)
        del self._preds[node], self._succs[node], self._index[node]

    def remove_edge(self, node: N, predecessor: N) -> None:
        """Remove the edge ``node -> predecessor``; KeyError if absent."""
        self._preds[node].remove(predecessor)
        self._succs[predecessor].remove(node)

    def copy(self) -> Graph[N]:
        """An independent copy (nodes themselves are shared)."""
        g: Graph[N] = Graph()
        g._preds = {n: set(ps) for n, ps in self._preds.items()}
        g._succs = {n: set(ss) for n, ss in self._succs.items()}
        g._index = dict(self._index)
        g._next = self._next
        return g

    # --- inspection -----------------------------------------------------------------------

    def __contains__(self, node: object) -> bool:
        return node in self._preds

    def __len__(self) -> int:
        return len(self._preds)

    def __iter__(self) -> Iterator[N]:
        return iter(self._preds)

    def __repr__(self) -> str:
        n_edges = sum(len(ps) for ps in self._preds.values())
        return f"Graph({len(self)} nodes, {n_edges} edges)"

    def nodes(self) -> list[N]:
        """All nodes in insertion order."""
        return list(self._preds)

    def predecessors(self, node: N) -> frozenset[N]:
        """What ``node`` depends on directly."""
        return frozenset(self._preds[node])

    def successors(self, node: N) -> frozenset[N]:
        """What depends on ``node`` directly."""
        return frozenset(self._succs[node])

    def edges(self) -> list[tuple[N, N]]:
        """Every ``(node, predecessor)`` pair, ordered by node then predecessor insertion."""
        return [(n, p) for n, ps in self._preds.items() for p in self._sorted(ps)]

    def ancestors(self, nodes: N | Iterable[N]) -> set[N]:
        """Transitive predecessors of a node or of several nodes."""
        return _reach(self._preds, self._starts(nodes))

    def descendants(self, nodes: N | Iterable[N]) -> set[N]:
        """Transitive successors of a node or of several nodes."""
        return _reach(self._succs, self._starts(nodes))

    def _starts(self, nodes: Any) -> list[N]:
        # A value that is itself a node wins over reading it as a collection of nodes
        # (nodes may be tuples or strings, which are iterable).
        try:
            if nodes in self._preds:
                return [nodes]
        except TypeError:  # unhashable, so it can only be a collection
            pass
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Iterable):
            raise KeyError(nodes)
        starts = list(nodes)
        for n in starts:
            if n not in self._preds:
                raise KeyError(n)
        return starts

    def _sorted(self, nodes: Iterable[N]) -> list[N]:
        return sorted(nodes, key=self._index.__getitem__)

    def _subset(self, nodes: Iterable[N] | None) -> dict[N, set[N]]:
        """Predecessor map restricted to ``nodes`` (all of them when None), insertion order."""
        if nodes is None:
            return self._preds
        keep = set(nodes)
        for n in keep:
            if n not in self._preds:
                raise KeyError(n)
        if len(keep) == len(self._preds):  # every node: the map itself (a run, status)
            return self._preds
        return {n: self._preds[n] & keep for n in self._sorted(keep)}

    # --- ordering -------------------------------------------------------------------------

    def _sorter(self, preds: dict[N, set[N]]) -> graphlib.TopologicalSorter:
        ts: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
        for n, ps in preds.items():
            ts.add(n, *ps)
        try:
            ts.prepare()
        except graphlib.CycleError:
            # Report our own shortest cycle, in depends-on direction like every other path.
            raise CycleError(self._cycles(preds)[0]) from None
        return ts

    def topological_order(self, nodes: Iterable[N] | None = None,
                          key: Callable[[N], Any] | None = None) -> list[N]:
        """Every node after all its predecessors; among ready nodes the smallest ``key`` first.

        Restricted to ``nodes`` (only edges among them count) when given. Ties, and
        ``key=None``, fall back to insertion order. Raises CycleError on a cycle.
        """
        preds = self._subset(nodes)
        ts = self._sorter(preds)
        idx = self._index
        # A heap of everything ready, not batch by batch: a node that becomes ready later
        # with a smaller key must still overtake ready nodes with larger keys.
        heap: list[tuple[Any, ...]] = []
        order: list[N] = []
        push, pop, get_ready, done = heapq.heappush, heapq.heappop, ts.get_ready, ts.done
        while ts.is_active():
            for n in get_ready():
                push(heap, (idx[n], n) if key is None else (key(n), idx[n], n))
            n = pop(heap)[-1]
            order.append(n)
            done(n)
        return order

    def generations(self, nodes: Iterable[N] | None = None) -> list[list[N]]:
        """Batches whose nodes depend only on earlier batches (each in insertion order)."""
        ts = self._sorter(self._subset(nodes))
        out: list[list[N]] = []
        while ts.is_active():
            batch = self._sorted(ts.get_ready())
            out.append(batch)
            ts.done(*batch)
        return out

    # --- cycles ---------------------------------------------------------------------------

    def find_cycles(self, nodes: Iterable[N] | None = None) -> list[list[N]]:
        """One cycle path per cyclic strongly connected component, first node == last.

        Each path runs in depends-on direction (each node depends on the next) and is a
        shortest cycle through the component's earliest-inserted node.
        """
        return self._cycles(self._subset(nodes))

    def _cycles(self, preds: dict[N, set[N]]) -> list[list[N]]:
        cycles = []
        for comp in _sccs(preds):
            if len(comp) > 1 or comp[0] in preds[comp[0]]:
                start = min(comp, key=self._index.__getitem__)
                members = set(comp)
                path = self._bfs_path(start, preds[start] & members, members)
                assert path is not None  # a cyclic component has a cycle through every node
                cycles.append(path)
        cycles.sort(key=lambda c: self._index[c[0]])
        return cycles

    def _bfs_path(self, target: N, firsts: Iterable[N],
                  allowed: Container[N]) -> list[N] | None:
        """Shortest ``[target, first, ..., target]`` along predecessor edges, stepping only
        onto ``allowed`` nodes; None if no such path."""
        starts = set(firsts)
        if target in starts:
            return [target, target]
        # A private sentinel marks the starts, since None may itself be a node.
        parent: dict[N, Any] = dict.fromkeys(starts, _START)
        queue: deque[N] = deque(self._sorted(starts))
        while queue:
            n = queue.popleft()
            ps = self._preds[n]
            if target in ps:
                path = [target]
                cur: Any = n
                while cur is not _START:
                    path.append(cur)
                    cur = parent[cur]
                path.reverse()
                return [target, *path]
            for p in self._sorted(ps):
                if p not in parent and p in allowed:
                    parent[p] = n
                    queue.append(p)
        return None

    def cycle_if_added(self, node: N, predecessors: Iterable[N]) -> list[N] | None:
        """The cycle ``[node, p, ..., node]`` that ``add_node(node, predecessors)`` would
        close, or None. Searches only what the new predecessors reach."""
        preds = list(predecessors)
        if node in preds:
            return [node, node]
        # Nothing depends on a node without successors, so no path can lead back to it.
        if not self._succs.get(node):
            return None
        return self._bfs_path(node, [p for p in preds if p in self._preds], self._preds)

    def check_add(self, node: N, predecessors: Iterable[N]) -> None:
        """Raise CycleError if ``add_node(node, predecessors)`` would close a cycle."""
        cycle = self.cycle_if_added(node, predecessors)
        if cycle is not None:
            raise CycleError(cycle)


def _reach(adj: dict[N, set[N]], starts: Iterable[N]) -> set[N]:
    # Seeded with the starts' neighbours, so a start is included only if a cycle leads back.
    seen: set[N] = set()
    stack = [m for s in starts for m in adj[s]]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(adj[n])
    return seen


def _sccs(preds: dict[N, set[N]]) -> list[list[N]]:
    """Strongly connected components by iterative Tarjan, linear in nodes + edges.

    Only the membership of each component is used, so visiting order within sets may vary.
    """
    index: dict[N, int] = {}
    low: dict[N, int] = {}
    on_stack: set[N] = set()
    stack: list[N] = []
    comps: list[list[N]] = []
    for root, root_preds in preds.items():
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(root_preds))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(preds[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    comps.append(comp)
    return comps
