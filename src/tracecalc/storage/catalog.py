"""The catalog: items, entities, formulas and their graph, formula states and
per-entity stale marks, and the history of formula changes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import (
    Connection,
    Date,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)

from tracecalc.model import FormulaState
from tracecalc.storage.closure import closure_sql
from tracecalc.storage.columns import PENDING_CANONICAL, _date, _utc, canonical_key, now
from tracecalc.storage.schema import (
    entities,
    formula_history,
    formula_items,
    formula_links,
    formulas,
    items,
    stale_entities,
)

_CHUNK = 500  # ids per IN (...) list
_SCAN = 5_000  # more ids than this: one scan of the table beats many IN (...) lists


def _chunks(ids: Iterable[int]):
    ids = sorted(set(ids))
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


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

    def pending_canonical(self, conn: Connection) -> list:
        """The formulas whose canonical form is still pending (``PENDING_CANONICAL``)."""
        q = select(formulas).where(
            formulas.c.canonical_key == canonical_key(PENDING_CANONICAL),
            formulas.c.canonical == PENDING_CANONICAL)
        return conn.execute(q).all()

    def set_canonical(self, conn: Connection, forms: dict[int, str]) -> None:
        """Fill in canonical forms (formula id -> form); nothing else changes."""
        if forms:
            stmt = (update(formulas).where(formulas.c.id == bindparam("_id"))
                    .values(canonical=bindparam("canonical"),
                            canonical_key=bindparam("canonical_key")))
            conn.execute(stmt, [{"_id": i, "canonical": c, "canonical_key": canonical_key(c)}
                                for i, c in forms.items()])

    def all_names(self, conn: Connection) -> set[str]:
        return (set(conn.execute(select(items.c.name)).scalars())
                | set(conn.execute(select(formulas.c.name)).scalars()))

    def formula_names(self, conn: Connection) -> list[str]:
        return list(conn.execute(select(formulas.c.name).order_by(formulas.c.name)).scalars())

    def formula_row(self, conn: Connection, name: str):
        return conn.execute(select(formulas).where(formulas.c.name == name)).first()

    def delete_formula(self, conn: Connection, formula_id: int) -> None:
        self.clear_records(conn, formula_id)
        conn.execute(delete(stale_entities).where(stale_entities.c.formula_id == formula_id))
        conn.execute(delete(formula_items).where(formula_items.c.formula_id == formula_id))
        conn.execute(delete(formula_links).where(formula_links.c.node_id == formula_id))
        conn.execute(delete(formulas).where(formulas.c.id == formula_id))

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

    def current_marks(self, conn: Connection, formula_id: int) -> tuple[int, int] | None:
        """(version, stale_seq) of a formula; None if it was deleted."""
        q = select(formulas.c.version, formulas.c.stale_seq).where(formulas.c.id == formula_id)
        row = conn.execute(q).first()
        return None if row is None else (row.version, row.stale_seq)

    def set_state(self, conn: Connection, names: Iterable[str], state: FormulaState,
                  bump: bool = True, since=None) -> None:
        """Set the state of formulas; STALE and FRESH drop their per-entity marks.

        Marking a formula not fresh bumps its ``stale_seq`` (unless ``bump`` is false, for a
        recalculation's own marks): a run that planned with an older value leaves it stale.
        Marking it STALE or PARTIAL moves its ``stale_since`` back to ``since`` (None: its
        first period), and never forward: what was stale stays stale.
        """
        names = list(names)
        values: list = []
        if state in (FormulaState.STALE, FormulaState.PARTIAL):
            values.append((formulas.c.stale_since, _since(since)))
        values.append((formulas.c.state, str(state)))
        if bump and state != FormulaState.FRESH:
            values.append((formulas.c.stale_seq, formulas.c.stale_seq + 1))
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            conn.execute(update(formulas).where(formulas.c.name.in_(chunk))
                         .ordered_values(*values))
            if state in (FormulaState.STALE, FormulaState.FRESH):
                ids = select(formulas.c.id).where(formulas.c.name.in_(chunk))
                conn.execute(delete(stale_entities)
                             .where(stale_entities.c.formula_id.in_(ids)))

    def stale_entities(self, conn: Connection, formula_id: int) -> np.ndarray:
        q = select(stale_entities.c.entity_id).where(stale_entities.c.formula_id == formula_id)
        return np.sort(np.array(conn.execute(q).scalars().all(), dtype=np.int64))

    def mark_entities(self, conn: Connection, formula_id: int, entity_ids: np.ndarray,
                      bump: bool = True, since=None) -> None:
        """Add stale marks for some entities of a formula, from period ``since`` on (a
        STALE formula keeps its state; its first stale period moves back)."""
        if len(entity_ids) == 0:
            return
        state = conn.execute(select(formulas.c.state).where(formulas.c.id == formula_id)
                             ).scalar()
        values: list = [(formulas.c.stale_since, _since(since))]
        if bump:  # (also when only the first period moved back: a planned run keeps it)
            values.append((formulas.c.stale_seq, formulas.c.stale_seq + 1))
        if state == FormulaState.STALE:
            conn.execute(update(formulas).where(formulas.c.id == formula_id)
                         .ordered_values(*values))
            return
        have = self.stale_entities(conn, formula_id)
        new = np.setdiff1d(entity_ids, have)
        if len(new):
            conn.execute(insert(stale_entities), [
                {"formula_id": formula_id, "entity_id": int(e)} for e in new])
        values.insert(1, (formulas.c.state, str(FormulaState.PARTIAL)))
        conn.execute(update(formulas).where(formulas.c.id == formula_id)
                     .ordered_values(*values))

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

    # -- the catalog by parts (tracecalc.catalog reads what a job reaches) -------------------

    def formula_rows_by_id(self, conn: Connection, ids: Iterable[int]) -> dict[int, object]:
        ids = set(ids)
        if len(ids) > _SCAN:
            return {r.id: r for r in conn.execute(select(formulas)) if r.id in ids}
        out = {}
        for chunk in _chunks(ids):
            out.update((r.id, r) for r in conn.execute(
                select(formulas).where(formulas.c.id.in_(chunk))))
        return out

    def unfresh_rows(self, conn: Connection) -> list:
        """Every formula that is not fresh (what a run computes, what status lists)."""
        q = select(formulas).where(formulas.c.state != str(FormulaState.FRESH))
        return conn.execute(q).all()

    def count_formulas(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(formulas)).scalar())

    def links(self, conn: Connection, ids: Iterable[int], how: str) -> list[tuple[int, int]]:
        """Formula links (formula id, id of the formula it depends on): everything upstream
        of ``ids`` (``up``), downstream of them (``down``), or the links touching them
        (``near``)."""
        ids = sorted(set(ids))
        if not ids:
            return []
        if how in ("up", "down"):
            q = closure_sql(formula_links.name, how == "up")
            return [(a, b) for a, b in conn.execute(q, {"start": ids})]
        lk = formula_links.c
        if len(ids) > _SCAN:
            wanted = set(ids)
            return [(a, b) for a, b in conn.execute(select(lk.node_id, lk.depends_on_id))
                    if a in wanted or b in wanted]
        out: list[tuple[int, int]] = []
        for chunk in _chunks(ids):
            q = select(lk.node_id, lk.depends_on_id).where(
                or_(lk.node_id.in_(chunk), lk.depends_on_id.in_(chunk)))
            out += [(a, b) for a, b in conn.execute(q)]
        return out

    def item_links(self, conn: Connection, formula_ids: Iterable[int]) -> list[tuple[int, str]]:
        """(formula id, item name) of every item the formulas reference."""
        formula_ids = set(formula_ids)
        if len(formula_ids) > _SCAN:
            q = (select(formula_items.c.formula_id, items.c.name)
                 .join(items, items.c.id == formula_items.c.item_id))
            return [(a, b) for a, b in conn.execute(q) if a in formula_ids]
        out: list[tuple[int, str]] = []
        for chunk in _chunks(formula_ids):
            q = (select(formula_items.c.formula_id, items.c.name)
                 .join(items, items.c.id == formula_items.c.item_id)
                 .where(formula_items.c.formula_id.in_(chunk)))
            out += [(a, b) for a, b in conn.execute(q)]
        return out

    def item_users(self, conn: Connection, item_ids: Iterable[int]) -> list[int]:
        """Ids of the formulas that reference the items directly."""
        out: list[int] = []
        for chunk in _chunks(item_ids):
            q = (select(formula_items.c.formula_id).distinct()
                 .where(formula_items.c.item_id.in_(chunk)))
            out += list(conn.execute(q).scalars())
        return out

    def insert_formulas(self, conn: Connection, rows: list[dict]) -> dict[str, int]:
        """Insert new formulas (in the given order: ids follow it) -> name -> id."""
        if not rows:
            return {}
        at = now()
        conn.execute(insert(formulas), [
            {**r, "canonical_key": canonical_key(r["canonical"]), "updated_at": at}
            for r in rows])
        out: dict[str, int] = {}
        names = [r["name"] for r in rows]
        for i in range(0, len(names), _CHUNK):
            q = select(formulas.c.name, formulas.c.id).where(
                formulas.c.name.in_(names[i:i + _CHUNK]))
            out.update((n, fid) for n, fid in conn.execute(q))
        return out

    def update_formulas(self, conn: Connection, changes: list[tuple[int, dict]]) -> None:
        """Update formulas: (id, new column values); one statement per set of columns."""
        at = now()
        groups: dict[tuple[str, ...], list[dict]] = {}
        for fid, values in changes:
            values = dict(values, updated_at=at)
            if "canonical" in values:
                values["canonical_key"] = canonical_key(values["canonical"])
            groups.setdefault(tuple(sorted(values)), []).append({"_id": fid, **values})
        for cols, params in groups.items():
            stmt = (update(formulas).where(formulas.c.id == bindparam("_id"))
                    .values({c: bindparam(c) for c in cols}))
            conn.execute(stmt, params)

    def replace_references(self, conn: Connection,
                           refs: dict[int, tuple[list[int], list[int]]]) -> None:
        """Replace the stored edges of formulas: id -> (formula ids, item ids) it references.
        The save has checked the graph for cycles (one search over what it reaches,
        ``saving.check``)."""
        fids = list(refs)
        for chunk in _chunks(fids):
            conn.execute(delete(formula_links).where(formula_links.c.node_id.in_(chunk)))
            conn.execute(delete(formula_items).where(formula_items.c.formula_id.in_(chunk)))
        links = [{"node_id": f, "depends_on_id": d}
                 for f, (fs, _) in refs.items() for d in dict.fromkeys(fs)]
        uses = [{"formula_id": f, "item_id": i}
                for f, (_, its) in refs.items() for i in dict.fromkeys(its)]
        if links:
            conn.execute(insert(formula_links), links)
        if uses:
            conn.execute(insert(formula_items), uses)

    def add_history_rows(self, conn: Connection, rows: list[dict]) -> None:
        if rows:
            at = now()
            conn.execute(insert(formula_history), [dict(r, changed_at=at) for r in rows])

    def count_items(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(items)).scalar())


def _since(since):
    """``stale_since`` after a mark from ``since`` on (None: the first period): the earlier
    of the two, where the formula was stale already. (Assigned before ``state``: MariaDB
    evaluates a SET list left to right.)"""
    c = formulas.c
    was_stale = c.state.in_([str(FormulaState.STALE), str(FormulaState.PARTIAL)])
    if since is None:
        return null()
    day = literal(_date(np.datetime64(since, "D")), Date)
    return case((~was_stale, day), (c.stale_since.is_(None), null()),
                (c.stale_since < day, c.stale_since), else_=day)
