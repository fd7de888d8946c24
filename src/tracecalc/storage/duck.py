"""DuckDB (``duckdb:///file.duckdb``): the table layout and the connection rules that differ.

The catalog goes through SQLAlchemy (the ``duckdb_engine`` dialect, PostgreSQL's compiler
underneath); the big tables through ``bulk.duck`` (pandas frames scanned by DuckDB).

Layout (docs/architecture.md):

* The values tables (``tc_data``, ``tc_records`` and their versions) have no primary key.
  DuckDB stores every table as compressed column segments with a min/max per row group,
  which is what its scans filter by; a primary key adds an ART index beside them that each
  insert updates and checks (measured: 4.4M rows/s into a table without a key, 1.3M with
  one). tracecalc keeps the key itself: it writes only the cells that changed and knows
  which exist (a run reads the stored records before it writes the difference, a load
  reads the stored points), so no path inserts a row twice.
* No SERIAL: each id column takes ``nextval`` of a sequence of its own (``tc_x_id_seq``),
  created with its table.
* No foreign keys: DuckDB does not cascade deletes, and it refuses to update a row that a
  foreign key points at. tracecalc deletes the dependent rows itself (SQLite, whose foreign
  keys are off, has always relied on that).

The rest of the schema (unique names, the small tables' keys, indexes) is as elsewhere.
"""

from __future__ import annotations

import re
import threading
import time

from sqlalchemy import Table, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn, ForeignKeyConstraint, PrimaryKeyConstraint

from tracecalc.errors import DatabaseError

NAME = "duckdb"
HEAP = "tc_heap"  # Table.info flag: no primary key on DuckDB (the key kept by tracecalc)
WRITE_WAIT = 30.0  # seconds a write transaction waits for another one (SQLite's busy timeout)

_writers: dict[str, threading.Lock] = {}
_writers_guard = threading.Lock()


def sequence_name(table) -> str:
    return f"{table.name}_id_seq"


@compiles(CreateColumn, NAME)
def _create_column(element, compiler, **kw):
    text = compiler.visit_create_column(element, **kw)
    col = element.element
    if text is not None and col.table is not None and col is col.table.autoincrement_column:
        text = re.sub(r"\bSERIAL\b", f"INTEGER DEFAULT nextval('{sequence_name(col.table)}')",
                      text, count=1)
    return text


@compiles(PrimaryKeyConstraint, NAME)
def _primary_key(element, compiler, **kw):
    if element.table is not None and element.table.info.get(HEAP):
        return None
    return compiler.visit_primary_key_constraint(element, **kw)


@compiles(ForeignKeyConstraint, NAME)
def _foreign_key(element, compiler, **kw):
    return None


@event.listens_for(Table, "before_create")
def _sequence(table, connection, **kw) -> None:
    """Create an id column's sequence before its table, on DuckDB only (any table: the
    storage.trace toolkit's users create their own)."""
    if connection.dialect.name == NAME and table.autoincrement_column is not None:
        connection.exec_driver_sql(f"CREATE SEQUENCE IF NOT EXISTS {sequence_name(table)}")


@event.listens_for(Table, "after_drop")
def _drop_sequence(table, connection, **kw) -> None:
    if connection.dialect.name == NAME and table.autoincrement_column is not None:
        connection.exec_driver_sql(f"DROP SEQUENCE IF EXISTS {sequence_name(table)}")


def writer_lock(path: str) -> threading.Lock:
    """The lock every write transaction on the database at ``path`` holds (this process's:
    DuckDB lets one process open a database file for writing)."""
    with _writers_guard:
        return _writers.setdefault(path, threading.Lock())


def acquire_writer(lock: threading.Lock, where: str) -> None:
    """Wait for the write transaction in progress, as SQLite's BEGIN IMMEDIATE does. DuckDB
    would run both and fail the second one at its commit (or at its first conflicting
    change): tracecalc's catalog lock means one write transaction at a time."""
    t0 = time.monotonic()
    if not lock.acquire(timeout=WRITE_WAIT):
        raise DatabaseError(f"database is locked: another write transaction on {where} "
                            f"stayed open {time.monotonic() - t0:.0f} s; try again later")
