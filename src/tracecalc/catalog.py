"""The catalog as one transaction saw it: items, formula rows, the graph between them, and
each formula's facts.

One reader, ``read``: scoped by default to what the caller reaches (a save: the formulas it
names and references, everything upstream of them, where a cycle would have to run, and
everything downstream, which it makes pending; a run: the formulas that are not fresh and
their neighbours), the whole catalog when asked (``whole=True``). Either way the result is
the same kind of ``Catalog`` over one graph by name (an edge: a formula depends on what it
references), so nothing downstream of the reader knows which it got. Costs follow the part
read, not the catalog's size.

Facts come from the engine's ``FactsCache`` by (formula id, version): stored text is parsed
once per process and version, and only for formulas something asks about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tracecalc import tracer
from tracecalc.errors import NotFoundError, UnknownAttributeError, close_matches
from tracecalc.facts import FactsCache, FormulaFacts
from tracecalc.graph import Graph
from tracecalc.model import FormulaState
from tracecalc.parser import Call, walk
from tracecalc.storage import Store
from tracecalc.storage.columns import PENDING_CANONICAL
from tracecalc.tracer import Marks


@dataclass
class Catalog:
    """A snapshot of (part of) the catalog, read inside one transaction."""

    store: Store
    conn: object
    cache: FactsCache
    items: dict[str, tuple[int, str]]  # name -> (id, frequency)
    formulas: dict[str, object]  # name -> stored row
    graph: Graph[str]
    whole: bool
    _everything: set[str] | None = field(default=None, repr=False)

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(self.items) | frozenset(self.formulas)

    def all_names(self) -> set[str]:
        """Every item and formula name of the database (for "did you mean")."""
        if self.whole:
            return self.names
        if self._everything is None:
            self._everything = self.store.all_names(self.conn)
        return self._everything

    @cached_property
    def attributes(self) -> list[str]:
        """The entity attributes formulas can group by (``Store.attribute_names``)."""
        return self.store.attribute_names(self.conn)

    def unknown_attributes(self, facts: FormulaFacts, formula: str | None = None
                           ) -> list[UnknownAttributeError]:
        """A problem for each attribute a ``by=`` of ``facts`` names that no entity has."""
        if not facts.attributes:
            return []
        out, seen = [], set()
        for n in walk(facts.tree):
            if (isinstance(n, Call) and n.by is not None and n.by not in self.attributes
                    and n.by not in seen):
                seen.add(n.by)
                at = re.compile(rf"\bby\s*=\s*{n.by}\b").search(facts.text, n.col)
                out.append(UnknownAttributeError(n.by, self.attributes, formula=formula,
                                                 col=at and at.start()))
        return out

    def row(self, name: str):
        row = self.formulas.get(name)
        if row is None:
            every = self.formulas if self.whole else self.store.formula_names(self.conn)
            raise NotFoundError("formula", name, close_matches(name, every))
        return row

    def facts(self, name: str) -> FormulaFacts:
        r = self.formulas[name]
        return self.cache.get(r.id, r.version, r.expression, r.name, r.frequency)

    def frequency(self, name: str) -> str:
        if name in self.items:
            return self.items[name][1]
        return self.formulas[name].frequency

    def key(self, name: str) -> int:
        """Among formulas ready together, the smallest id first (see ``recalc``)."""
        return self.formulas[name].id

    def downstream(self, names: Iterable[str]) -> list[str]:
        """Formulas depending on ``names`` (transitively), in recalculation order."""
        names = set(names)
        desc = {n for n in self.graph.descendants(names) if n in self.formulas} - names
        return self.graph.topological_order(desc, key=self.key)

    def states(self) -> dict[str, FormulaState]:
        return {n: FormulaState(r.state) for n, r in self.formulas.items()}


def read(store: Store, conn, cache: FactsCache, names: Iterable[str] = (), *,
         whole: bool = False, up: bool = True, down: bool = True,
         items_down: bool = False, unfresh: bool = False, item_links: bool = True
         ) -> Catalog:
    """The catalog, or the part of it around ``names`` (items and formulas):

    - ``up``: everything upstream of the formulas named (where a cycle would run);
    - ``down``: everything downstream of them (what a change reaches); with
      ``items_down`` of the items named too (their users and all below);
    - ``unfresh``: also every formula that is not fresh, with its direct neighbours (what
      a run reads and marks);
    - ``item_links`` false: without the formulas' edges to items (only the formula graph).
    """
    if whole:
        items = store.items(conn)
        rows = {r.name: r for r in store.formula_rows(conn)}
        g: Graph[str] = Graph()
        g.add_nodes([*items, *rows])
        for f, ref in store.edges(conn):
            g.add_edge(f, ref)
        return Catalog(store, conn, cache, items, rows, g, True)
    names = set(names)
    items = store.items_named(conn, names)
    rows = store.formula_rows_named(conn, names - set(items))
    seeds = [r.id for r in rows.values()]
    links: set[tuple[int, int]] = set()
    if up:
        links |= set(store.links(conn, seeds, "up"))
    if down:
        users = store.item_users(conn, [i for i, _ in items.values()]) if items_down else []
        links |= set(store.links(conn, [*seeds, *users], "down"))
        seeds += users
    if unfresh:
        targets = store.unfresh_rows(conn)
        rows.update((r.name, r) for r in targets)
        links |= set(store.links(conn, [r.id for r in targets], "near"))
    by_id = {r.id: r for r in rows.values()}
    missing = ({i for link in links for i in link} | set(seeds)) - set(by_id)
    by_id.update(store.formula_rows_by_id(conn, missing))
    rows = {r.name: r for r in sorted(by_id.values(), key=lambda r: r.name)}
    uses = store.item_links(conn, list(by_id)) if item_links else []
    items.update(store.items_named(conn, {i for _, i in uses} - set(items)))
    g = Graph()
    g.add_nodes([*sorted(items), *rows])
    for a, b in sorted(links):
        g.add_edge(by_id[a].name, by_id[b].name)
    for fid, item in uses:
        g.add_edge(by_id[fid].name, item)
    return Catalog(store, conn, cache, items, rows, g, False)


def apply(store: Store, conn, marks: Marks, ids: Mapping[str, int]) -> None:
    """Write the tracer's marks (``ids``: formula name -> id)."""
    by_since: dict = {}
    for name in marks.stale:
        by_since.setdefault(marks.since.get(name), []).append(name)
    for since, names in by_since.items():
        store.set_state(conn, names, FormulaState.STALE, bump=marks.bump, since=since)
    for name, entity_ids in marks.partial.items():
        store.mark_entities(conn, ids[name], np.asarray(entity_ids, dtype=np.int64),
                            bump=marks.bump, since=marks.since.get(name))


def trace(store: Store, conn, graph: Graph[str], marks: Marks,
          states: Mapping[str, FormulaState], ids: Mapping[str, int]) -> list[str]:
    """Write a change's marks, then make what lies downstream of them pending
    (``tracer.propagate``); returns every formula handled, in recalculation order."""
    apply(store, conn, marks, ids)
    handled, pending = tracer.propagate(graph, marks.names, states, key=ids.__getitem__)
    store.set_state(conn, pending, FormulaState.PENDING)
    return handled


# Canonical forms are for analysis only (equivalences). A formula saved alone as a new
# formula stores its form as pending, so the common interactive save needs no sympy; a save
# that computes forms anyway fills every pending one (``fill_canonical``), and readers
# compute a pending one on the spot (``canonical_of``), so nobody sees the difference.


def canonical_of(row, cache: FactsCache) -> str:
    """A stored formula's canonical form (a pending one computed, not stored)."""
    if row.canonical != PENDING_CANONICAL:
        return row.canonical
    return cache.get(row.id, row.version, row.expression, row.name, row.frequency).canonical


def fill_canonical(store: Store, conn, cache: FactsCache) -> None:
    """Store the canonical forms still pending (a writing transaction)."""
    store.set_canonical(conn, {r.id: canonical_of(r, cache)
                               for r in store.pending_canonical(conn)})


def equivalents(store: Store, conn, cache: FactsCache, canonical: str) -> list[str]:
    """The formulas whose canonical form is ``canonical``, pending ones included."""
    found = set(store.formulas_with_canonical(conn, canonical))
    found.update(r.name for r in store.pending_canonical(conn)
                 if canonical_of(r, cache) == canonical)
    return sorted(found)
