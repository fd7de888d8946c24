"""Reading the part of the catalog a job reaches, by formula id (see ``tracecalc.catalog``).

Each query's cost follows the part it returns: a recursive query for closures, ``IN``
lists of at most 500 ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, func, insert, or_, select

from tracecalc.model import FormulaState
from tracecalc.storage.schema import formula_items, formula_links, formulas, items
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

    def write_references(self, conn: Connection, formula_id: int, formula_ids: list[int],
                         item_ids: list[int]) -> None:
        """Replace a formula's stored edges. The save has checked the graph for cycles
        (one search over what it reaches, ``saving.check``)."""
        conn.execute(delete(formula_links).where(formula_links.c.node_id == formula_id))
        deps = list(dict.fromkeys(formula_ids))
        if deps:
            conn.execute(insert(formula_links), [
                {"node_id": formula_id, "depends_on_id": d} for d in deps])
        conn.execute(delete(formula_items).where(formula_items.c.formula_id == formula_id))
        refs = list(dict.fromkeys(item_ids))
        if refs:
            conn.execute(insert(formula_items), [
                {"formula_id": formula_id, "item_id": i} for i in refs])

    def count_items(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(items)).scalar())
