"""``Engine.verify``: the database's own integrity check, then every stored digest
recomputed from the stored records.

A run trusts the digests: where an entity's new column digests equal to the stored digest,
its records are not read. So records changed behind tracecalc's back (a damaged page, a
hand-made UPDATE) stay unseen by every run while their digest is intact. Here each
formula's records are read into panels on its calendar exactly as a run reads them, chunk
of entities by chunk, digested with ``column_digests`` and compared with ``tc_digests``.

A digest covers present cells only, salted with their dates, so one written before its
calendar gained later periods still describes the same records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from tracecalc.errors import DatabaseError
from tracecalc.evaluator import column_digests, to_panel
from tracecalc.model import VerifyFinding, VerifyReport
from tracecalc.storage import Store

CHUNK_CELLS = 400_000  # entities x periods read at a time (as recalc.CHUNK_CELLS)
LOWEST, HIGHEST = -(2 ** 31), 2 ** 31 - 1  # entity id bounds of the outer chunks


class _Findings:
    """Findings with a cap per kind and a full count."""

    def __init__(self) -> None:
        self.listed: list[VerifyFinding] = []
        self.counts: Counter[str] = Counter()
        self.corrupt = False
        self.tables: set[str] = set()  # damaged, as the database or a failed read says

    def add(self, kind: str, formula: str, entity: str | None = None, detail: str = "",
            n: int = 1) -> None:
        if self.counts[kind] < VerifyReport.MAX_LISTED:
            self.listed.append(VerifyFinding(kind, formula, entity, detail))
        self.counts[kind] += n


def verify(store: Store, chunk_entities: int | None = None,
           progress: Callable[[int, int, str], None] | None = None) -> VerifyReport:
    """``Engine.verify``: check that the database and its stored records can be trusted.

    Two checks, both read-only:

    1. The database's own integrity check: SQLite ``PRAGMA integrity_check`` (every
       page, b-tree and index of the file; slower than ``quick_check`` only by the
       index checks, and tracecalc's big tables have none); MariaDB ``CHECK TABLE`` on
       the tracecalc tables; PostgreSQL has no built-in check, so every row of every
       tracecalc table is read by a sequential scan (a damaged page fails the read),
       and where the ``amcheck`` extension is installed its ``verify_heapam`` and
       ``bt_index_check`` check the tables and indexes (else a note says so).
    2. Every stored digest recomputed from the stored records: each formula's records
       are read into panels on its calendar exactly as a run reads them, in chunks of
       ``chunk_entities`` entities (default: about 400,000 cells; memory stays bounded),
       digested and compared with ``tc_digests``. A run compares digests first and
       reads records only where they differ, so this is what finds records changed
       behind an intact digest. Found are: mismatches (formula, entity), records
       without a digest (harmless: the next run compares them cell by cell), and
       records or digests of formulas, entities or periods that no longer exist.

    A failure of the database while reading (a damaged file: "database disk image is
    malformed") becomes a finding of the report (``unreadable``, ``corrupt`` set), not
    an exception. It reads the whole database once: minutes for tens of millions of
    records. It holds the recalculation lock (a run meanwhile would change records
    under it): with another recalculation running it waits up to ``wait`` seconds.
    """
    t0 = time.perf_counter()
    check = store.integrity_check()
    found = _Findings()
    found.corrupt = bool(check.problems)
    found.tables.update(check.tables)
    sizes = {"records": 0, "digests": 0}
    rows: list = []
    universe = codes = np.empty(0, np.int64)
    calendars: dict[str, np.ndarray] = {}
    try:
        with store.guard(), store.transaction(write=False, snapshot=True) as conn:
            rows = store.formula_rows(conn)
            universe = store.entity_universe(conn)
            codes = store.entity_codes(conn)
            calendars = {f: store.calendar(conn, f) for f in {r.frequency for r in rows}}
            rec_ids, dig_ids = store.stored_formula_ids(conn)
            known = {r.id for r in rows}
            for fid in sorted((set(rec_ids) | set(dig_ids)) - known):
                n_rec, n_dig = store.count_stored(conn, fid)
                if n_rec:
                    found.add("stray records", f"#{fid}", None,
                              f"{n_rec:,} records of a formula that no longer exists", n_rec)
                if n_dig:
                    found.add("stray digest", f"#{fid}", None,
                              f"{n_dig:,} digests of a formula that no longer exists", n_dig)
    except DatabaseError as e:
        found.corrupt |= e.corrupt
        found.add("unreadable", "(catalog)", None, str(e))
        rows = []
    for i, row in enumerate(rows):
        try:
            _formula(store, row, universe, codes, calendars[row.frequency], found, sizes,
                     chunk_entities)
        except DatabaseError as e:
            found.corrupt |= e.corrupt
            found.add("unreadable", row.name, None, str(e))
        if progress:
            progress(i + 1, len(rows), row.name)
    return VerifyReport(
        database=store.safe_url, integrity_method=check.method, integrity=check.problems,
        formulas=len(rows), entities=len(universe), records=sizes["records"],
        digests=sizes["digests"], findings=tuple(found.listed),
        counts=tuple(sorted(found.counts.items())),
        notes=check.notes, corrupt=found.corrupt, damaged_tables=tuple(sorted(found.tables)),
        seconds=time.perf_counter() - t0)


def _code(codes: np.ndarray, eid: int) -> str:
    return str(codes[eid]) if 0 <= eid < len(codes) and codes[eid] is not None else f"#{eid}"


def _formula(store: Store, row, universe: np.ndarray, codes: np.ndarray,
             calendar: np.ndarray, found: _Findings, sizes: dict, chunk_entities) -> None:
    size = chunk_entities or max(1, CHUNK_CELLS // max(1, len(calendar)))
    parts = [universe[i:i + size] for i in range(0, len(universe), size)] or [universe]
    for k, part in enumerate(parts):
        lo = LOWEST if k == 0 else int(part[0])
        hi = HIGHEST if k == len(parts) - 1 else int(part[-1])
        # records and digests of one chunk from the same commit
        with store.guard(), store.transaction(write=False, snapshot=True) as conn:
            with _reading(store, "tc_records", found):
                e, p, v = store.read_records_range(conn, row.id, lo, hi)
            with _reading(store, "tc_digests", found):
                de, dv = store.read_digests_range(conn, row.id, lo, hi)
        sizes["records"] += len(v)
        sizes["digests"] += len(dv)
        _chunk(row.name, part, (e, p, v), (de, dv), codes, calendar, found)


@contextmanager
def _reading(store: Store, table: str, found: _Findings) -> Iterator[None]:
    """A read of ``table``; a failure names it among the damaged tables."""
    try:
        with store.guard():
            yield
    except DatabaseError:
        found.tables.add(table)
        raise
    except (ValueError, TypeError) as e:  # a damaged row that still reads: text, not numbers
        found.tables.add(table)
        raise DatabaseError(f"{table} holds a row tracecalc did not write ({e})",
                            corrupt=True) from None


def _chunk(name: str, part: np.ndarray, recs, digs, codes, calendar, found: _Findings) -> None:
    e, p, v = recs
    de, dv = digs
    inside = np.isin(e, part)
    for eid, n in zip(*np.unique(e[~inside], return_counts=True)):
        found.add("stray records", name, _code(codes, int(eid)),
                  f"{n:,} records of an entity that no longer exists", int(n))
    panel = to_panel(e, p, v, calendar, part)
    has = ~np.isnan(panel)
    placed = has.sum(axis=0)
    stored_per = np.bincount(np.searchsorted(part, e[inside]), minlength=len(part))
    for j in np.flatnonzero(stored_per != placed):
        n = int(stored_per[j] - placed[j])
        found.add("stray records", name, _code(codes, int(part[j])),
                  f"{n:,} records at periods outside the {len(calendar)}-period calendar", n)
    in_part = np.isin(de, part)
    for eid in de[~in_part]:
        found.add("stray digest", name, _code(codes, int(eid)),
                  "digest of an entity that no longer exists")
    stored = np.zeros(len(part), dtype=np.int64)
    stored[np.searchsorted(part, de[in_part])] = dv[in_part]
    computed = column_digests(panel, calendar)
    for j in np.flatnonzero((stored == 0) & has.any(axis=0)):
        found.add("missing digest", name, _code(codes, int(part[j])),
                  f"{int(placed[j]):,} records without a digest")
    differ = np.flatnonzero((stored != 0) & (stored != computed))
    for j in differ:
        found.add("mismatch", name, _code(codes, int(part[j])),
                  f"the stored digest does not match its {int(placed[j]):,} stored records")
