"""Entities and their attributes: name, sector (columns of ``tc_entities``) and any other
attribute (``tc_entity_attributes``: industry, country), which formulas group by
(``cs_demean(x, by=industry)``)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, delete, insert, select, update

from tracecalc.functions import group_codes
from tracecalc.storage.schema import entities, entity_attributes

COLUMNS = ("name", "sector")  # attributes held in tc_entities itself
SECTOR = "sector"


class EntitiesMixin:
    """Entity attributes (``Store``)."""

    def set_entity_attributes(self, conn: Connection, rows: list[dict]) -> set[str]:
        """Each row's code, with the values of the columns it has (None: no value; a column
        a row lacks keeps its value). Writes only what differs; returns the attributes
        (``sector`` and the others, not ``name``) whose value changed at some entity."""
        ids = self.entity_ids(conn)
        new = [r["code"] for r in rows if r["code"] not in ids]
        if new:
            ids = self.add_entities(conn, new)
        have = {r.code: (r.name, r.sector) for r in conn.execute(
            select(entities.c.code, entities.c.name, entities.c.sector))}
        extra = {(e, n): v for e, n, v in conn.execute(select(
            entity_attributes.c.entity_id, entity_attributes.c.name, entity_attributes.c.value))}
        changed: set[str] = set()
        gone, added = [], []
        for r in rows:  # only what differs: an unchanged file writes nothing
            eid, old = ids[r["code"]], have.get(r["code"], (None, None))
            cols = {c: r[c] for c in COLUMNS if c in r and r[c] != old[COLUMNS.index(c)]}
            if cols:
                conn.execute(update(entities).where(entities.c.id == eid).values(**cols))
                changed.update(c for c in cols if c != "name")
            for name, value in r.items():
                if name == "code" or name in COLUMNS or extra.get((eid, name)) == value:
                    continue
                changed.add(name)
                if (eid, name) in extra:
                    gone.append((eid, name))
                if value is not None:
                    added.append({"entity_id": eid, "name": name, "value": value})
        for eid, name in gone:
            conn.execute(delete(entity_attributes).where(
                (entity_attributes.c.entity_id == eid) & (entity_attributes.c.name == name)))
        if added:
            conn.execute(insert(entity_attributes), added)
        return changed

    def attribute_names(self, conn: Connection) -> list[str]:
        """The attributes formulas can group by: ``sector`` and every other one some entity
        has, sorted."""
        q = select(entity_attributes.c.name).distinct()
        return sorted({SECTOR, *conn.execute(q).scalars().all()})

    def entities_table(self, conn: Connection) -> tuple[list[dict], list[str]]:
        """Every entity (code, name, sector and its other attributes), in id order, and the
        other attributes' names (sorted)."""
        q = select(entities.c.id, entities.c.code, entities.c.name,
                   entities.c.sector).order_by(entities.c.id)
        out = {r.id: {"code": r.code, "name": r.name, "sector": r.sector}
               for r in conn.execute(q)}
        names: set[str] = set()
        for e, n, v in conn.execute(select(entity_attributes.c.entity_id,
                                           entity_attributes.c.name,
                                           entity_attributes.c.value)):
            out[e][n] = v
            names.add(n)
        return [{**dict.fromkeys(names), **r} for r in out.values()], sorted(names)

    def entity_groups(self, conn: Connection, name: str, ids: np.ndarray) -> np.ndarray:
        """The group codes (``functions.group_codes``) of entities ``ids`` by attribute
        ``name``: one per entity, equal values one code, -1 where it has no value."""
        if name == SECTOR:
            q = select(entities.c.id, entities.c.sector).where(entities.c.sector.is_not(None))
        else:
            q = select(entity_attributes.c.entity_id, entity_attributes.c.value).where(
                entity_attributes.c.name == name)
        value = {e: v for e, v in conn.execute(q)}
        return group_codes([value.get(int(e)) for e in np.asarray(ids).tolist()])
