"""The one place the benchmark calls tracecalc's bulk code (tracecalc.storage.bulk).

The floor measures the database's best raw write path; tracecalc already has it, so the floor
writes through the project's own writer instead of a second hand-written copy. Keep every
call into tracecalc's bulk module here: when that module changes shape, only this file does.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, MetaData, Table

from tracecalc.storage import bulk


def write_rows(conn: Connection, table: str, key_col: str, keys: np.ndarray,
               entity_ids: np.ndarray, periods: np.ndarray, values: np.ndarray) -> int:
    """Insert (key, entity id, period, value) rows into ``table`` inside the caller's
    transaction, on the dialect's fastest path (SQLite multi-row VALUES, PostgreSQL binary
    COPY, MariaDB LOAD DATA LOCAL INFILE). ``periods`` are datetime64[D]."""
    writer = bulk.for_dialect(conn.dialect)  # one writer per database, as Store holds
    return writer.insert_rows(conn, Table(table, MetaData()), key_col, keys, entity_ids,
                              periods, values)
