"""Schema migrations: Alembic revisions (``versions/``), run on the Store's own connection.

``tc_meta.schema`` stays the version of record: every release reads it (those from before
Alembic refuse a newer database by it), and every revision sets it, so it and Alembic's
``tc_alembic_version`` move in step. A database from before Alembic has only the first: it
is stamped at the revision matching it, then upgraded. Should the two ever disagree (only
a hand edit can do that), ``tc_meta`` wins. A revision this tracecalc does not know, or a
schema above its own, is a database of a newer tracecalc: refused, never touched.

A new database is created whole from ``tracecalc.storage.schema`` and stamped at the head;
no revision runs for it. Opening a current database is one read.

Adding a revision: a file in ``versions/`` whose ``down_revision`` is the old head and whose
``upgrade`` ends with ``set_schema``; then bump ``SCHEMA_VERSION`` and ``REVISIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, column, insert, inspect, select, table, update

from tracecalc.errors import DatabaseError, TracecalcError
from tracecalc.storage import checks
from tracecalc.storage.schema import SCHEMA_VERSION, meta, metadata

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "tc_alembic_version"  # tc_: a database shared with another Alembic user
# tc_meta.schema -> the revision that leaves a database at that schema
REVISIONS = {"5": "schema5", "6": "schema6", "7": "schema7", "8": "schema8",
             "9": "schema9", "10": "schema10", "11": "schema11"}
HEAD = REVISIONS[SCHEMA_VERSION]

_version = table(VERSION_TABLE, column("version_num"))


@dataclass(frozen=True)
class State:
    """Where a database stands: ``schema`` is ``tc_meta.schema`` (None: no tracecalc
    tables), ``revision`` Alembic's (None: not stamped, a database from before Alembic)."""

    schema: str | None
    revision: str | None

    @property
    def current(self) -> bool:
        return self.schema == SCHEMA_VERSION and self.revision == HEAD

    @property
    def effective(self) -> str | None:
        """The revision the database is at: the one its ``tc_meta.schema`` matches."""
        return REVISIONS.get(self.schema or "")


def read(conn: Connection) -> State:
    """The state, read in the caller's transaction (nothing is written)."""
    insp = inspect(conn)
    if not insp.has_table(meta.name):
        return State(None, None)
    schema = conn.execute(select(meta.c.value).where(meta.c.key == "schema")).scalar()
    revision = (conn.execute(select(_version.c.version_num)).scalar()
                if insp.has_table(VERSION_TABLE) else None)
    return State(schema, revision)


def refuse_unknown(state: State) -> None:
    """Raise unless this tracecalc can open (and if older, upgrade) the database."""
    s = state.schema
    if s is None or (s in REVISIONS and state.revision in (None, *REVISIONS.values())):
        return
    if state.revision not in (None, *REVISIONS.values()) or (s.isdigit() and
                                                            int(s) > int(SCHEMA_VERSION)):
        raise DatabaseError(
            f"the database is at schema {s} (revision {state.revision or 'none'}), newer "
            f"than this tracecalc's {SCHEMA_VERSION}: upgrade tracecalc to open it")
    raise DatabaseError(f"database schema version {s} is not {SCHEMA_VERSION}, and "
                        f"tracecalc upgrades only schemas {min(REVISIONS, key=int)} and later")


def upgrade_command(store) -> str:
    return f"tracecalc db upgrade --db {store.safe_url}"


def open_schema(store, create: bool) -> None:
    """``Store.open_schema``: check the tables (a read, so read-only databases open);
    create or upgrade them only with ``create``, else refuse an older database with the
    command that upgrades it."""
    state = current(store)
    if state.current:
        return
    refuse_unknown(state)
    if state.schema is None and not create:
        raise DatabaseError(f"no tracecalc tables in the database {store.safe_url}; check "
                            "--db (or TRACECALC_DB), or create them with tracecalc init")
    if not create:
        if state.schema == SCHEMA_VERSION:
            return  # only the stamp is missing: readable as it is, stamped by a writer
        raise DatabaseError(f"the database is at schema {state.schema}, older than this "
                            f"tracecalc's {SCHEMA_VERSION}; upgrade it first with: "
                            f"{upgrade_command(store)}")
    upgrade(store)


def current(store) -> State:
    try:
        with store.transaction(write=False) as conn:
            return read(conn)
    except DatabaseError as e:
        raise DatabaseError(f"cannot open database: {e}") from None


def upgrade(store, create: bool = True) -> State:
    """Bring the database to the head in one write transaction (on MariaDB each ALTER
    commits on its own, and the stamp comes last, so an upgrade cut short is done again);
    with ``create`` make the tables of an empty one. Returns the state it was in before."""
    try:
        with store.engine.begin() as conn:
            before = read(conn)  # again: another process may have upgraded it meanwhile
            refuse_unknown(before)
            if before.schema is None:
                if not create:
                    raise DatabaseError(
                        f"no tracecalc tables in the database {store.safe_url}; check --db "
                        "(or TRACECALC_DB), or create them with tracecalc init")
                metadata.create_all(conn)
                conn.execute(insert(meta), [{"key": "schema", "value": SCHEMA_VERSION},
                                            {"key": "catalog", "value": "lock row"}])
                _alembic("stamp", conn, HEAD)
            elif not before.current:
                if before.revision != before.effective:
                    _alembic("stamp", conn, before.effective, purge=True)
                _alembic("upgrade", conn, "head")
    except TracecalcError:
        raise
    except store._db_errors as e:
        raise DatabaseError(f"cannot open database: {checks.describe(e, store.where)}") from None
    return before


def set_schema(version: str) -> None:
    """Record ``version`` in ``tc_meta.schema``; the last step of every revision."""
    from alembic import op

    op.execute(update(meta).where(meta.c.key == "schema").values(value=version))


def _alembic(name: str, conn: Connection, revision: str, **kw) -> None:
    """Run Alembic's command ``name`` on ``conn`` (env.py takes it from the config)."""
    from alembic import command
    from alembic.config import Config

    if conn.dialect.name == "duckdb":
        _duckdb_impl()

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE).replace("%", "%%"))
    cfg.attributes["connection"] = conn
    getattr(command, name)(cfg, revision, **kw)


def _duckdb_impl() -> None:
    """Alembic's operations for the ``duckdb`` dialect (Alembic has none; duckdb_engine's
    documentation registers this one). A DuckDB database is always created at the head,
    so up to schema 9 Alembic only stamps it: no revision has run on DuckDB."""
    from alembic.ddl import impl

    if "duckdb" not in impl._impls:
        class DuckDBImpl(impl.DefaultImpl):  # subclassing registers it by __dialect__
            __dialect__ = "duckdb"
            transactional_ddl = True
