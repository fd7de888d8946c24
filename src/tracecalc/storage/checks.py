"""The database's own integrity check, stray rows, and driver errors in one line.

``tracecalc verify`` (``tracecalc.integrity``) starts here: each database checks its files
its own way, and whatever the driver raises on a damaged database becomes a
``DatabaseError`` with the driver's first line, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from tracecalc.errors import DatabaseError
from tracecalc.storage.schema import metadata

# What the drivers say when the database's files are damaged (SQLite "database disk image
# is malformed", "file is not a database"; PostgreSQL "invalid page in block", "could not
# read block"; MariaDB "Index for table ... is corrupt", "... marked as crashed").
_CORRUPT = re.compile(r"malformed|corrupt|invalid page|could not read block|"
                      r"crashed|checksum", re.I)
MAX_PROBLEMS = 100  # lines of the database's own report kept


@dataclass(frozen=True)
class DatabaseCheck:
    method: str  # what was run
    problems: tuple[str, ...]  # what it found; empty: clean
    notes: tuple[str, ...] = ()  # what could not be checked, and why
    tables: tuple[str, ...] = ()  # the damaged tables, where the database says


def one_line(e: BaseException) -> str:
    """The driver's message without SQLAlchemy's statement and link lines."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip()
    return text.splitlines()[0].strip() if text else type(orig).__name__


def is_driver_error(e: BaseException) -> bool:
    return isinstance(e, DBAPIError) or type(e).__module__.split(".")[0] in (
        "sqlite3", "psycopg", "pymysql", "duckdb", "_duckdb")


def describe(e: BaseException, where: str) -> str:
    """One line for a database failure (SQLAlchemy's, or the driver's own from a bulk path):
    what happened at ``where``, and what to do about it."""
    msg = one_line(e)
    orig = getattr(e, "orig", None) or e
    low = msg.lower()
    if "disk is full" in low or "no space left" in low or "disk full" in low:
        return (f"the disk is full (or the database reached its size limit) at {where}; "
                "nothing of this change was saved; free space and run the command again")
    if "readonly database" in low or "read-only" in low or "read only" in low:
        return (f"the database {where} is read-only ({msg}); check the file's permissions "
                "or use a copy you may write")
    if "could not set lock on file" in low:  # DuckDB: one process per database file
        holder = re.search(r"\(PID \d+\)", msg)
        return (f"the DuckDB database {where} is open in another process"
                f"{' ' + holder.group(0) if holder else ''}; DuckDB lets one process open "
                "a database file at a time: run the command when that one has finished")
    if "file is not a database" in low:
        return (f"{where} is not a SQLite database, or its first page is damaged ({msg}); "
                "check --db (or TRACECALC_DB)")
    if is_corrupt(msg):
        return (f"the database {where} is damaged ({msg}); run `tracecalc verify` to see "
                "what is affected, and see docs/operations.md")
    if type(orig).__name__ == "IntegrityError" or "IntegrityError" in type(e).__name__:
        return f"the database {where} refused a row ({msg}); nothing of this change was saved"
    if getattr(e, "connection_invalidated", False):
        return (f"lost the connection to the database {where} ({msg}); nothing after the "
                "last commit was saved; run the command again")
    return f"database error at {where}: {msg}"


def database_error(e: BaseException, where: str) -> DatabaseError:
    """The one-line ``DatabaseError`` for a driver or SQLAlchemy error."""
    return DatabaseError(describe(e, where), corrupt=is_corrupt(one_line(e)))


def is_corrupt(message: str) -> bool:
    return bool(_CORRUPT.search(message))


@contextmanager
def driver_errors(engine: Engine) -> Iterator[None]:
    """Driver and SQLAlchemy errors inside the block become a one-line ``DatabaseError``."""
    dbapi_error = getattr(engine.dialect.dbapi, "Error", DBAPIError)
    try:
        yield
    except (DBAPIError, dbapi_error) as e:
        url = engine.url
        where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string()
        raise database_error(e, where or "the database") from None


def tables() -> list[str]:
    return [t.name for t in metadata.sorted_tables]


def integrity_check(engine: Engine) -> DatabaseCheck:
    name = engine.dialect.name
    if name == "sqlite":
        return _sqlite(engine)
    if name == "postgresql":
        return _postgresql(engine)
    if name == "duckdb":
        return _duckdb(engine)
    return _mariadb(engine)


def _run(engine: Engine, fn, notes: list[str]) -> list[str]:
    """``fn(conn)``'s problems. A failure that says the files are damaged is a problem;
    any other (no permission, a timeout, a lost connection) is a note: not checked."""
    try:
        with driver_errors(engine), engine.connect() as conn:
            return fn(conn)
    except DatabaseError as e:
        if e.corrupt:
            return [str(e)]
        notes.append(f"not checked: {e}")
        return []


def _sqlite(engine: Engine) -> DatabaseCheck:
    found: list[str] = []

    def check(conn) -> list[str]:
        rows = [line for r in conn.exec_driver_sql(f"PRAGMA integrity_check({MAX_PROBLEMS})")
                for line in str(r[0]).splitlines()]
        if rows == ["ok"]:
            return []
        rows = [r for r in rows if not r.startswith("*** in database")]
        # the tables whose b-trees hold the pages named ("On tree page 1023 cell 5: ...")
        for t in tables():  # which tables: each one checked alone (SQLite 3.33 and later)
            try:
                alone = [str(r[0]) for r in conn.exec_driver_sql(
                    f"PRAGMA integrity_check('{t}')")]
            except DBAPIError:
                found.append(t)  # it cannot even be walked
                continue
            if alone != ["ok"]:
                found.append(t)
        return rows

    notes: list[str] = []
    problems = _run(engine, check, notes)
    return DatabaseCheck("PRAGMA integrity_check", tuple(problems), tuple(notes),
                         tables=tuple(found))


def _postgresql(engine: Engine) -> DatabaseCheck:
    problems: list[str] = []
    notes: list[str] = []
    for t in tables():
        def scan(conn, t=t) -> list[str]:
            # A sequential scan that deforms every row: each page is read and checked
            # (checksums too, when the cluster has them), not only the index.
            for opt in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                conn.exec_driver_sql(f"SET LOCAL {opt} = off")
            conn.exec_driver_sql(f"SELECT count(*) FROM {t} AS r WHERE r IS NOT NULL").scalar()
            return []
        problems += [f"{t}: {p}" for p in _run(engine, scan, notes)]
    with driver_errors(engine), engine.connect() as conn:
        schema = conn.exec_driver_sql(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'").scalar()
        available = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'amcheck'").scalar()
    method = "a full read of every tracecalc table"
    if schema is None:
        note = ("amcheck is available but not installed in this database (CREATE EXTENSION "
                "amcheck, as a superuser, lets verify check tables and indexes page by page)"
                if available else "the amcheck extension is not available on this server")
        notes.append(note + ": indexes were not checked")
        return DatabaseCheck(method, tuple(problems), tuple(dict.fromkeys(notes)),
                             tables=_named(problems))
    for t in tables():
        def amcheck(conn, t=t) -> list[str]:
            found = [f"{t} block {b} item {o}: {m}" for b, o, m in conn.exec_driver_sql(
                f'SELECT blkno, offnum, msg FROM "{schema}".verify_heapam(%(t)s::regclass)',
                {"t": t})]
            for (index,) in conn.exec_driver_sql(
                    "SELECT c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am a ON a.oid = c.relam "
                    "WHERE i.indrelid = %(t)s::regclass AND a.amname = 'btree'", {"t": t}):
                conn.exec_driver_sql(f'SELECT "{schema}".bt_index_check(%(i)s)', {"i": index})
            return found
        problems += [p if p.startswith(t) else f"{t}: {p}"
                     for p in _run(engine, amcheck, notes)]
    # one note per kind of failure (no permission on amcheck fails every table alike)
    return DatabaseCheck(method + ", amcheck verify_heapam and bt_index_check",
                         tuple(problems[:MAX_PROBLEMS]), tuple(dict.fromkeys(notes)),
                         tables=_named(problems))


def _duckdb(engine: Engine) -> DatabaseCheck:
    """DuckDB has no check command; every block of its file carries a checksum that each
    read verifies, so every column of every tracecalc table is read once (a hash of each
    row: the scan cannot answer from the row groups' statistics)."""
    problems: list[str] = []
    notes: list[str] = []
    for t in metadata.sorted_tables:
        cols = ", ".join(f'"{c.name}"' for c in t.columns)

        def scan(conn, t=t, cols=cols) -> list[str]:
            conn.exec_driver_sql(f"SELECT count(hash({cols})) FROM {t.name}").scalar()
            return []

        problems += [p if p.startswith(t.name) else f"{t.name}: {p}"
                     for p in _run(engine, scan, notes)]
    return DatabaseCheck("a read of every block (DuckDB's checksums)",
                         tuple(problems[:MAX_PROBLEMS]), tuple(dict.fromkeys(notes)),
                         tables=_named(problems))


def _mariadb(engine: Engine) -> DatabaseCheck:
    def check(conn) -> list[str]:
        out = []
        for table, _op, kind, text in conn.exec_driver_sql(f"CHECK TABLE {', '.join(tables())}"):
            if kind.lower() in ("error", "warning") or (kind.lower() == "status"
                                                       and text != "OK"):
                out.append(f"{table.split('.')[-1]}: {text}")
        return out

    notes: list[str] = []
    problems = _run(engine, check, notes)
    return DatabaseCheck("CHECK TABLE", tuple(problems[:MAX_PROBLEMS]), tuple(notes),
                         tables=_named(problems))


def _named(problems: list[str]) -> tuple[str, ...]:
    """Tables named at the start of problem lines ("tc_records: ...")."""
    names = set(tables())
    return tuple(sorted({p.split(":", 1)[0] for p in problems} & names))


def key_ids(conn, table: str, key_col: str) -> list[int]:
    """The distinct keys of a bulk table, one index seek per key (no scan of its rows)."""
    out: list[int] = []
    last = -(2 ** 31)
    while (v := conn.exec_driver_sql(
            f"SELECT MIN({key_col}) FROM {table} WHERE {key_col} > {last:d}").scalar()) \
            is not None:
        out.append(int(v))
        last = int(v)
    return out


def count_key(conn, table: str, key_col: str, key: int) -> int:
    return int(conn.exec_driver_sql(
        f"SELECT COUNT(*) FROM {table} WHERE {key_col} = {int(key):d}").scalar())
