"""The catalog and data store: every SQL statement of tracecalc lives in this package.

``Store`` holds a SQLAlchemy engine; each method takes the ``Connection`` of the caller's
transaction, so the engine layer decides what is atomic (a rejected save changes nothing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import (
    Connection,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from tracecalc.errors import DatabaseError, DataError, clip, plural
from tracecalc.model import FormulaState, Frequency
from tracecalc.storage import bulk, checks, migrations
from tracecalc.storage.files import DataBatch, infer_frequency
from tracecalc.storage.locks import RecalcLock, lock_catalog, verify
from tracecalc.storage.schema import (
    Formula,
    FormulaLink,
    data_points,
    digests,
    entities,
    formula_history,
    formula_items,
    formula_links,
    formulas,
    items,
    periods,
    records,
    run_formulas,
    runs,
    stale_entities,
)
from tracecalc.storage.trace import TraceGraph

DEFAULT_URL = "sqlite:///tracecalc.db"


def normalise_url(url: str) -> str:
    """Pick the drivers tracecalc ships with when the URL names only the database."""
    try:
        u = make_url(url)
    except ArgumentError:
        hint = (f"; for a SQLite file write sqlite:///{url}" if "://" not in url
                else " (like sqlite:///file.db, postgresql://user@host/db or "
                     "mysql://user@host/db)")
        raise DatabaseError(f"'{mask_url(url)}' is not a database URL{hint}") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername in ("mysql", "mariadb"):
        u = u.set(drivername="mysql+pymysql")
    return u.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """A URL as it may be shown: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even parseable: mask what looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class Store:
    """Tables and bulk paths of one tracecalc database."""

    def __init__(self, url: str = DEFAULT_URL, *, create: bool = True, check: bool = True):
        """Open a tracecalc database; ``create`` makes it (and its tables) when missing,
        else a missing database is an error and nothing is written on opening.
        ``check=False`` leaves the tables unread (``tracecalc db`` reads them itself)."""
        self.url = normalise_url(url)
        u = make_url(self.url)
        kwargs: dict = {}
        if u.get_backend_name() == "mysql":
            kwargs["connect_args"] = {"local_infile": True}
        elif u.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
            if u.database in (None, "", ":memory:"):
                # One shared connection: every thread (recalc does its I/O on its own
                # thread) must see the same in-memory database.
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"]["check_same_thread"] = False
        try:
            self.engine = create_engine(self.url, **kwargs)
        except Exception as e:  # unknown dialect, driver missing
            raise DatabaseError(f"cannot open database '{mask_url(url)}': "
                                f"{' '.join(str(e).split())}") from None
        self.dialect = self.engine.dialect.name
        # what a failing statement raises: SQLAlchemy's wrapper, or (bulk paths work on the
        # driver's cursor) the driver's own exception
        self._db_errors = (DBAPIError, self.engine.dialect.loaded_dbapi.Error)
        self.sqlite_path = None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
            if u.database not in (None, "", ":memory:"):
                path = u.database
                if u.query.get("uri") == "true" and path.startswith("file:"):
                    path = path[5:]  # sqlite:///file:x.db?mode=ro&uri=true
                self.sqlite_path = os.path.abspath(path)
                if not create and not os.path.exists(self.sqlite_path):
                    # connecting would create an empty file: a typo must not do that
                    raise DatabaseError(
                        f"no tracecalc database at {self.sqlite_path}; check --db (or "
                        "TRACECALC_DB), or create one with tracecalc init")
        if check:
            self.open_schema(create)

    def open_schema(self, create: bool) -> None:
        """Check the tables (a read, so read-only databases open); create or upgrade them
        only with ``create`` (see ``tracecalc.storage.migrations``)."""
        migrations.open_schema(self, create)

    @property
    def worker_url(self) -> str:
        """The URL another process opens this database with (SQLite: an absolute path)."""
        if self.sqlite_path is not None:
            return make_url(self.url).set(database=self.sqlite_path).render_as_string(
                hide_password=False)
        return self.url

    @property
    def shareable(self) -> bool:
        """Whether several connections see the same database (not in-memory SQLite)."""
        return self.dialect != "sqlite" or self.sqlite_path is not None

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self, write: bool = True, snapshot: bool = False) -> Iterator[Connection]:
        """One transaction. On SQLite a writing one begins IMMEDIATE: it takes the write
        lock up front, so writers queue (busy timeout 30 s) instead of failing to upgrade.
        With ``snapshot`` every statement sees the same commits (PostgreSQL's default gives
        each statement its own; SQLite and MariaDB transactions are snapshots already).
        A database failure leaves it rolled back and raises a one-line ``DatabaseError``."""
        try:
            with self.engine.connect() as conn:
                conn.info["tc_write"] = write
                with conn.begin():
                    if snapshot and conn.dialect.name == "postgresql":
                        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield conn
        except self._db_errors as e:  # one line for the user, the cause chained
            raise checks.database_error(e, self.where) from e

    @property
    def where(self) -> str:
        """The database as named in messages (a SQLite file's path)."""
        return self.sqlite_path or self.safe_url

    def guard(self):
        """A block whose driver errors become one-line ``DatabaseError``s."""
        return checks.driver_errors(self.engine)

    def integrity_check(self) -> checks.DatabaseCheck:
        """The database's own check of its files (see ``checks``)."""
        return checks.integrity_check(self.engine)

    def lock_catalog(self, conn: Connection) -> None:
        lock_catalog(conn)

    def lock_for_run(self, conn: Connection, holder: int | None) -> None:
        """First in each transaction a recalculation commits: the catalog lock, then the
        proof that the run still holds its recalculation lock (``RecalcLock.holder``).

        Raises:
            LockLostError: the lock went with its connection (see ``locks``).
        """
        lock_catalog(conn)
        verify(conn, holder)

    def current_marks(self, conn: Connection, formula_id: int) -> tuple[int, int] | None:
        """(version, stale_seq) of a formula; None if it was deleted."""
        q = select(formulas.c.version, formulas.c.stale_seq).where(formulas.c.id == formula_id)
        row = conn.execute(q).first()
        return None if row is None else (row.version, row.stale_seq)

    def recalc_lock(self) -> RecalcLock:
        return RecalcLock(self.engine, self.sqlite_path)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- items, entities, periods -------------------------------------------------------------

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

    def calendar(self, conn: Connection, frequency: str) -> np.ndarray:
        q = (select(periods.c.period).where(periods.c.frequency == frequency)
             .order_by(periods.c.period))
        vals = conn.execute(q).scalars().all()
        return np.array(vals, dtype="datetime64[D]")

    def add_periods(self, conn: Connection, frequency: str,
                    new: Iterable[np.datetime64]) -> np.ndarray:
        """Extend a frequency's calendar; returns the periods that were new (sorted)."""
        have = self.calendar(conn, frequency)
        added = np.setdiff1d(np.asarray(list(new) if not isinstance(new, np.ndarray) else new,
                                        dtype="datetime64[D]"), have)
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
        """Drop from a frequency's calendar the ``candidates`` no data point of that
        frequency is at any more, and the formula records at them (no panel has a row there
        now, so no run would ever delete them). Returns the periods removed (sorted)."""
        cands = np.intersect1d(np.asarray(candidates, dtype="datetime64[D]"),
                               self.calendar(conn, frequency))
        if len(cands) == 0:
            return cands
        same = select(items.c.id).where(items.c.frequency == frequency)
        users = select(formulas.c.id).where(formulas.c.frequency == frequency)
        # one probe per date, which stops at its first data point (the usual answer: a date
        # rarely leaves), rather than one scan of every point of the frequency
        gone = [d for d in cands.tolist() if conn.execute(
            select(data_points.c.period).where(data_points.c.item_id.in_(same),
                                               data_points.c.period == d).limit(1)).first()
            is None]
        if gone:
            self.forget_digests(conn, frequency)
        for i in range(0, len(gone), 500):
            chunk = gone[i:i + 500]
            conn.execute(delete(periods).where(periods.c.frequency == frequency,
                                               periods.c.period.in_(chunk)))
            conn.execute(delete(records).where(records.c.formula_id.in_(users),
                                               records.c.period.in_(chunk)))
        return np.array(gone, dtype="datetime64[D]")

    # -- data points --------------------------------------------------------------------------

    def read_item(self, conn: Connection, item_id: int, entity_ids=None) -> bulk.Rows:
        return bulk.read_rows(conn, data_points, "item_id", item_id, entity_ids)

    def insert_data(self, conn, item_id, entity_ids, pers, values) -> int:
        return bulk.insert_rows(conn, data_points, "item_id", item_id, entity_ids, pers, values)

    def update_data(self, conn, item_id: int, entity_ids, pers, values) -> None:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        p = bulk.period_params(conn, pers)
        cur = conn.connection.cursor()
        try:
            cur.executemany(
                f"UPDATE {data_points.name} SET value = {mark} WHERE item_id = {mark} "
                f"AND entity_id = {mark} AND period = {mark}",
                list(zip(values.tolist(), [int(item_id)] * len(p), entity_ids.tolist(), p)))
        finally:
            cur.close()

    def delete_data(self, conn, item_id: int, entity_ids, pers) -> int:
        return bulk.delete_keys(conn, data_points, "item_id", item_id, entity_ids, pers)

    def delete_item(self, conn: Connection, item_id: int) -> None:
        """Delete an item and all its points (no formula may reference it)."""
        bulk.delete_entities(conn, data_points, "item_id", item_id, None)
        conn.execute(delete(items).where(items.c.id == item_id))

    def load_batch(self, conn: Connection, batch: DataBatch, declared: dict[str, Frequency],
                   *, allow_new_entities: bool = True, progress=None) -> LoadChanges:
        """Upsert a checked batch: new items and entities, then per item only the points
        whose value changed (inserted, updated, or deleted where the new value is empty);
        then the calendars gain the new periods and lose those no data is at any more.
        ``progress(rows done, rows, what)`` is told before each item is written."""
        out = LoadChanges()
        known = self.items(conn)
        codes = self.entity_ids(conn)
        uniq_codes, inv = np.unique(batch.entities.astype(str), return_inverse=True)
        new_codes = [c for c in uniq_codes.tolist() if c not in codes]
        if new_codes and not allow_new_entities:
            first = int(np.argmax(np.isin(uniq_codes, new_codes)[inv]))  # in file order
            code = str(uniq_codes[inv[first]])
            listed = ", ".join(new_codes[:3]) + (", ..." if len(new_codes) > 3 else "")
            raise DataError(
                f"unknown entity {clip(code)} ({plural(len(new_codes), 'new entity')} in the file: "
                f"{listed}); load them first (load-entities), or allow new entities (without "
                "--no-new-entities)", row=first + 2, source=batch.source)
        if new_codes:
            codes = self.add_entities(conn, new_codes)
        out.new_entity_codes = new_codes
        out.new_entities = len(new_codes)
        out.new_entity_ids = np.sort(np.array([codes[c] for c in new_codes], dtype=np.int64))
        all_eids = np.array([codes[c] for c in uniq_codes.tolist()], dtype=np.int64)[inv]
        order = np.argsort(batch.items, kind="stable")
        names, starts = np.unique(batch.items[order], return_index=True)
        bounds = list(starts[1:]) + [len(order)]
        present: dict[str, list[np.ndarray]] = {}  # frequency -> periods with data now
        emptied: dict[str, list[np.ndarray]] = {}  # frequency -> periods that lost points
        for name, lo, hi in zip(names.tolist(), starts.tolist(), bounds):
            if progress is not None:
                progress(lo, len(order), f"writing {name}")
            idx = order[lo:hi]
            eids, pers, vals = all_eids[idx], batch.periods[idx], batch.values[idx]
            out.items.append(name)
            if name in known:
                item_id, freq = known[name]
                if name in declared and declared[name] != freq:
                    raise DataError(f"item '{name}' is {freq}; the file declares "
                                    f"{declared[name]}", source=batch.source)
            else:
                freq = declared.get(name) or infer_frequency(pers[~np.isnan(vals)])
                if freq is None:
                    raise DataError(
                        f"cannot infer the frequency of new item '{name}' from its periods; "
                        "declare it (a 'frequency' column, or --frequency "
                        f"{name}=quarterly)", source=batch.source)
                item_id = self.add_item(conn, name, str(freq))
                known[name] = (item_id, str(freq))
                out.new_items.append(name)
            changed, deleted = self._upsert_item(conn, item_id, eids, pers, vals)
            if len(changed):
                out.changed_items.append(name)
                out.changed_entities[name] = changed
                present.setdefault(str(freq), []).append(pers[~np.isnan(vals)])
            if len(deleted):
                emptied.setdefault(str(freq), []).append(deleted)
        if progress is not None:
            progress(len(order), len(order), "updating the calendars")
        for freq, parts in present.items():
            before = self.calendar(conn, freq)
            added = self.add_periods(conn, freq, np.unique(np.concatenate(parts)))
            if len(added):
                out.grown_calendars.add(freq)
                out.added_periods[freq] = added
                out.calendars_before[freq] = before
        for freq, parts in emptied.items():
            removed = self.prune_periods(conn, freq, np.unique(np.concatenate(parts)))
            if len(removed):
                out.removed_periods[freq] = removed
        return out

    def _upsert_item(self, conn, item_id: int, eids, pers, vals
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Write what differs from the stored points; returns the entity ids that changed
        and the periods of the points deleted."""
        vals = bulk.canonical_zero(vals)
        old_e, old_p, old_v = self.read_item(conn, item_id)
        new_k = _point_key(eids, pers)
        present = ~np.isnan(vals)
        if len(old_v) == 0:
            self.insert_data(conn, item_id, eids[present], pers[present], vals[present])
            return np.unique(eids[present]), pers[:0]
        old_k = _point_key(old_e, old_p)
        sorter = np.argsort(old_k)
        pos = np.searchsorted(old_k, new_k, sorter=sorter)
        pos = np.minimum(pos, len(old_k) - 1)
        hit = old_k[sorter[pos]] == new_k
        old_val = np.where(hit, old_v[sorter[pos]], np.nan)
        same_bits = old_val.view(np.int64) == vals.view(np.int64)
        ins = present & ~hit
        upd = present & hit & ~same_bits
        dele = ~present & hit
        self.insert_data(conn, item_id, eids[ins], pers[ins], vals[ins])
        if upd.any():
            self.update_data(conn, item_id, eids[upd], pers[upd], vals[upd])
        if dele.any():
            self.delete_data(conn, item_id, eids[dele], pers[dele])
        return np.unique(eids[ins | upd | dele]), np.unique(pers[dele])

    def count_data(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(data_points)).scalar())

    # -- formulas and the graph ---------------------------------------------------------------

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

    def clear_records(self, conn: Connection, formula_id: int) -> None:
        """Delete a formula's records and their digests."""
        conn.execute(delete(records).where(records.c.formula_id == formula_id))
        conn.execute(delete(digests).where(digests.c.formula_id == formula_id))

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

    def item_summary(self, conn: Connection, item_id: int) -> tuple:
        """(points, entities, first period, last period) of a data item."""
        c = data_points.c
        q = (select(func.count(), func.count(c.entity_id.distinct()), func.min(c.period),
                    func.max(c.period)).where(c.item_id == item_id))
        n, ents, lo, hi = conn.execute(q).one()
        return int(n), int(ents), _date(lo), _date(hi)

    def formulas_using_items(self, conn: Connection, item_names: list[str]) -> list[int]:
        if not item_names:
            return []
        q = (select(formula_items.c.formula_id).distinct()
             .join(items, items.c.id == formula_items.c.item_id)
             .where(items.c.name.in_(item_names)))
        return list(conn.execute(q).scalars())

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

    # -- records ------------------------------------------------------------------------------

    def read_records(self, conn: Connection, formula_id: int, entity_ids=None) -> bulk.Rows:
        return bulk.read_rows(conn, records, "formula_id", formula_id, entity_ids)

    def write_diff(self, conn: Connection, formula_id: int, new_rows: bulk.Rows,
                   gone_rows: tuple[np.ndarray, np.ndarray], replace_entities,
                   replace: bool) -> None:
        """Apply a formula's changed cells. ``new_rows`` are inserted; ``gone_rows`` (entity,
        period) are deleted first. With ``replace``, every stored row of
        ``replace_entities`` (None: of the formula) is deleted instead: when most cells
        changed, one range delete and a bulk insert beat row-by-row rewrites."""
        if replace:
            bulk.delete_entities(conn, records, "formula_id", formula_id, replace_entities)
        elif len(gone_rows[0]):
            bulk.delete_keys(conn, records, "formula_id", formula_id, *gone_rows)
        bulk.insert_rows(conn, records, "formula_id", formula_id, *new_rows)

    def read_digests(self, conn: Connection, formula_id: int, entity_ids) -> np.ndarray:
        """Stored digests of a formula at ``entity_ids`` (sorted), 0 where there is none."""
        eids, got = bulk.read_pairs(conn, digests, "formula_id", formula_id, "digest",
                                    entity_ids)
        out = np.zeros(len(entity_ids), dtype=np.int64)
        if len(eids):
            pos = np.searchsorted(entity_ids, eids)
            out[pos] = got
        return out

    def write_digests(self, conn: Connection, formula_id: int, entity_ids: np.ndarray,
                      values: np.ndarray, everything: bool) -> None:
        """Replace a formula's digests at ``entity_ids`` (every stored one with
        ``everything``)."""
        bulk.delete_entities(conn, digests, "formula_id", formula_id,
                             None if everything else entity_ids)
        bulk.insert_pairs(conn, digests, ("formula_id", "entity_id", "digest"), formula_id,
                          entity_ids, values)

    def read_records_range(self, conn: Connection, formula_id: int, lo: int,
                           hi: int) -> bulk.Rows:
        """A formula's records of the entity ids in [lo, hi], existing entities or not."""
        return bulk.read_range(conn, records, "formula_id", formula_id, lo, hi)

    def read_digests_range(self, conn: Connection, formula_id: int, lo: int,
                           hi: int) -> tuple[np.ndarray, np.ndarray]:
        return bulk.read_pairs_range(conn, digests, "formula_id", formula_id, "digest", lo, hi)

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

    # -- runs ---------------------------------------------------------------------------------

    def mark_interrupted_runs(self, conn: Connection) -> int:
        """Runs still 'running' while we hold the recalculation lock died on the way."""
        res = conn.execute(update(runs).where(runs.c.status == "running").values(
            status="interrupted", message="the process stopped before the run finished"))
        return res.rowcount

    def start_run(self, conn: Connection, kind: str, user: str) -> int:
        res = conn.execute(insert(runs).values(kind=kind, started_at=now(), status="running",
                                               formulas_computed=0, records_written=0,
                                               run_by=user))
        return int(res.inserted_primary_key[0])

    def finish_run(self, conn: Connection, run_id: int, status: str, computed: int,
                   written: int, unchanged: int, message: str | None = None) -> None:
        conn.execute(update(runs).where(runs.c.id == run_id).values(
            finished_at=now(), status=status, formulas_computed=computed,
            records_written=written, records_unchanged=unchanged, message=message))

    def log_formula_run(self, conn: Connection, run_id: int, version: int, stats) -> None:
        conn.execute(insert(run_formulas).values(
            run_id=run_id, formula_name=stats.name, version=version, entities=stats.entities,
            records_written=stats.records_written, records_unchanged=stats.records_unchanged,
            seconds=stats.seconds))

    def run_formulas(self, conn: Connection, run_id: int) -> list[dict]:
        q = select(run_formulas).where(run_formulas.c.run_id == run_id)
        return [dict(r._mapping) for r in conn.execute(q)]

    def runs(self, conn: Connection, limit: int = 20) -> list[dict]:
        q = select(runs).order_by(runs.c.id.desc()).limit(limit)
        return [_utc(r, "started_at", "finished_at") for r in conn.execute(q)]


@dataclass
class LoadChanges:
    items: list[str] = field(default_factory=list)
    new_items: list[str] = field(default_factory=list)
    new_entities: int = 0
    new_entity_codes: list[str] = field(default_factory=list)  # sorted
    new_entity_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    grown_calendars: set[str] = field(default_factory=set)  # frequencies with new periods
    added_periods: dict[str, np.ndarray] = field(default_factory=dict)  # frequency -> new
    calendars_before: dict[str, np.ndarray] = field(default_factory=dict)  # of grown ones
    removed_periods: dict[str, np.ndarray] = field(default_factory=dict)  # no data left
    changed_items: list[str] = field(default_factory=list)
    changed_entities: dict[str, np.ndarray] = field(default_factory=dict)


def canonical_key(canonical: str) -> str:
    """An indexable digest of a canonical form (the form itself is unbounded text)."""
    return hashlib.sha1(canonical.encode()).hexdigest()


def _utc(row, *columns: str) -> dict:
    """A row as a dict, its timestamps (stored as UTC without a zone) made aware."""
    out = dict(row._mapping)
    for c in columns:
        if out[c] is not None:
            out[c] = out[c].replace(tzinfo=dt.UTC)
    return out


def _date(v) -> dt.date | None:
    """A date column's value (SQLite's driver may hand back text)."""
    if v is None or isinstance(v, dt.date):
        return v.date() if isinstance(v, dt.datetime) else v
    return dt.date.fromisoformat(str(v)[:10])


def _point_key(entity_ids: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One int64 per (entity, period): entity in the high bits, day number (offset) below."""
    days = periods.astype("datetime64[D]").astype(np.int64) + (1 << 23)
    return (entity_ids.astype(np.int64) << 24) | days


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Transactions are begun by _sqlite_begin, not by the driver (SQLAlchemy's recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("tc_write", True) else "BEGIN")
