"""Reading the part of the catalog a job reaches, by formula id (see ``tracecalc.catalog``).

Each query's cost follows the part it returns: a recursive query for closures, ``IN``
lists of at most 500 ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update

from tracecalc.model import FormulaState
from tracecalc.storage.columns import canonical_key, now
from tracecalc.storage.schema import (
    formula_history,
    formula_items,
    formula_links,
    formulas,
    items,
)
from tracecalc.storage.trace import _closure_sql

_CHUNK = 500


def _chunks(ids: Iterable[int]):
    ids = sorted(set(ids))
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


class ScopedReads:
    """The catalog by parts: rows, links and item references of some formulas."""

    def formula_rows_by_id(self, conn: Connection, ids: Iterable[int]) -> dict[int, object]:
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
            q = _closure_sql(formula_links.name, how == "up")
            return [(a, b) for a, b in conn.execute(q, {"start": ids})]
        lk = formula_links.c
        out: list[tuple[int, int]] = []
        for chunk in _chunks(ids):
            q = select(lk.node_id, lk.depends_on_id).where(
                or_(lk.node_id.in_(chunk), lk.depends_on_id.in_(chunk)))
            out += [(a, b) for a, b in conn.execute(q)]
        return out

    def item_links(self, conn: Connection, formula_ids: Iterable[int]) -> list[tuple[int, str]]:
        """(formula id, item name) of every item the formulas reference."""
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
