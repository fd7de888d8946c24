"""PostgreSQL's bulk path: COPY in binary format, in (~500k rows/s) and out."""

from __future__ import annotations

import struct

import numpy as np
from sqlalchemy import Connection, Table

from tracecalc.storage.bulk.base import SLICE_ROWS, BulkWriter, Rows

PG_EPOCH = np.datetime64("2000-01-01", "D")

# binary COPY: a fixed-width tuple of int4, int4, date, float8
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_PG_TUPLE = np.dtype([
    ("nf", ">i2"), ("l1", ">i4"), ("k", ">i4"), ("l2", ">i4"), ("e", ">i4"),
    ("l3", ">i4"), ("d", ">i4"), ("l4", ">i4"), ("v", ">f8"),
])
_PG_OUT = np.dtype([
    ("nf", ">i2"), ("l1", ">i4"), ("e", ">i4"), ("l2", ">i4"), ("d", ">i4"),
    ("l3", ">i4"), ("v", ">f8"),
])
_PG_PAIR = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("k", ">i4"), ("l2", ">i4"), ("e", ">i4"),
                     ("l3", ">i4"), ("v", ">i8")])


class PostgreSQLBulk(BulkWriter):
    name = "postgresql"

    def _insert(self, conn, table, cols, keys, entity_ids, periods, values) -> None:
        days = (periods.astype("datetime64[D]") - PG_EPOCH).astype(np.int64)
        cur = conn.connection.cursor()
        try:
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN "
                          "(FORMAT BINARY)") as cp:
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

    def _read_where(self, conn: Connection, table: Table, where: str) -> Rows:
        cur = conn.connection.cursor()
        chunks = []
        try:
            sql = (f"COPY (SELECT entity_id, period, value FROM {table.name} WHERE {where}) "
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

    def insert_pairs(self, conn: Connection, table: Table, cols: tuple[str, str, str],
                     key: int, entity_ids: np.ndarray, values: np.ndarray) -> None:
        if len(entity_ids) == 0:
            return
        buf = np.empty(len(entity_ids), dtype=_PG_PAIR)
        buf["nf"], buf["l1"], buf["l2"], buf["l3"] = 3, 4, 4, 8
        buf["k"], buf["e"], buf["v"] = key, entity_ids, values
        cur = conn.connection.cursor()
        try:
            with cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN "
                          "(FORMAT BINARY)") as cp:
                cp.write(_PG_HEADER + buf.tobytes() + b"\xff\xff")
        finally:
            cur.close()

    def relaxed_commit(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
