"""The catalog: items, entities, formulas and their graph, formula states and
per-entity stale marks, and the history of formula changes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.orm import Session

from tracecalc.model import FormulaState
from tracecalc.storage.dates import _utc, now
from tracecalc.storage.schema import (
    Formula,
    FormulaLink,
    entities,
    formula_history,
    formula_items,
    formula_links,
    formulas,
    items,
    stale_entities,
)
from tracecalc.storage.trace import TraceGraph


def canonical_key(canonical: str) -> str:
    """An indexable digest of a canonical form (the form itself is unbounded text)."""
    return hashlib.sha1(canonical.encode()).hexdigest()


class CatalogMixin:
    """Items, entities, formulas, the graph, states and marks, history (``Store``)."""

    def items(self, conn: Connection) -> dict[str, tuple[int, str]]:
        rows = conn.execute(select(items.c.name, items.c.id, items.c.frequency))
        return {r.name: (r.id, r.frequency) for r in rows}

    def add_item(self, conn: Connection, name: str, frequency: str) -> int:
        res = conn.execute(insert(items).values(name=name, frequency=frequency, created_at=now()))
        return int(res.inserted_primary_key[0])

    def entity_ids(self, conn: Connection) -> dict[str, int]:
        return {r.code: r.id for r in conn.execute(select(entities.c.code, entities.c.id))}

    def entity_codes(self, conn: Connection) -> np.ndarray:
        """Codes indexed by id (object array; index 0 unused)."""
        rows = conn.execute(select(entities.c.id, entities.c.code)).all()
        out = np.empty(max((r.id for r in rows), default=0) + 1, dtype=object)
        for r in rows:
            out[r.id] = r.code
        return out

    def entity_count(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(entities)).scalar())

    def entity_universe(self, conn: Connection) -> np.ndarray:
        """Every entity id, sorted: the columns of a full panel."""
        q = select(entities.c.id).order_by(entities.c.id)
        return np.array(conn.execute(q).scalars().all(), dtype=np.int64)

    def add_entities(self, conn: Connection, codes: Iterable[str]) -> dict[str, int]:
        codes = list(codes)
        if codes:
            conn.execute(insert(entities), [{"code": c} for c in codes])
        return self.entity_ids(conn)

    def set_entity_attributes(self, conn: Connection, rows: list[dict]) -> None:
        ids = self.entity_ids(conn)
        new = [r["code"] for r in rows if r["code"] not in ids]
        if new:
            ids = self.add_entities(conn, new)
        have = {r.code: (r.name, r.sector) for r in conn.execute(
            select(entities.c.code, entities.c.name, entities.c.sector))}
        for r in rows:  # only what differs: an unchanged file writes nothing
            if have.get(r["code"]) != (r.get("name"), r.get("sector")):
                conn.execute(update(entities).where(entities.c.id == ids[r["code"]])
                             .values(name=r.get("name"), sector=r.get("sector")))

    def entities_table(self, conn: Connection) -> list[dict]:
        q = select(entities.c.code, entities.c.name, entities.c.sector).order_by(entities.c.id)
        return [dict(r._mapping) for r in conn.execute(q)]

    def formula_rows(self, conn: Connection) -> list:
        return conn.execute(select(formulas).order_by(formulas.c.name)).all()

    def items_named(self, conn: Connection, names: Iterable[str]) -> dict[str, tuple[int, str]]:
        out = {}
        names = sorted(names)
        for i in range(0, len(names), 500):
            q = (select(items.c.name, items.c.id, items.c.frequency)
                 .where(items.c.name.in_(names[i:i + 500])))
            out.update((r.name, (r.id, r.frequency)) for r in conn.execute(q))
        return out

    def formula_rows_named(self, conn: Connection, names: Iterable[str]) -> dict:
        out = {}
        names = sorted(names)
        for i in range(0, len(names), 500):
            q = select(formulas).where(formulas.c.name.in_(names[i:i + 500]))
            out.update((r.name, r) for r in conn.execute(q))
        return out

    def formulas_with_canonical(self, conn: Connection, canonical: str) -> list[str]:
        q = select(formulas.c.name).where(formulas.c.canonical_key == canonical_key(canonical),
                                          formulas.c.canonical == canonical)
        return sorted(conn.execute(q).scalars())

    def all_names(self, conn: Connection) -> set[str]:
        return (set(conn.execute(select(items.c.name)).scalars())
                | set(conn.execute(select(formulas.c.name)).scalars()))

    def upstream(self, conn: Connection, formula_ids: list[int]) -> list[tuple[str, str]]:
        """The links (formula, formula it depends on) of everything upstream of the given
        formulas, by name: where a cycle through a new reference would have to run."""
        with self.trace(conn) as tg:
            g = tg.closure(formula_ids, upstream=True)
        names = self._names(conn, list(g))
        return [(names[a], names[b]) for a, b in g.edges()]

    def downstream_names(self, conn: Connection, formula_ids: list[int]) -> list[str]:
        """Formulas depending on the given ones (transitively), in recalculation order."""
        with self.trace(conn) as tg:
            g = tg.closure(formula_ids, upstream=False)
        start = set(formula_ids)
        down = g.topological_order([i for i in g if i not in start], key=lambda i: i)
        names = self._names(conn, down)
        return [names[i] for i in down]

    def _names(self, conn: Connection, ids: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        ids = sorted(ids)
        for i in range(0, len(ids), 500):
            q = select(formulas.c.id, formulas.c.name).where(formulas.c.id.in_(ids[i:i + 500]))
            out.update((r.id, r.name) for r in conn.execute(q))
        return out

    def formula_names(self, conn: Connection) -> list[str]:
        return list(conn.execute(select(formulas.c.name).order_by(formulas.c.name)).scalars())

    def formula_row(self, conn: Connection, name: str):
        return conn.execute(select(formulas).where(formulas.c.name == name)).first()

    def insert_formula(self, conn: Connection, **values) -> int:
        values["canonical_key"] = canonical_key(values["canonical"])
        res = conn.execute(insert(formulas).values(updated_at=now(), **values))
        return int(res.inserted_primary_key[0])

    def update_formula(self, conn: Connection, formula_id: int, **values) -> None:
        if "canonical" in values:
            values["canonical_key"] = canonical_key(values["canonical"])
        conn.execute(update(formulas).where(formulas.c.id == formula_id)
                     .values(updated_at=now(), **values))

    def delete_formula(self, conn: Connection, formula_id: int) -> None:
        self.clear_records(conn, formula_id)
        conn.execute(delete(stale_entities).where(stale_entities.c.formula_id == formula_id))
        conn.execute(delete(formula_items).where(formula_items.c.formula_id == formula_id))
        conn.execute(delete(formula_links).where(formula_links.c.node_id == formula_id))
        conn.execute(delete(formulas).where(formulas.c.id == formula_id))

    @contextmanager
    def trace(self, conn: Connection) -> Iterator[TraceGraph[Formula]]:
        """The formula graph through the toolkit, inside the caller's transaction."""
        with Session(bind=conn, autoflush=False) as session:
            yield TraceGraph(session, Formula, FormulaLink)

    def set_references(self, conn: Connection, formula_id: int, formula_ids: list[int],
                       item_ids: list[int]) -> None:
        """Replace a formula's stored edges: links to formulas (through the toolkit, which
        refuses a cycle) and references to items."""
        with self.trace(conn) as tg:
            nodes = tg.nodes([formula_id, *formula_ids])
            tg.set_dependencies(nodes[formula_id], [nodes[i] for i in formula_ids])
        conn.execute(delete(formula_items).where(formula_items.c.formula_id == formula_id))
        if item_ids:
            conn.execute(insert(formula_items), [
                {"formula_id": formula_id, "item_id": i} for i in item_ids])

    def edges(self, conn: Connection) -> list[tuple[str, str]]:
        """Every stored edge as (formula name, referenced formula or item name)."""
        f, g = formulas.alias("f"), formulas.alias("g")
        q1 = (select(f.c.name, g.c.name).select_from(formula_links)
              .join(f, f.c.id == formula_links.c.node_id)
              .join(g, g.c.id == formula_links.c.depends_on_id))
        q2 = (select(f.c.name, items.c.name).select_from(formula_items)
              .join(f, f.c.id == formula_items.c.formula_id)
              .join(items, items.c.id == formula_items.c.item_id))
        return [tuple(r) for r in conn.execute(q1)] + [tuple(r) for r in conn.execute(q2)]

    def formulas_using_items(self, conn: Connection, item_names: list[str]) -> list[int]:
        if not item_names:
            return []
        q = (select(formula_items.c.formula_id).distinct()
             .join(items, items.c.id == formula_items.c.item_id)
             .where(items.c.name.in_(item_names)))
        return list(conn.execute(q).scalars())

    def current_marks(self, conn: Connection, formula_id: int) -> tuple[int, int] | None:
        """(version, stale_seq) of a formula; None if it was deleted."""
        q = select(formulas.c.version, formulas.c.stale_seq).where(formulas.c.id == formula_id)
        row = conn.execute(q).first()
        return None if row is None else (row.version, row.stale_seq)

    def mark_changed(self, conn: Connection, formula_ids: list[int]) -> None:
        for i in range(0, len(formula_ids), 500):
            conn.execute(update(formulas).where(formulas.c.id.in_(formula_ids[i:i + 500]))
                         .values(changed=True))

    def propagate_changes(self, conn: Connection) -> list[str]:
        """Through the toolkit's tracer: whatever is downstream of a changed formula and
        still fresh becomes PENDING (the changed ones carry their own state already).
        Returns every formula handled, in recalculation order."""
        pending, handled = [], []
        with self.trace(conn) as tg:
            for f in tg.handle_changes():
                handled.append(f.name)
                if not f.changed and f.state == FormulaState.FRESH:
                    pending.append(f.name)
        self.set_state(conn, pending, FormulaState.PENDING)
        return handled

    def set_state(self, conn: Connection, names: Iterable[str], state: FormulaState,
                  bump: bool = True) -> None:
        """Set the state of formulas; STALE and FRESH drop their per-entity marks.

        Marking a formula not fresh bumps its ``stale_seq`` (unless ``bump`` is false, for a
        recalculation's own marks): a run that planned with an older value leaves it stale.
        """
        names = list(names)
        values: dict = {"state": str(state)}
        if bump and state != FormulaState.FRESH:
            values["stale_seq"] = formulas.c.stale_seq + 1
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            conn.execute(update(formulas).where(formulas.c.name.in_(chunk)).values(**values))
            if state in (FormulaState.STALE, FormulaState.FRESH):
                ids = select(formulas.c.id).where(formulas.c.name.in_(chunk))
                conn.execute(delete(stale_entities)
                             .where(stale_entities.c.formula_id.in_(ids)))

    def stale_entities(self, conn: Connection, formula_id: int) -> np.ndarray:
        q = select(stale_entities.c.entity_id).where(stale_entities.c.formula_id == formula_id)
        return np.sort(np.array(conn.execute(q).scalars().all(), dtype=np.int64))

    def mark_entities(self, conn: Connection, formula_id: int, entity_ids: np.ndarray,
                      bump: bool = True) -> None:
        """Add stale marks for some entities of a formula (nothing to do if it is STALE)."""
        if len(entity_ids) == 0:
            return
        state = conn.execute(select(formulas.c.state).where(formulas.c.id == formula_id)
                             ).scalar()
        if state == FormulaState.STALE:
            return
        have = self.stale_entities(conn, formula_id)
        new = np.setdiff1d(entity_ids, have)
        if len(new):
            conn.execute(insert(stale_entities), [
                {"formula_id": formula_id, "entity_id": int(e)} for e in new])
        values: dict = {"state": str(FormulaState.PARTIAL)}
        if bump:
            values["stale_seq"] = formulas.c.stale_seq + 1
        if state != FormulaState.PARTIAL or (bump and len(new)):
            conn.execute(update(formulas).where(formulas.c.id == formula_id).values(**values))

    def stale_counts(self, conn: Connection) -> dict[str, int]:
        """Formula name -> number of entity marks (partial formulas only)."""
        q = (select(formulas.c.name, func.count()).select_from(stale_entities)
             .join(formulas, formulas.c.id == stale_entities.c.formula_id)
             .group_by(formulas.c.name))
        return {n: int(c) for n, c in conn.execute(q)}

    def add_history(self, conn: Connection, **values) -> None:
        conn.execute(insert(formula_history).values(changed_at=now(), **values))

    def history(self, conn: Connection, name: str) -> list[dict]:
        q = (select(formula_history).where(formula_history.c.formula_name == name)
             .order_by(formula_history.c.id))
        return [_utc(r, "changed_at") for r in conn.execute(q)]
