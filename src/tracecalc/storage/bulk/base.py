"""What every database's bulk writer shares: the interface, and the operations whose SQL
is the same everywhere (reads of integer pairs, deletes, value updates)."""

from __future__ import annotations

from itertools import repeat

import numpy as np
from sqlalchemy import Connection, Table

SLICE_ROWS = 100_000  # rows turned into Python objects at a time: bounds memory
MAX_IN_LIST = 1000  # entity ids written into one IN (...) list; more: scan and filter

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # entity ids, periods (datetime64[D]), values


class BulkWriter:
    """Bulk paths of one database. Every method takes a SQLAlchemy ``Connection`` and works
    on its DBAPI connection inside the caller's transaction; table and column names are
    ours (never user text) and every value is bound or binary-encoded."""

    name = ""
    mark = "%s"  # the driver's parameter marker

    def insert_rows(self, conn: Connection, table: Table, key_col: str, keys,
                    entity_ids: np.ndarray, periods: np.ndarray, values: np.ndarray) -> int:
        """Insert rows; ``keys`` is one id for all rows or an array. Returns the row count."""
        n = len(values)
        if n == 0:
            return 0
        keys = np.broadcast_to(np.asarray(keys, dtype=np.int64), (n,))
        values = canonical_zero(values)
        self._insert(conn, table.name, (key_col, "entity_id", "period", "value"), keys,
                     entity_ids, periods, values)
        return n

    def _insert(self, conn, table: str, cols, keys, entity_ids, periods, values) -> None:
        for lo in range(0, len(values), SLICE_ROWS):
            hi = lo + SLICE_ROWS
            self._insert_slice(conn, table, cols, keys[lo:hi], entity_ids[lo:hi],
                               periods[lo:hi], values[lo:hi])

    def _insert_slice(self, conn, table: str, cols, keys, entity_ids, periods,
                      values) -> None:
        raise NotImplementedError

    def read_rows(self, conn: Connection, table: Table, key_col: str, key: int,
                  entity_ids: np.ndarray | None = None, period_range=None) -> Rows:
        """The (entity, period, value) rows of one key, as numpy arrays; only those of
        ``entity_ids`` when given (a few entities by index look-up, many by one scan), and
        of the periods in ``period_range`` (first, last; days; either may be None: open)
        when given."""
        key = int(key)
        where = f"{key_col} = {key:d}"
        where += _entity_filter(entity_ids)
        if entity_ids is not None and len(entity_ids) == 0:
            return _columns([])
        for op, d in zip((">=", "<="), period_range or ()):
            if d is not None:  # an ISO literal of our own date: every database compares it
                where += f" AND period {op} '{np.datetime_as_string(np.datetime64(d, 'D'))}'"
        rows = self._read_where(conn, table, where)
        if entity_ids is not None and len(entity_ids) > MAX_IN_LIST and \
                len(entity_ids) <= entity_ids.max() - entity_ids.min():  # gaps in the range
            keep = np.isin(rows[0], entity_ids)
            rows = (rows[0][keep], rows[1][keep], rows[2][keep])
        return rows

    def read_range(self, conn: Connection, table: Table, key_col: str, key: int, lo: int,
                   hi: int) -> Rows:
        """The rows of one key whose entity id lies in [lo, hi], whatever entities exist."""
        return self._read_where(conn, table, f"{key_col} = {int(key):d} AND entity_id "
                                             f"BETWEEN {int(lo):d} AND {int(hi):d}")

    # how a SELECT hands back the period, and how its fetched rows become arrays
    _period_sql = "period"

    @staticmethod
    def _to_columns(rows) -> Rows:
        return _columns(rows)

    def _read_where(self, conn: Connection, table: Table, where: str) -> Rows:
        cur = conn.connection.cursor()
        try:
            cur.execute(f"SELECT entity_id, {self._period_sql}, value FROM {table.name} "
                        f"WHERE {where}")
            parts = []
            while batch := cur.fetchmany(SLICE_ROWS):
                parts.append(self._to_columns(batch))
            return (tuple(np.concatenate(p) for p in zip(*parts, strict=True)) if parts
                    else _columns([]))
        finally:
            cur.close()

    def read_pairs_range(self, conn: Connection, table: Table, key_col: str, key: int,
                         value_col: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(entity id, integer value) rows of one key whose entity id lies in [lo, hi]."""
        cur = conn.connection.cursor()
        try:
            cur.execute(f"SELECT entity_id, {value_col} FROM {table.name} WHERE "
                        f"{key_col} = {int(key):d} AND entity_id BETWEEN {int(lo):d} AND "
                        f"{int(hi):d}")
            arr = np.array(cur.fetchall(), dtype=np.int64).reshape(-1, 2)
        finally:
            cur.close()
        return arr[:, 0], arr[:, 1]

    def read_pairs(self, conn: Connection, table: Table, key_col: str, key: int,
                   value_col: str, entity_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entity id, integer value) rows of one key among ``entity_ids``."""
        if len(entity_ids) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        where = f"{key_col} = {int(key):d}" + _entity_filter(entity_ids)
        cur = conn.connection.cursor()
        try:
            cur.execute(f"SELECT entity_id, {value_col} FROM {table.name} WHERE {where}")
            got = cur.fetchall()
        finally:
            cur.close()
        if not got:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        arr = np.array(got, dtype=np.int64).reshape(-1, 2)
        if len(entity_ids) > MAX_IN_LIST:
            arr = arr[np.isin(arr[:, 0], entity_ids)]
        return arr[:, 0], arr[:, 1]

    def insert_pairs(self, conn: Connection, table: Table, cols: tuple[str, str, str],
                     key: int, entity_ids: np.ndarray, values: np.ndarray) -> None:
        """Insert (key, entity id, 64-bit integer) rows."""
        raise NotImplementedError

    def period_params(self, periods: np.ndarray) -> list:
        """Dates as the driver binds them (``datetime.date`` unless the driver wants text)."""
        return periods.astype("datetime64[D]").tolist()

    def delete_entities(self, conn: Connection, table: Table, key_col: str, key: int,
                        entity_ids: np.ndarray | None) -> None:
        """Delete every row of one key (``entity_ids`` None), or of those entities."""
        key = int(key)
        if entity_ids is None:
            conn.exec_driver_sql(f"DELETE FROM {table.name} WHERE {key_col} = {key:d}")
            return
        ids = [int(e) for e in entity_ids]
        for i in range(0, len(ids), MAX_IN_LIST):
            conn.exec_driver_sql(f"DELETE FROM {table.name} WHERE {key_col} = {key:d} AND "
                                 f"entity_id IN ({','.join(map(str, ids[i:i + MAX_IN_LIST]))})")

    def delete_keys(self, conn: Connection, table: Table, key_col: str, key: int,
                    entity_ids: np.ndarray, periods: np.ndarray) -> int:
        """Delete specific (entity, period) rows of one key."""
        if len(entity_ids) == 0:
            return 0
        self._delete_keys(conn, table, key_col, int(key), entity_ids, periods)
        return len(entity_ids)

    def _delete_keys(self, conn, table: Table, key_col: str, key: int, entity_ids, periods
                     ) -> None:
        m = self.mark
        self._each_row(conn, f"DELETE FROM {table.name} WHERE {key_col} = {m} AND "
                             f"entity_id = {m} AND period = {m}",
                       zip(repeat(key), entity_ids.tolist(), self.period_params(periods)))

    def update_values(self, conn: Connection, table: Table, key_col: str, key: int,
                      entity_ids: np.ndarray, periods: np.ndarray, values: np.ndarray) -> None:
        """Set the value of existing (entity, period) rows of one key."""
        if len(entity_ids):
            self._update_values(conn, table, key_col, int(key), entity_ids, periods, values)

    def _update_values(self, conn, table: Table, key_col: str, key: int, entity_ids, periods,
                       values) -> None:
        m = self.mark
        self._each_row(conn, f"UPDATE {table.name} SET value = {m} WHERE {key_col} = {m} "
                             f"AND entity_id = {m} AND period = {m}",
                       zip(values.tolist(), repeat(int(key)), entity_ids.tolist(),
                           self.period_params(periods)))

    @staticmethod
    def _each_row(conn: Connection, sql: str, rows) -> None:
        """One statement for many rows, on the driver's cursor (executemany)."""
        cur = conn.connection.cursor()
        try:
            cur.executemany(sql, list(rows))
        finally:
            cur.close()

    def relaxed_commit(self, conn: Connection) -> None:
        """Let this transaction's commit return before it is durable, where the database
        can (for derived data only: a crash may lose the last commits, never tear them)."""


def canonical_zero(values: np.ndarray) -> np.ndarray:
    """-0.0 becomes 0.0: SQLite and MariaDB do not keep the sign of zero, so no database does."""
    return np.asarray(values, dtype=np.float64) + 0.0


def period_strings(periods: np.ndarray) -> list[str]:
    """ISO dates of ``periods``. A panel's periods are a short calendar repeated entity after
    entity, so each distinct day is formatted once (numpy's formatter cost 18% of SQLite's
    write path when it ran on every row)."""
    days = periods.astype("datetime64[D]").astype(np.int64)
    if len(days) == 0:
        return []
    lo, hi = int(days.min()), int(days.max())
    if hi - lo >= len(days):  # few repeats: format each row
        return np.datetime_as_string(periods, unit="D").tolist()
    names = np.datetime_as_string(np.arange(lo, hi + 1).astype("datetime64[D]"), unit="D")
    return names.astype(object)[days - lo].tolist()


def _entity_filter(entity_ids: np.ndarray | None) -> str:
    """SQL narrowing a key's rows to ``entity_ids`` (sorted): an IN list when short, the id
    range when long (the caller drops ids outside the list)."""
    if entity_ids is None or len(entity_ids) == 0:
        return ""
    if len(entity_ids) <= MAX_IN_LIST:
        return f" AND entity_id IN ({','.join(str(int(e)) for e in entity_ids)})"
    return f" AND entity_id BETWEEN {int(entity_ids.min()):d} AND {int(entity_ids.max()):d}"


def _columns(rows) -> Rows:
    """(entity id, date, value) tuples to arrays."""
    if not rows:
        return (np.empty(0, np.int64), np.empty(0, "datetime64[D]"), np.empty(0, np.float64))
    e, p, v = zip(*rows)
    return (np.array(e, dtype=np.int64), np.array(p, dtype="datetime64[D]"),
            np.array(v, dtype=np.float64))
