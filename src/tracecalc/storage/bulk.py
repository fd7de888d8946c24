"""Bulk movement of (key, entity, period, value) rows through each driver's fastest path.

Measured on these machines (../shared/DESIGN.md): SQLite multi-row VALUES ~800k rows/s
against ~100k for SQLAlchemy executemany; PostgreSQL COPY binary ~500k; MariaDB
LOAD DATA LOCAL INFILE ~270k. All paths run inside the caller's transaction.

Every function takes a SQLAlchemy ``Connection`` and works on its DBAPI connection; table
and column names are ours (never user text) and every value is bound or binary-encoded.
"""

from __future__ import annotations

import os
import struct
import tempfile
from itertools import chain, repeat

import numpy as np
from sqlalchemy import Connection, Table

SQLITE_ROWS_PER_STATEMENT = 1000  # 4,000 bound parameters: well under SQLite's 32,766
SLICE_ROWS = 100_000  # rows turned into Python objects at a time: bounds memory
MAX_IN_LIST = 1000  # entity ids written into one IN (...) list; more: scan and filter
PG_EPOCH = np.datetime64("2000-01-01", "D")
_JULIAN_EPOCH = 2440587.5  # julianday('1970-01-01')

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # entity ids, periods (datetime64[D]), values


def insert_rows(conn: Connection, table: Table, key_col: str, keys, entity_ids: np.ndarray,
                periods: np.ndarray, values: np.ndarray) -> int:
    """Insert rows; ``keys`` is one id for all rows or an array. Returns the row count."""
    n = len(values)
    if n == 0:
        return 0
    keys = np.broadcast_to(np.asarray(keys, dtype=np.int64), (n,))
    values = canonical_zero(values)
    cols = (key_col, "entity_id", "period", "value")
    name = conn.dialect.name
    if name == "postgresql":
        _pg_copy_in(conn, table.name, cols, keys, entity_ids, periods, values)
        return n
    write = _mysql_load if name in ("mysql", "mariadb") else _multirow_values
    for lo in range(0, n, SLICE_ROWS):
        hi = lo + SLICE_ROWS
        write(conn, table.name, cols, keys[lo:hi], entity_ids[lo:hi], periods[lo:hi],
              values[lo:hi])
    return n


def canonical_zero(values: np.ndarray) -> np.ndarray:
    """-0.0 becomes 0.0: SQLite and MariaDB do not keep the sign of zero, so no database does."""
    return np.asarray(values, dtype=np.float64) + 0.0


def read_rows(conn: Connection, table: Table, key_col: str, key: int,
              entity_ids: np.ndarray | None = None) -> Rows:
    """The (entity, period, value) rows of one key, as numpy arrays; only those of
    ``entity_ids`` when given (a few entities by index look-up, many by one scan)."""
    key = int(key)
    where = f"{key_col} = {key:d}"
    where += _entity_filter(entity_ids)
    if entity_ids is not None and len(entity_ids) == 0:
        return _columns([])
    rows = _read_where(conn, table, where)
    if entity_ids is not None and len(entity_ids) > MAX_IN_LIST and \
            len(entity_ids) <= entity_ids.max() - entity_ids.min():  # gaps in the range
        keep = np.isin(rows[0], entity_ids)
        rows = (rows[0][keep], rows[1][keep], rows[2][keep])
    return rows


def read_range(conn: Connection, table: Table, key_col: str, key: int, lo: int,
               hi: int) -> Rows:
    """The rows of one key whose entity id lies in [lo, hi], whatever entities exist."""
    return _read_where(conn, table, f"{key_col} = {int(key):d} AND entity_id BETWEEN "
                                    f"{int(lo):d} AND {int(hi):d}")


def _read_where(conn: Connection, table: Table, where: str) -> Rows:
    if conn.dialect.name == "postgresql":
        return _pg_copy_out(conn, table.name, where)
    sqlite = conn.dialect.name == "sqlite"
    # SQLite keeps dates as ISO text; day numbers computed in SQL are far cheaper than
    # parsing strings in Python (0.36 s per 400k rows measured).
    period = f"CAST(julianday(period) - {_JULIAN_EPOCH} AS INTEGER)" if sqlite else "period"
    cur = conn.connection.cursor()
    try:
        cur.execute(f"SELECT entity_id, {period}, value FROM {table.name} WHERE {where}")
        parts = []
        while batch := cur.fetchmany(SLICE_ROWS):
            parts.append(_numeric_columns(batch) if sqlite else _columns(batch))
        return (tuple(np.concatenate(p) for p in zip(*parts, strict=True)) if parts
                else _columns([]))
    finally:
        cur.close()


def _entity_filter(entity_ids: np.ndarray | None) -> str:
    """SQL narrowing a key's rows to ``entity_ids`` (sorted): an IN list when short, the id
    range when long (the caller drops ids outside the list)."""
    if entity_ids is None or len(entity_ids) == 0:
        return ""
    if len(entity_ids) <= MAX_IN_LIST:
        return f" AND entity_id IN ({','.join(str(int(e)) for e in entity_ids)})"
    return f" AND entity_id BETWEEN {int(entity_ids.min()):d} AND {int(entity_ids.max()):d}"


def read_pairs_range(conn: Connection, table: Table, key_col: str, key: int,
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


def read_pairs(conn: Connection, table: Table, key_col: str, key: int, value_col: str,
               entity_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


_PG_PAIR = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("k", ">i4"), ("l2", ">i4"), ("e", ">i4"),
                     ("l3", ">i4"), ("v", ">i8")])


def insert_pairs(conn: Connection, table: Table, cols: tuple[str, str, str], key: int,
                 entity_ids: np.ndarray, values: np.ndarray) -> None:
    """Insert (key, entity id, 64-bit integer) rows."""
    if len(entity_ids) == 0:
        return
    cur = conn.connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            buf = np.empty(len(entity_ids), dtype=_PG_PAIR)
            buf["nf"], buf["l1"], buf["l2"], buf["l3"] = 3, 4, 4, 8
            buf["k"], buf["e"], buf["v"] = key, entity_ids, values
            with cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN "
                          "(FORMAT BINARY)") as cp:
                cp.write(_PG_HEADER + buf.tobytes() + b"\xff\xff")
        elif conn.dialect.name == "sqlite":
            for lo in range(0, len(entity_ids), SLICE_ROWS):
                e = entity_ids[lo:lo + SLICE_ROWS].tolist()
                _insert_values(conn, table.name, cols, [[int(key)] * len(e), e,
                                                        values[lo:lo + SLICE_ROWS].tolist()])
        else:  # PyMySQL turns executemany of one INSERT into multi-row statements
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            cur.executemany(f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES "
                            f"({mark}, {mark}, {mark})",
                            list(zip(repeat(int(key)), entity_ids.tolist(), values.tolist())))
    finally:
        cur.close()


def period_params(conn: Connection, periods: np.ndarray) -> list:
    """Dates as the driver binds them: ISO text for SQLite, ``datetime.date`` otherwise."""
    if conn.dialect.name == "sqlite":
        return period_strings(periods)
    return periods.astype("datetime64[D]").tolist()


def _numeric_columns(rows: list[tuple]) -> Rows:
    """(entity id, day number, value) tuples to arrays in one pass (np.fromiter over the
    flattened tuples: a fifth of the cost of zip and three np.array calls)."""
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=3 * len(rows))
    flat = flat.reshape(-1, 3)
    return (flat[:, 0].astype(np.int64), flat[:, 1].astype(np.int64).astype("datetime64[D]"),
            np.ascontiguousarray(flat[:, 2]))


def _columns(rows) -> Rows:
    """(entity id, date, value) tuples to arrays."""
    if not rows:
        return (np.empty(0, np.int64), np.empty(0, "datetime64[D]"), np.empty(0, np.float64))
    e, p, v = zip(*rows)
    return (np.array(e, dtype=np.int64), np.array(p, dtype="datetime64[D]"),
            np.array(v, dtype=np.float64))


def _multirow_values(conn, table, cols, keys, entity_ids, periods, values) -> None:
    _insert_values(conn, table, cols, [keys.tolist(), entity_ids.tolist(),
                                       period_strings(periods), values.tolist()])


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


def _insert_values(conn, table: str, cols: tuple[str, ...], columns: list[list]) -> None:
    """Insert rows given column by column (Python lists) with multi-row VALUES statements
    of ``SQLITE_ROWS_PER_STATEMENT`` rows."""
    width = len(cols)
    flat = list(chain.from_iterable(zip(*columns, strict=True)))
    head = f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
    row = "(" + ",".join(["?"] * width) + ")"
    per = SQLITE_ROWS_PER_STATEMENT
    full_sql = head + ",".join([row] * per)
    cur = conn.connection.cursor()
    try:
        n = len(columns[0])
        whole = n - n % per
        for i in range(0, whole, per):
            cur.execute(full_sql, flat[width * i: width * (i + per)])
        if whole < n:
            cur.execute(head + ",".join([row] * (n - whole)), flat[width * whole:])
    finally:
        cur.close()


# PostgreSQL binary COPY: a fixed-width tuple of int4, int4, date, float8.
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_PG_TUPLE = np.dtype([
    ("nf", ">i2"), ("l1", ">i4"), ("k", ">i4"), ("l2", ">i4"), ("e", ">i4"),
    ("l3", ">i4"), ("d", ">i4"), ("l4", ">i4"), ("v", ">f8"),
])


def _pg_copy_in(conn, table, cols, keys, entity_ids, periods, values) -> None:
    days = (periods.astype("datetime64[D]") - PG_EPOCH).astype(np.int64)
    cur = conn.connection.cursor()
    try:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(_PG_HEADER)
            for lo in range(0, len(values), 4 * SLICE_ROWS):  # one COPY, bounded buffers
                hi = lo + 4 * SLICE_ROWS
                buf = np.empty(len(values[lo:hi]), dtype=_PG_TUPLE)
                buf["nf"] = 4
                buf["l1"] = buf["l2"] = buf["l3"] = 4
                buf["l4"] = 8
                buf["k"], buf["e"] = keys[lo:hi], entity_ids[lo:hi]
                buf["d"], buf["v"] = days[lo:hi], values[lo:hi]
                cp.write(buf.tobytes())
            cp.write(b"\xff\xff")
    finally:
        cur.close()


_PG_OUT = np.dtype([
    ("nf", ">i2"), ("l1", ">i4"), ("e", ">i4"), ("l2", ">i4"), ("d", ">i4"),
    ("l3", ">i4"), ("v", ">f8"),
])


def _pg_copy_out(conn, table, where: str) -> Rows:
    cur = conn.connection.cursor()
    chunks = []
    try:
        sql = (f"COPY (SELECT entity_id, period, value FROM {table} WHERE {where}) "
               "TO STDOUT (FORMAT BINARY)")
        with cur.copy(sql) as cp:
            for data in cp:
                chunks.append(bytes(data))
    finally:
        cur.close()
    raw = b"".join(chunks)
    # header: 11-byte signature, flags, extension length (then the extension itself)
    ext = struct.unpack("!i", raw[15:19])[0]
    body = raw[19 + ext: len(raw) - 2]
    arr = np.frombuffer(body, dtype=_PG_OUT)
    return (arr["e"].astype(np.int64), PG_EPOCH + arr["d"].astype("timedelta64[D]"),
            arr["v"].astype(np.float64))


def _mysql_load(conn, table, cols, keys, entity_ids, periods, values) -> None:
    lines = "\n".join(
        f"{k},{e},{d},{v!r}"
        for k, e, d, v in zip(keys.tolist(), entity_ids.tolist(), period_strings(periods),
                              values.tolist())
    )
    fd, path = tempfile.mkstemp(prefix="tracecalc-", suffix=".csv")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(lines)
            f.write("\n")
        cur = conn.connection.cursor()
        try:
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} FIELDS TERMINATED BY ',' "
                f"LINES TERMINATED BY '\\n' ({', '.join(cols)})",
                (path,),
            )
        finally:
            cur.close()
    finally:
        os.unlink(path)


def delete_entities(conn: Connection, table: Table, key_col: str, key: int,
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


def delete_keys(conn: Connection, table: Table, key_col: str, key: int, entity_ids: np.ndarray,
                periods: np.ndarray) -> int:
    """Delete specific (entity, period) rows of one key."""
    if len(entity_ids) == 0:
        return 0
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    p = period_params(conn, periods)
    cur = conn.connection.cursor()
    try:
        cur.executemany(
            f"DELETE FROM {table.name} WHERE {key_col} = {mark} AND entity_id = {mark} "
            f"AND period = {mark}",
            list(zip(repeat(int(key)), entity_ids.tolist(), p)),
        )
    finally:
        cur.close()
    return len(entity_ids)
