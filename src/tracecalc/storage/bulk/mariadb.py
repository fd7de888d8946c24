"""MariaDB's (and MySQL's) bulk path: LOAD DATA LOCAL INFILE from a temporary CSV file
(~270k rows/s) in, one text per entity out."""

from __future__ import annotations

import io
import os
import tempfile
from itertools import repeat

import numpy as np
from sqlalchemy import Connection, Table

from tracecalc.storage.bulk.base import BulkWriter, Rows, _columns, period_strings
from tracecalc.storage.lazy import pandas as pd

_TO_DAYS_1970 = 719528  # TO_DAYS('1970-01-01')


class MariaDBBulk(BulkWriter):
    name = "mariadb"

    def _insert_slice(self, conn, table, cols, keys, entity_ids, periods, values) -> None:
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

    def _read_where(self, conn: Connection, table: Table, where: str) -> Rows:
        # PyMySQL decodes every row in Python (~10 us a row: 9-10 s per 1M rows); the server
        # writes each entity's rows as one text instead, which the C CSV parser reads. A
        # DOUBLE prints as the shortest text that reads back as the same double (checked
        # on 400k random bit patterns), so this is exact; values are NOT NULL here.
        cur = conn.connection.cursor()
        try:
            cur.execute("SET SESSION group_concat_max_len = 4294967295")
            cur.execute(f"SELECT GROUP_CONCAT(entity_id, ',', TO_DAYS(period), ',', value "
                        f"SEPARATOR ';') FROM {table.name} WHERE {where} GROUP BY entity_id")
            texts = [r[0] for r in cur.fetchall()]
        finally:
            cur.close()
        if not texts:
            return _columns([])
        text = ";".join(t.decode() if isinstance(t, bytes) else t for t in texts)
        df = pd.read_csv(io.StringIO(text), header=None, names=["e", "d", "v"], lineterminator=";",
                         dtype={"e": np.int64, "d": np.int64, "v": np.float64})
        return (df["e"].to_numpy(np.int64),
                (df["d"].to_numpy(np.int64) - _TO_DAYS_1970).astype("datetime64[D]"),
                df["v"].to_numpy(np.float64))

    def insert_pairs(self, conn: Connection, table: Table, cols: tuple[str, str, str],
                     key: int, entity_ids: np.ndarray, values: np.ndarray) -> None:
        if len(entity_ids) == 0:
            return
        mark = self.mark
        cur = conn.connection.cursor()
        try:  # PyMySQL turns executemany of one INSERT into multi-row statements
            cur.executemany(f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES "
                            f"({mark}, {mark}, {mark})",
                            list(zip(repeat(int(key)), entity_ids.tolist(), values.tolist())))
        finally:
            cur.close()
