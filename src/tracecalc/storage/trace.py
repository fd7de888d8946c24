"""A dependency graph kept in database tables: declarative mixins and the tracer.

Any model can be a node: subclass ``TraceNode`` for the nodes and ``TraceLink`` for the
links (naming the node table in ``__trace_node__``), add your own columns, and ``TraceGraph``
gives sorting with priority, change tracing and cycle detection on SQLite, PostgreSQL and
MariaDB. The algorithms are ``tracecalc.graph``'s; this module only loads and stores.

    class Base(DeclarativeBase): ...

    class Task(TraceNode, Base):
        __tablename__ = "tasks"
        name: Mapped[str] = mapped_column(String(100))
        priority: Mapped[float] = mapped_column(default=0.0)

    class TaskLink(TraceLink, Base):
        __tablename__ = "task_links"
        __trace_node__ = "tasks"

    tg = TraceGraph(session, Task, TaskLink, key=lambda t: t.priority)
    tg.link(b, a)                      # b depends on a
    for task in tg.handle_changes():   # changed tasks and their downstream, in order
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from sqlalchemy import Boolean, ForeignKey, Integer, delete, select, update
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

from tracecalc.errors import CycleError
from tracecalc.graph import Graph
from tracecalc.storage.closure import closure_sql

T = TypeVar("T", bound="TraceNode")

_CHUNK = 500  # ids per IN (...) list


class TraceNode:
    """Mixin for a node model: an integer ``id`` and a ``changed`` flag.

    Creating a node counts as a change (``changed`` defaults to true).
    """

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    changed: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False, index=True)

    def __str__(self) -> str:  # what cycle paths show: the name when the model has one
        return str(getattr(self, "name", None) or f"{type(self).__name__}#{self.id}")


class TraceLink:
    """Mixin for a link model: ``node_id`` depends on ``depends_on_id``.

    Set ``__trace_node__`` to the node model's table name.
    """

    __trace_node__: str

    @declared_attr
    def node_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey(f"{cls.__trace_node__}.id", ondelete="CASCADE"),
                             primary_key=True)

    @declared_attr
    def depends_on_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey(f"{cls.__trace_node__}.id", ondelete="CASCADE"),
                             primary_key=True, index=True)


class TraceGraph(Generic[T]):
    """Sorting, change tracing and cycle detection over stored nodes and links.

    ``key`` orders nodes that are ready at the same time (lower first); ties fall back to
    the node id, so every order is deterministic. Works inside the caller's ``session``;
    committing is the caller's business.
    """

    def __init__(self, session: Session, node: type[T], link: type[TraceLink],
                 key: Callable[[T], Any] | None = None):
        self.session = session
        self.node = node
        self.link_model = link
        self.key = key

    # -- reading --------------------------------------------------------------------------

    def graph(self) -> Graph[int]:
        """The stored graph, by node id (every node, every link)."""
        g: Graph[int] = Graph()
        for (i,) in self.session.execute(select(self.node.id).order_by(self.node.id)):
            g.add_node(i)
        lk = self.link_model
        for a, b in self.session.execute(select(lk.node_id, lk.depends_on_id)):
            g.add_edge(a, b)
        return g

    def closure(self, ids: Iterable[int], upstream: bool = True) -> Graph[int]:
        """The part of the stored graph reachable from ``ids``: what they depend on
        (``upstream``) or what depends on them, with the links between those nodes.

        One recursive query; its cost follows the part reached, not the whole graph.
        """
        start = sorted(set(ids))
        g: Graph[int] = Graph()
        for i in start:
            g.add_node(i)
        if not start:
            return g
        q = closure_sql(self.link_model.__table__.name, upstream)
        for a, b in self.session.connection().execute(q, {"start": start}):
            g.add_edge(a, b)
        return g

    def nodes(self, ids: Iterable[int]) -> dict[int, T]:
        ids = list(ids)
        out: dict[int, T] = {}
        for i in range(0, len(ids), _CHUNK):
            q = select(self.node).where(self.node.id.in_(ids[i:i + _CHUNK]))
            out.update((n.id, n) for n in self.session.scalars(q))
        return out

    def order(self, g: Graph[int], ids: Iterable[int]) -> list[T]:
        """``ids`` in dependency order by the links of ``g`` (``key`` among ready nodes)."""
        ids = list(ids)
        objs = self.nodes(ids)
        key = None if self.key is None else (lambda i: (self.key(objs[i]), i))
        return [objs[i] for i in g.topological_order(ids, key=key or (lambda i: i))]

    # -- writing --------------------------------------------------------------------------

    def add(self, node: T, depends_on: Iterable[T] = ()) -> T:
        """Add a new node (a change) with its dependencies."""
        self.session.add(node)
        self.session.flush()
        self.set_dependencies(node, depends_on)
        return node

    def link(self, node: T, *depends_on: T) -> None:
        """Make ``node`` depend on each of ``depends_on`` too (refused if it closes a cycle)."""
        current = self.dependency_ids(node)
        self.set_dependencies(node, [*self.nodes(current).values(), *depends_on])

    def set_dependencies(self, node: T, depends_on: Iterable[T]) -> None:
        """Replace what ``node`` depends on. Raises CycleError (nothing changes) if the new
        links would close a cycle; only what the new dependencies reach is searched."""
        deps = list(depends_on)
        self.session.flush()
        dep_ids = [d.id for d in deps]
        path = self.closure(dep_ids).cycle_if_added(node.id, dep_ids)
        if path is not None:
            objs = self.nodes(set(path))
            raise CycleError([objs[i] for i in path])
        lk = self.link_model
        self.session.execute(delete(lk).where(lk.node_id == node.id))
        for d in dict.fromkeys(x.id for x in deps):
            self.session.add(lk(node_id=node.id, depends_on_id=d))
        self.session.flush()

    def mark_changed(self, *nodes: T) -> None:
        for n in nodes:
            n.changed = True
        self.session.flush()

    # -- algorithms -----------------------------------------------------------------------

    def sort(self, nodes: Iterable[T] | None = None) -> list[T]:
        """Nodes (all by default) so that each comes after what it depends on; among nodes
        ready at the same time, the smallest ``key`` first."""
        g = self.graph()
        ids = list(g) if nodes is None else [n.id for n in nodes]
        return self.order(g, ids)

    def handle_changes(self) -> Iterator[T]:
        """Yield every changed node and everything downstream of it, each once, in
        dependency order; once all are handled, clear the flags.

        If the loop stops early (an exception, a ``break``) the flags stay set, so the next
        call handles the same nodes again.
        """
        changed = list(self.session.scalars(
            select(self.node.id).where(self.node.changed.is_(True))))
        g = self.closure(changed, upstream=False)  # only what the changes reach
        yield from self.order(g, list(g))
        for i in range(0, len(changed), _CHUNK):
            self.session.execute(update(self.node).where(self.node.id.in_(
                changed[i:i + _CHUNK])).values(changed=False))
        self.session.expire_all()

    def find_cycles(self, nodes: Iterable[T] | None = None) -> list[list[T]]:
        """Every cycle among ``nodes`` (all by default), one per strongly connected
        component, as a path of nodes with first == last."""
        g = self.graph()
        cycles = g.find_cycles(None if nodes is None else [n.id for n in nodes])
        objs = self.nodes({i for c in cycles for i in c})
        return [[objs[i] for i in c] for c in cycles]

    def dependency_ids(self, node: T) -> list[int]:
        lk = self.link_model
        return list(self.session.scalars(select(lk.depends_on_id).where(lk.node_id == node.id)))

    def dependencies(self, node: T, transitive: bool = False) -> list[T]:
        """What ``node`` depends on (all the way up with ``transitive``), in order."""
        g = self.graph()
        ids = g.ancestors(node.id) if transitive else g.predecessors(node.id)
        return self.order(g, ids)

    def dependents(self, node: T, transitive: bool = False) -> list[T]:
        """What depends on ``node`` (all the way down with ``transitive``), in order."""
        g = self.graph()
        ids = g.descendants(node.id) if transitive else g.successors(node.id)
        return self.order(g, ids)
