"""The floor: the same rows as a cold run, bulk-written on the database's best path."""

from __future__ import annotations

import time

import numpy as np

from . import bulkio
from .databases import create_table, driver_engine

SLICE = 1_000_000  # rows generated and sent at a time (memory stays flat at any size)


def floor(url: str, kind: str, n_entities: int, n_periods: int, n_rows: int,
          read_back: bool = True, key: bool = False) -> dict:
    """Write (and read back) ``n_rows`` rows with the database's best raw path (tracecalc's
    own bulk writer, through ``bulkio``), in one transaction, in primary-key order,
    generated a slice at a time. ``key``: DuckDB's table with the primary key declared
    (tc_records has none there)."""
    rng = np.random.default_rng(1)
    cells = n_entities * n_periods
    eng = driver_engine(url, kind)
    create_table(eng, kind, "floor_records", key=key)

    calendar = np.datetime64("2000-03-31") + (np.arange(n_periods) * 91).astype(
        "timedelta64[D]")

    def rows(lo: int, hi: int):
        idx = np.arange(lo, hi)
        fid = (idx // cells + 1).astype(np.int64)
        eid = (idx % cells // n_periods + 1).astype(np.int64)
        return fid, eid, calendar[idx % n_periods], rng.normal(size=hi - lo)

    try:
        t0 = time.perf_counter()
        with eng.begin() as conn:
            for lo in range(0, n_rows, SLICE):
                bulkio.write_rows(conn, "floor_records", "formula_id",
                                  *rows(lo, min(n_rows, lo + SLICE)))
        write = time.perf_counter() - t0
        read = None
        with eng.begin() as conn:
            cur = conn.connection.cursor()
            if read_back:
                t0 = time.perf_counter()
                cur.execute("SELECT formula_id, entity_id, period, value FROM floor_records")
                got = 0
                while rows_ := cur.fetchmany(100_000):
                    got += len(np.array([r[3] for r in rows_]))
                read = time.perf_counter() - t0
                assert got == n_rows
            cur.execute("DROP TABLE floor_records")
            cur.close()
    finally:
        eng.dispose()
    return {"write_s": write, "read_s": read}
