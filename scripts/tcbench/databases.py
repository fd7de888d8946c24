"""A fresh database per run, and plain engines and tables for the floor and the baseline."""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tracecalc.storage import normalise_url


class Database:
    """A fresh database for the run: a temporary SQLite or DuckDB file, a PostgreSQL
    schema or a MariaDB database; dropped afterwards."""

    def __init__(self, url: str | None):
        url = EMBEDDED.get(url or "sqlite", url)
        self.kind = make_url(normalise_url(url)).get_backend_name()
        self.name = f"tc_bench_{uuid.uuid4().hex[:10]}"
        if self.kind in ("sqlite", "duckdb"):  # a fresh file, whatever file the URL names
            self.tmp = tempfile.mkdtemp(prefix="tracecalc-bench-")
            self.url = f"{self.kind}:///{Path(self.tmp) / ('bench.' + FILE[self.kind])}"
            return
        base = normalise_url(url)
        self.admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            if self.kind == "postgresql":
                c.execute(text(f'CREATE SCHEMA "{self.name}"'))
                u = make_url(base).update_query_dict({"options": f"-csearch_path={self.name}"})
            else:
                c.execute(text(f"CREATE DATABASE `{self.name}`"))
                u = make_url(base).set(database=self.name)
        self.url = u.render_as_string(hide_password=False)

    def settle(self) -> None:
        """Start a timed step from a quiet machine: the previous step's dirty pages on disk
        (os.sync), PostgreSQL's checkpoint done, SQLite's write-ahead log folded back and
        emptied. Else a step pays for the I/O of the one before it, and the floor and the
        cold run (which both write ~1 GB) trade seconds depending on their order."""
        if hasattr(os, "sync"):
            os.sync()
        if self.kind == "postgresql":
            with self.admin.connect() as c:
                try:
                    c.execute(text("CHECKPOINT"))
                except Exception as e:  # needs superuser or pg_checkpoint: go on without
                    warnings.warn(f"no CHECKPOINT before the step: {e}", stacklevel=2)
        elif self.kind in ("sqlite", "duckdb"):
            eng = create_engine(self.url)  # DuckDB: the process's open database, shared
            with eng.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)" if self.kind == "sqlite"
                                  else "CHECKPOINT")
            eng.dispose()

    def drop(self) -> None:
        if self.kind in ("sqlite", "duckdb"):
            for f in Path(self.tmp).iterdir():
                f.unlink()
            os.rmdir(self.tmp)
            return
        with self.admin.connect() as c:
            if self.kind == "postgresql":
                c.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
            else:
                c.execute(text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        self.admin.dispose()


# --db sqlite / --db duckdb: a temporary file (as no --db is SQLite's)
EMBEDDED = {"sqlite": "sqlite:///bench.db", "duckdb": "duckdb:///bench.duckdb"}
FILE = {"sqlite": "db", "duckdb": "duckdb"}

FLOOR_DDL = ("CREATE TABLE {table} (formula_id INTEGER NOT NULL, entity_id INTEGER NOT "
             "NULL, period DATE NOT NULL, value {dbl} NOT NULL, PRIMARY KEY (formula_id, "
             "entity_id, period))")


def driver_engine(url: str, kind: str):
    """A plain SQLAlchemy engine (MariaDB: with LOAD DATA LOCAL INFILE allowed)."""
    return create_engine(normalise_url(url),
                         connect_args={"local_infile": True} if kind == "mysql" else {})


def create_table(eng, kind: str, table: str, key: bool = False) -> None:
    """A fresh table shaped like the records table (same primary key; on DuckDB, as
    tc_records there, none: ``key=True`` declares it anyway)."""
    dbl = "DOUBLE PRECISION" if kind == "postgresql" else ("DOUBLE" if kind in (
        "mysql", "duckdb") else "REAL")
    # shaped like tc_records, which SQLite keeps WITHOUT ROWID (rows in the key's b-tree)
    layout = " WITHOUT ROWID" if kind == "sqlite" else ""
    ddl = FLOOR_DDL.format(table=table, dbl=dbl)
    if kind == "duckdb" and not key:
        ddl = ddl.replace(", PRIMARY KEY (formula_id, entity_id, period)", "")
    with eng.begin() as c:
        c.execute(text(f"DROP TABLE IF EXISTS {table}"))
        c.execute(text(ddl + layout))
