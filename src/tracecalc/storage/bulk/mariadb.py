"""MariaDB's (and MySQL's) bulk path: LOAD DATA LOCAL INFILE from a temporary CSV file
(~270k rows/s)."""

from __future__ import annotations

import os
import tempfile
from itertools import repeat

import numpy as np
from sqlalchemy import Connection, Table

from tracecalc.storage.bulk.base import BulkWriter, period_strings


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
