"""The stored numbers: calendars, data points, formula records, their digests, and
the counts and clean-ups over them (every bulk row goes through ``bulk``)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select

from tracecalc.storage import bulk, calendars, checks
from tracecalc.storage.columns import _date
from tracecalc.storage.schema import (
    data_points,
    digests,
    entities,
    formulas,
    items,
    meta,
    periods,
    record_versions,
    records,
)


class ValuesMixin:
    """Calendars, data points, records, digests, strays, counts (``Store``)."""

    bulk: bulk.BulkWriter  # the database's, chosen once by Store

    def calendar(self, conn: Connection, frequency: str) -> np.ndarray:
        q = (select(periods.c.period).where(periods.c.frequency == frequency)
             .order_by(periods.c.period))
        vals = conn.execute(q).scalars().all()
        return np.array(vals, dtype="datetime64[D]")

    def daily_calendar(self, conn: Connection) -> str:
        """The database's daily calendar: ``weekdays`` or an exchange's code."""
        got = conn.execute(select(meta.c.value).where(meta.c.key == "daily_calendar")).scalar()
        return got or calendars.WEEKDAYS

    def set_daily_calendar(self, conn: Connection, name: str) -> None:
        conn.execute(delete(meta).where(meta.c.key == "daily_calendar"))
        conn.execute(insert(meta), [{"key": "daily_calendar", "value": name}])

    def add_periods(self, conn: Connection, frequency: str, new: Iterable[np.datetime64],
                    have: np.ndarray | None = None) -> np.ndarray:
        """Extend a frequency's calendar (``have``, when the caller read it) to cover ``new``
        (whole grid from its first period to its last, ``storage.calendars``); returns the
        periods that were new (sorted)."""
        have = self.calendar(conn, frequency) if have is None else have
        new = np.asarray(list(new) if not isinstance(new, np.ndarray) else new,
                         dtype="datetime64[D]")
        if len(new) == 0:
            return new
        lo, hi = new.min(), new.max()
        if len(have):
            lo, hi = min(lo, have[0]), max(hi, have[-1])
        full = np.union1d(calendars.grid(frequency, lo, hi, self.daily_calendar(conn)), new)
        added = np.setdiff1d(full, have)
        if len(added):
            conn.execute(insert(periods), [{"frequency": frequency, "period": d}
                                           for d in added.tolist()])
            if len(have) and added[0] < have[-1]:  # not only appended: rows moved
                self.forget_digests(conn, frequency)
        return added

    def forget_digests(self, conn: Connection, frequency: str) -> None:
        """Drop the digests of a frequency's formulas after its calendar changed other than
        at its end: each digest covers an entity's column row by row, so the stored ones
        no longer describe the stored records (a missing digest means "compare the
        records", see tc_digests), and ``verify`` would report them all."""
        users = select(formulas.c.id).where(formulas.c.frequency == frequency)
        conn.execute(delete(digests).where(digests.c.formula_id.in_(users)))

    def prune_periods(self, conn: Connection, frequency: str, candidates) -> np.ndarray:
        """Shrink a frequency's calendar after ``candidates`` lost data points: it keeps
        every grid date from the first data point of that frequency to the last, so only
        dates beyond those go, with the formula records at them (no panel has a row there
        now, so no run would ever delete them). Returns the periods removed (sorted)."""
        cal = self.calendar(conn, frequency)
        cands = np.intersect1d(np.asarray(candidates, dtype="datetime64[D]"), cal)
        if len(cands) == 0 or (cands[0] > cal[0] and cands[-1] < cal[-1]):
            return cands[:0]  # inside the calendar: a missing value now
        same = select(items.c.id).where(items.c.frequency == frequency)
        c = data_points.c
        lo, hi = conn.execute(select(func.min(c.period), func.max(c.period))
                              .where(c.item_id.in_(same))).one()
        keep = np.zeros(len(cal), bool) if lo is None else \
            (cal >= np.datetime64(_date(lo), "D")) & (cal <= np.datetime64(_date(hi), "D"))
        keep |= np.isin(cal, self._from_finer(conn, frequency))
        return self.drop_periods(conn, frequency, cal[~keep])

    def _from_finer(self, conn: Connection, frequency: str, cal=None, daily=None
                    ) -> np.ndarray:
        """The periods of ``frequency`` that finer calendars complete (``cover_finer``);
        ``cal(f)`` gives a calendar, ``daily`` the daily calendar's name (both read from the
        database by default)."""
        cal = cal or partial(self.calendar, conn)
        daily = daily or self.daily_calendar(conn)
        finer = calendars.FREQUENCIES[:calendars.FREQUENCIES.index(frequency)]
        parts = [calendars.covered(f, cal(f), frequency, daily) for f in finer]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, "datetime64[D]")

    def prune_coarser(self, conn: Connection, frequency: str) -> dict[str, np.ndarray]:
        """After ``frequency``'s calendar shrank, the coarser ones keep only the periods of
        their own data and of what finer calendars still complete; the periods removed."""
        out = {}
        for coarser in calendars.FREQUENCIES[calendars.FREQUENCIES.index(frequency) + 1:]:
            cal = self.calendar(conn, coarser)
            removed = self.prune_periods(conn, coarser, cal[[0, -1]]) if len(cal) else cal
            if len(removed):
                out[coarser] = removed
        return out

    def cover_finer(self, conn: Connection, changed: Iterable[str] = calendars.FREQUENCIES,
                    known: dict[str, np.ndarray] | None = None
                    ) -> dict[str, np.ndarray]:
        """Extend the calendars coarser than the ``changed`` ones over the periods the finer
        ones complete, so that a quarterly formula of daily data (``quarterly_last(close)``)
        has its quarters without any quarterly item. ``known``: calendars the caller has
        (each other one is read once). Returns the periods added per grown frequency."""
        cals, daily = dict(known or {}), self.daily_calendar(conn)

        def cal(f: str) -> np.ndarray:
            if f not in cals:
                cals[f] = self.calendar(conn, f)
            return cals[f]

        out = {}
        lowest = min((calendars.FREQUENCIES.index(f) for f in changed), default=4)
        for frequency in calendars.FREQUENCIES[lowest + 1:]:
            want = self._from_finer(conn, frequency, cal, daily)
            if len(want):
                before = cal(frequency)
                added = self.add_periods(conn, frequency, want, have=before)
                if len(added):
                    out[frequency] = added
                    cals[frequency] = np.union1d(before, added)
        return out

    def drop_periods(self, conn: Connection, frequency: str, days: np.ndarray) -> np.ndarray:
        """Take ``days`` out of a frequency's calendar, with the records at them."""
        gone = np.asarray(days, dtype="datetime64[D]").tolist()
        users = select(formulas.c.id).where(formulas.c.frequency == frequency)
        if gone:
            self.forget_digests(conn, frequency)
        for i in range(0, len(gone), 500):
            chunk = gone[i:i + 500]
            conn.execute(delete(periods).where(periods.c.frequency == frequency,
                                               periods.c.period.in_(chunk)))
            for t in (records, record_versions):
                conn.execute(delete(t).where(t.c.formula_id.in_(users), t.c.period.in_(chunk)))
        return np.array(gone, dtype="datetime64[D]")

    def data_at(self, conn: Connection, frequency: str, day) -> str | None:
        """The name of an item of ``frequency`` with a data point at ``day`` (None: none)."""
        q = (select(items.c.name).join(data_points, data_points.c.item_id == items.c.id)
             .where(items.c.frequency == frequency, data_points.c.period == day).limit(1))
        return conn.execute(q).scalar()

    def read_item(self, conn: Connection, item_id: int, entity_ids=None,
                  periods=None) -> bulk.Rows:
        """An item's points (of ``entity_ids``; of ``periods`` when given: a date, from then
        on, or (first, last), either of them None for open)."""
        if periods is not None and not isinstance(periods, tuple):
            periods = (periods, None)
        return self.bulk.read_rows(conn, data_points, "item_id", item_id, entity_ids, periods)

    def insert_data(self, conn, item_id, entity_ids, pers, values) -> int:
        return self.bulk.insert_rows(conn, data_points, "item_id", item_id, entity_ids, pers,
                                     values)

    def update_data(self, conn, item_id: int, entity_ids, pers, values) -> None:
        self.bulk.update_values(conn, data_points, "item_id", item_id, entity_ids, pers, values)

    def delete_data(self, conn, item_id: int, entity_ids, pers) -> int:
        return self.bulk.delete_keys(conn, data_points, "item_id", item_id, entity_ids, pers)

    def delete_item(self, conn: Connection, item_id: int) -> None:
        """Delete an item and all its points (no formula may reference it)."""
        self.bulk.delete_entities(conn, data_points, "item_id", item_id, None)
        conn.execute(delete(items).where(items.c.id == item_id))

    def count_data(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(data_points)).scalar())

    def item_summary(self, conn: Connection, item_id: int) -> tuple:
        """(points, entities, first period, last period) of a data item."""
        c = data_points.c
        q = (select(func.count(), func.count(c.entity_id.distinct()), func.min(c.period),
                    func.max(c.period)).where(c.item_id == item_id))
        n, ents, lo, hi = conn.execute(q).one()
        return int(n), int(ents), _date(lo), _date(hi)

    def read_records(self, conn: Connection, formula_id: int, entity_ids=None,
                     periods=None) -> bulk.Rows:
        """A formula's records (of ``entity_ids``; of ``periods`` as ``read_item``)."""
        if periods is not None and not isinstance(periods, tuple):
            periods = (periods, None)
        return self.bulk.read_rows(conn, records, "formula_id", formula_id, entity_ids,
                                   periods)

    def write_diff(self, conn: Connection, formula_id: int, new_rows: bulk.Rows,
                   gone_rows: tuple[np.ndarray, np.ndarray], replace_entities,
                   replace: bool) -> None:
        """Apply a formula's changed cells. ``new_rows`` are inserted; ``gone_rows`` (entity,
        period) are deleted first. With ``replace``, every stored row of
        ``replace_entities`` (None: of the formula) is deleted instead: when most cells
        changed, one range delete and a bulk insert beat row-by-row rewrites."""
        if replace:
            self.bulk.delete_entities(conn, records, "formula_id", formula_id, replace_entities)
        elif len(gone_rows[0]):
            self.bulk.delete_keys(conn, records, "formula_id", formula_id, *gone_rows)
        self.bulk.insert_rows(conn, records, "formula_id", formula_id, *new_rows)

    def read_digests(self, conn: Connection, formula_id: int, entity_ids) -> np.ndarray:
        """Stored digests of a formula at ``entity_ids`` (sorted), 0 where there is none."""
        eids, got = self.bulk.read_pairs(conn, digests, "formula_id", formula_id, "digest",
                                         entity_ids)
        out = np.zeros(len(entity_ids), dtype=np.int64)
        if len(eids):
            pos = np.searchsorted(entity_ids, eids)
            out[pos] = got
        return out

    def write_digests(self, conn: Connection, formula_id: int, entity_ids: np.ndarray,
                      values: np.ndarray, everything: bool) -> None:
        """Replace a formula's digests at ``entity_ids`` (every stored one with
        ``everything``); a 0 is no digest (none known: the next run compares records)."""
        self.bulk.delete_entities(conn, digests, "formula_id", formula_id,
                                  None if everything else entity_ids)
        known = np.asarray(values) != 0
        self.bulk.insert_pairs(conn, digests, ("formula_id", "entity_id", "digest"), formula_id,
                               np.asarray(entity_ids)[known], np.asarray(values)[known])

    def read_records_range(self, conn: Connection, formula_id: int, lo: int,
                           hi: int) -> bulk.Rows:
        """A formula's records of the entity ids in [lo, hi], existing entities or not."""
        return self.bulk.read_range(conn, records, "formula_id", formula_id, lo, hi)

    def read_digests_range(self, conn: Connection, formula_id: int, lo: int,
                           hi: int) -> tuple[np.ndarray, np.ndarray]:
        return self.bulk.read_pairs_range(conn, digests, "formula_id", formula_id, "digest",
                                          lo, hi)

    def stored_formula_ids(self, conn: Connection) -> tuple[list[int], list[int]]:
        """The formula ids that have records, and those that have digests."""
        return (checks.key_ids(conn, records.name, "formula_id"),
                checks.key_ids(conn, digests.name, "formula_id"))

    def count_stored(self, conn: Connection, formula_id: int) -> tuple[int, int]:
        """(records, digests) of one formula id."""
        return (checks.count_key(conn, records.name, "formula_id", formula_id),
                checks.count_key(conn, digests.name, "formula_id", formula_id))

    def delete_strays(self, conn: Connection) -> int:
        """Delete records and digests no formula, entity or calendar period accounts for
        (left by a damaged or hand-edited database; tracecalc never writes them). Returns
        the records deleted. Scans every record once."""
        known = {r.id: r.frequency for r in conn.execute(select(formulas.c.id,
                                                                formulas.c.frequency))}
        rec_ids, dig_ids = self.stored_formula_ids(conn)
        gone = 0
        for fid in sorted(set(rec_ids) | set(dig_ids)):
            if fid not in known:
                gone += conn.execute(delete(records).where(records.c.formula_id == fid)
                                     ).rowcount
                conn.execute(delete(digests).where(digests.c.formula_id == fid))
                continue
            in_calendar = select(periods.c.period).where(periods.c.frequency == known[fid])
            gone += conn.execute(delete(records).where(
                records.c.formula_id == fid,
                records.c.entity_id.not_in(select(entities.c.id))
                | records.c.period.not_in(in_calendar))).rowcount
        conn.execute(delete(digests).where(digests.c.entity_id.not_in(select(entities.c.id))))
        return int(gone)

    def count_records(self, conn: Connection, formula_id: int | None = None) -> int:
        q = select(func.count()).select_from(records)
        if formula_id is not None:
            q = q.where(records.c.formula_id == formula_id)
        return int(conn.execute(q).scalar())

    def clear_records(self, conn: Connection, formula_id: int) -> None:
        """Delete a formula's records, their versions and their digests."""
        conn.execute(delete(records).where(records.c.formula_id == formula_id))
        conn.execute(delete(record_versions).where(record_versions.c.formula_id == formula_id))
        conn.execute(delete(digests).where(digests.c.formula_id == formula_id))
