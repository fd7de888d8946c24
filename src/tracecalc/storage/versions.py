"""Versions of values: what a (key, entity, period) was known to be from each date on.

The values tables (tc_data, tc_records) hold the latest version of every cell, which every
latest-view read uses. The versions tables hold every version of the cells whose history is
more than "one value, known at its own period" (a report date, a restatement, a
correction); a cell known once at its period has no row there. See ``merge`` for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, select

from tracecalc.storage.lazy import pandas as pd
from tracecalc.storage.schema import data_versions, record_versions, snapped

CHUNK = 500  # entity ids per IN list


@dataclass(frozen=True)
class Versions:
    """Version rows as arrays: entity id, period, known_at (datetime64[D]) and value
    (float64; NaN: known to be missing from that date)."""

    entity_ids: np.ndarray
    periods: np.ndarray
    known_at: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):  # (entity ids, periods, known_at, values), as tracecalc.pit takes
        return iter((self.entity_ids, self.periods, self.known_at, self.values))

    @staticmethod
    def empty() -> Versions:
        d = np.empty(0, "datetime64[D]")
        return Versions(np.empty(0, np.int64), d, d.copy(), np.empty(0))

    def frame(self):
        return pd.DataFrame({"e": self.entity_ids, "p": self.periods, "k": self.known_at,
                             "v": self.values})

    def known_by(self, day) -> Versions:
        """The versions known by ``day`` (``known_at <= day``)."""
        sel = self.known_at <= day
        return Versions(*(a[sel] for a in self))

    def latest(self):
        """(entity, period, value) of each point's latest version, without the points whose
        latest version is "missing"."""
        order = np.lexsort((self.known_at, self.periods, self.entity_ids))
        e, p, x = self.entity_ids[order], self.periods[order], self.values[order]
        last = np.ones(len(e), bool)
        last[:-1] = (e[1:] != e[:-1]) | (p[1:] != p[:-1])
        keep = last & ~np.isnan(x)
        return e[keep], p[keep], x[keep]

    @staticmethod
    def of(df) -> Versions:
        return Versions(df["e"].to_numpy(np.int64), df["p"].to_numpy("datetime64[D]"),
                        df["k"].to_numpy("datetime64[D]"), df["v"].to_numpy(np.float64))


def diff(old: Versions, new: Versions) -> tuple[Versions, Versions]:
    """The rows to delete and to insert to turn stored version rows ``old`` into ``new``
    (bit for bit; the same (entity, period, known_at) with the same value stays)."""
    cols = ["e", "p", "k"]
    both = old.frame().merge(new.frame(), on=cols, how="outer", suffixes=("_o", "_n"),
                             indicator=True)
    vo, vn = both["v_o"].to_numpy(np.float64), both["v_n"].to_numpy(np.float64)
    differ = (vo.view(np.int64) != vn.view(np.int64)) | (both["_merge"] != "both").to_numpy()
    old_side = differ & (both["_merge"] != "right_only").to_numpy()
    new_side = differ & (both["_merge"] != "left_only").to_numpy()
    return (Versions.of(both[old_side][cols].assign(v=vo[old_side])),
            Versions.of(both[new_side][cols].assign(v=vn[new_side])))


@dataclass(frozen=True)
class Merged:
    """What a load does to one item: the new latest values of the keys it touched (NaN:
    no value now), and the version rows to delete and to insert."""

    entity_ids: np.ndarray
    periods: np.ndarray
    latest: np.ndarray
    drop: Versions
    add: Versions


def merge(old: Versions, latest_rows, new: Versions) -> Merged:
    """Merge loaded versions into the stored ones.

    ``old`` are the stored version rows of the touched keys, ``latest_rows`` the stored
    (entity, period, value) of tc_data for them (a key with no version row has one version,
    known at its period). A loaded (key, known_at) already stored replaces that version
    (a correction); a new known_at adds one (a restatement, or an earlier version arriving
    late); nothing else is dropped. The latest version is the one with the largest
    known_at. A key keeps version rows only while its history is not the trivial one.
    """
    nf = new.frame()
    touched = nf[["e", "p"]].drop_duplicates()
    of = old.frame().merge(touched, on=["e", "p"])
    le, lp, lv = latest_rows
    lf = pd.DataFrame({"e": le, "p": np.asarray(lp, "datetime64[D]"), "v": lv})
    lf = lf.merge(touched, on=["e", "p"])
    implicit = lf.merge(of[["e", "p"]].drop_duplicates(), on=["e", "p"], how="left",
                        indicator=True)
    implicit = implicit[implicit["_merge"] == "left_only"].drop(columns="_merge")
    implicit["k"] = implicit["p"]
    before = pd.concat([of, implicit[["e", "p", "k", "v"]]], ignore_index=True)
    keep = before.merge(nf[["e", "p", "k"]], on=["e", "p", "k"], how="left", indicator=True)
    keep = keep[keep["_merge"] == "left_only"].drop(columns="_merge")
    after = pd.concat([keep, nf], ignore_index=True).sort_values(["e", "p", "k"])
    # "missing" as the first version, known at the period, says nothing: no value yet
    first = after.groupby(["e", "p"], sort=False).cumcount().to_numpy() == 0
    nothing = first & (after["k"] == after["p"]).to_numpy() & after["v"].isna().to_numpy()
    after = after[~nothing]
    last = after.groupby(["e", "p"], sort=False).tail(1)
    gone = touched.merge(last[["e", "p"]], on=["e", "p"], how="left", indicator=True)
    gone = gone[gone["_merge"] == "left_only"].drop(columns="_merge").assign(v=np.nan)
    last = pd.concat([last[["e", "p", "v"]], gone], ignore_index=True)
    count = after.groupby(["e", "p"], sort=False)["k"].transform("size")
    trivial = (count == 1) & (after["k"] == after["p"])
    stored = after[~trivial.to_numpy()]
    drop, add = diff(Versions.of(of), Versions.of(stored))
    return Merged(last["e"].to_numpy(np.int64), last["p"].to_numpy("datetime64[D]"),
                  last["v"].to_numpy(np.float64), drop, add)


class VersionsMixin:
    """Reading and writing version rows and snapped dates (``Store``)."""

    @staticmethod
    def _versions_table(kind: str) -> tuple[Table, str]:
        return (data_versions, "item_id") if kind == "data" else (record_versions,
                                                                   "formula_id")

    def read_versions(self, conn: Connection, kind: str, key: int,
                      entity_ids: np.ndarray | None = None, period=None) -> Versions:
        """The version rows of one item (``kind`` "data") or formula ("records"), of
        ``entity_ids`` (all when None) and ``period`` (all when None)."""
        t, col = self._versions_table(kind)
        q = select(t.c.entity_id, t.c.period, t.c.known_at, t.c.value).where(t.c[col] == key)
        if period is not None:
            q = q.where(t.c.period == period)
        parts = []
        if entity_ids is None:
            parts.append(conn.execute(q).all())
        else:
            ids = np.unique(np.asarray(entity_ids, np.int64)).tolist()
            for i in range(0, len(ids), CHUNK):
                parts.append(conn.execute(q.where(t.c.entity_id.in_(ids[i:i + CHUNK]))).all())
        rows = [r for part in parts for r in part]
        if not rows:
            return Versions.empty()
        e, p, k, v = zip(*rows)
        return Versions(np.array(e, np.int64), np.array(p, "datetime64[D]"),
                        np.array(k, "datetime64[D]"),
                        np.array([np.nan if x is None else x for x in v], np.float64))

    def versioned(self, conn: Connection, kind: str) -> set[int]:
        """The items (``kind`` "data") or formulas ("records") with version rows."""
        t, col = self._versions_table(kind)
        return set(conn.execute(select(t.c[col]).distinct()).scalars().all())

    def every_version(self, conn: Connection, key: int, entity_ids=None,
                      kind: str = "data") -> Versions:
        """Every version of an item's points (or a formula's records): its version rows,
        and a point with none is one version known at its period (what ``asof`` reads)."""
        v = self.read_versions(conn, kind, key, entity_ids)
        e, p, x = (self.read_item if kind == "data" else self.read_records)(conn, key,
                                                                           entity_ids)
        p = np.asarray(p, dtype="datetime64[D]")
        if len(v):
            have = pd.MultiIndex.from_arrays([v.entity_ids, v.periods])
            alone = ~pd.MultiIndex.from_arrays([e, p]).isin(have)
            e, p, x = e[alone], p[alone], x[alone]
        return Versions(np.concatenate([v.entity_ids, e]).astype(np.int64),
                        np.concatenate([v.periods, p]), np.concatenate([v.known_at, p]),
                        np.concatenate([v.values, x]))

    def has_versions(self, conn: Connection, kind: str, key: int) -> bool:
        t, col = self._versions_table(kind)
        return conn.execute(select(t.c[col]).where(t.c[col] == key).limit(1)).first() \
            is not None

    def write_versions(self, conn: Connection, kind: str, key: int, drop: Versions,
                       add: Versions) -> None:
        """Delete the ``drop`` rows (by key), then insert ``add``."""
        t, col = self._versions_table(kind)
        if len(drop):
            stmt = delete(t).where(and_(t.c[col] == key, t.c.entity_id == bindparam("e"),
                                        t.c.period == bindparam("p"),
                                        t.c.known_at == bindparam("k")))
            conn.execute(stmt, [{"e": e, "p": p, "k": k} for e, p, k in zip(
                drop.entity_ids.tolist(), drop.periods.tolist(), drop.known_at.tolist())])
        if len(add):
            conn.execute(insert(t), [
                {col: key, "entity_id": e, "period": p, "known_at": k,
                 "value": None if v != v else v}
                for e, p, k, v in zip(add.entity_ids.tolist(), add.periods.tolist(),
                                      add.known_at.tolist(), add.values.tolist())])

    def delete_versions(self, conn: Connection, kind: str, key: int,
                        entity_ids: np.ndarray | None = None, periods=None) -> None:
        """Every version row of one key (of the given (entity, period) pairs when given)."""
        t, col = self._versions_table(kind)
        tables = (t, snapped) if kind == "data" else (t,)
        if entity_ids is None:
            for table in tables:
                conn.execute(delete(table).where(table.c[col] == key))
            return
        rows = [{"e": e, "p": p} for e, p in zip(np.asarray(entity_ids).tolist(),
                                                 np.asarray(periods, "datetime64[D]").tolist())]
        if rows:
            for table in tables:
                conn.execute(delete(table).where(and_(
                    table.c[col] == key, table.c.entity_id == bindparam("e"),
                    table.c.period == bindparam("p"))), rows)

    def write_snapped(self, conn: Connection, item_id: int, entity_ids, periods,
                      originals) -> None:
        """Keep the original dates of points a load moved onto the calendar."""
        rows = [{"item_id": item_id, "entity_id": e, "period": p, "original": o}
                for e, p, o in zip(np.asarray(entity_ids).tolist(),
                                   np.asarray(periods, "datetime64[D]").tolist(),
                                   np.asarray(originals, "datetime64[D]").tolist())]
        if not rows:
            return
        c = snapped.c
        conn.execute(delete(snapped).where(and_(
            c.item_id == item_id, c.entity_id == bindparam("entity_id"),
            c.period == bindparam("period"))), [{"entity_id": r["entity_id"],
                                                  "period": r["period"]} for r in rows])
        conn.execute(insert(snapped), rows)

    def snapped_from(self, conn: Connection, item_id: int, entity_id: int, period):
        """The original date of a snapped point (None: it was loaded on the calendar)."""
        c = snapped.c
        return conn.execute(select(c.original).where(
            c.item_id == item_id, c.entity_id == entity_id, c.period == period)).scalar()
