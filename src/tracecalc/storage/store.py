"""The catalog and data store: every SQL statement of tracecalc lives in this package.

``Store`` holds a SQLAlchemy engine; each method takes the ``Connection`` of the caller's
transaction, so the engine layer decides what is atomic (a rejected save changes nothing).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import QueuePool, StaticPool

from tracecalc.errors import DatabaseError
from tracecalc.storage import bulk, checks, duck, migrations
from tracecalc.storage.catalog import CatalogMixin
from tracecalc.storage.columns import canonical_key, now
from tracecalc.storage.entities import EntitiesMixin
from tracecalc.storage.loading import LoadChanges, LoadingMixin
from tracecalc.storage.locks import RecalcLock, lock_catalog, verify
from tracecalc.storage.runs import RunsMixin
from tracecalc.storage.values import ValuesMixin
from tracecalc.storage.versions import VersionsMixin

# what callers imported from here before the store was split along its seams
__all__ = ["DEFAULT_URL", "LoadChanges", "Store", "canonical_key", "mask_url", "normalise_url",
           "now"]

DEFAULT_URL = "sqlite:///tracecalc.db"


def normalise_url(url: str) -> str:
    """Pick the drivers tracecalc ships with when the URL names only the database."""
    try:
        u = make_url(url)
    except ArgumentError:
        hint = (f"; for a SQLite file write sqlite:///{url}" if "://" not in url
                else " (like sqlite:///file.db, postgresql://user@host/db or "
                     "mysql://user@host/db)")
        raise DatabaseError(f"'{mask_url(url)}' is not a database URL{hint}") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername in ("mysql", "mariadb"):
        u = u.set(drivername="mysql+pymysql")
    return u.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """A URL as it may be shown: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even parseable: mask what looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


class Store(CatalogMixin, EntitiesMixin, ValuesMixin, VersionsMixin, RunsMixin, LoadingMixin):
    """Tables and bulk paths of one tracecalc database."""

    def __init__(self, url: str = DEFAULT_URL, *, create: bool = True, check: bool = True):
        """Open a tracecalc database; ``create`` makes it (and its tables) when missing,
        else a missing database is an error and nothing is written on opening.
        ``check=False`` leaves the tables unread (``tracecalc db`` reads them itself)."""
        self.url = normalise_url(url)
        u = make_url(self.url)
        kwargs: dict = {}
        if u.get_backend_name() == "mysql":
            kwargs["connect_args"] = {"local_infile": True}
        elif u.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
            if u.database in (None, "", ":memory:"):
                # One shared connection: every thread (recalc does its I/O on its own
                # thread) must see the same in-memory database.
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"]["check_same_thread"] = False
        elif u.get_backend_name() == duck.NAME and u.database in (None, "", ":memory:"):
            # duckdb_engine gives each thread a database of its own there; a named one is
            # shared by the connections of this process (recalc reads on its I/O thread)
            u = u.set(database=f":memory:tc{id(self):x}")
            kwargs["poolclass"] = QueuePool
        try:
            self.engine = create_engine(u, **kwargs)
        except Exception as e:  # unknown dialect, driver missing
            raise DatabaseError(f"cannot open database '{mask_url(url)}': "
                                f"{' '.join(str(e).split())}") from None
        self.dialect = self.engine.dialect.name
        self.bulk = bulk.for_dialect(self.engine.dialect)
        # what a failing statement raises: SQLAlchemy's wrapper, or (bulk paths work on the
        # driver's cursor) the driver's own exception
        self._db_errors = (DBAPIError, self.engine.dialect.loaded_dbapi.Error)
        self.sqlite_path = None
        self.file_path = None  # an embedded database's file (SQLite, DuckDB)
        self._writer = None  # DuckDB: the lock of this process's write transactions
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
            if u.database not in (None, "", ":memory:"):
                path = u.database
                if u.query.get("uri") == "true" and path.startswith("file:"):
                    path = path[5:]  # sqlite:///file:x.db?mode=ro&uri=true
                self.sqlite_path = self.file_path = os.path.abspath(path)
        elif self.dialect == duck.NAME:
            if not str(u.database).startswith(":memory:"):
                self.file_path = os.path.abspath(u.database)
            self._writer = duck.writer_lock(self.file_path or str(u.database))
        if self.file_path is not None and not create and not os.path.exists(self.file_path):
            # connecting would create an empty file: a typo must not do that
            raise DatabaseError(
                f"no tracecalc database at {self.file_path}; check --db (or "
                "TRACECALC_DB), or create one with tracecalc init")
        if check:
            self.open_schema(create)

    def open_schema(self, create: bool) -> None:
        """Check the tables (a read, so read-only databases open); create or upgrade them
        only with ``create`` (see ``tracecalc.storage.migrations``)."""
        migrations.open_schema(self, create)

    @property
    def worker_url(self) -> str:
        """The URL another process opens this database with (a file: its absolute path)."""
        if self.file_path is not None:
            return make_url(self.url).set(database=self.file_path).render_as_string(
                hide_password=False)
        return self.url

    @property
    def shareable(self) -> bool:
        """Whether several connections see the same database (not an in-memory one)."""
        return self.dialect not in ("sqlite", duck.NAME) or self.file_path is not None

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self, write: bool = True, snapshot: bool = False) -> Iterator[Connection]:
        """One transaction. On SQLite a writing one begins IMMEDIATE: it takes the write
        lock up front, so writers queue (busy timeout 30 s) instead of failing to upgrade.
        With ``snapshot`` every statement sees the same commits (PostgreSQL's default gives
        each statement its own; SQLite and MariaDB transactions are snapshots already).
        On DuckDB a writing one waits for the one in progress (``duck.acquire_writer``).
        A database failure leaves it rolled back and raises a one-line ``DatabaseError``."""
        writer = self._writer if write else None
        if writer is not None:
            duck.acquire_writer(writer, self.where)
        try:
            with self.engine.connect() as conn:
                conn.info["tc_write"] = write
                try:
                    with conn.begin():
                        if snapshot and conn.dialect.name == "postgresql":
                            conn.exec_driver_sql(
                                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        yield conn
                finally:
                    # The mark is this transaction's, not the pooled connection's: its next
                    # user (a lock connection, say) must not pass for a writing transaction.
                    with contextlib.suppress(Exception):
                        conn.info.pop("tc_write", None)
        except self._db_errors as e:  # one line for the user, the cause chained
            raise checks.database_error(e, self.where) from e
        finally:
            if writer is not None:
                writer.release()

    @property
    def where(self) -> str:
        """The database as named in messages (a file's path)."""
        return self.file_path or self.safe_url

    def guard(self):
        """A block whose driver errors become one-line ``DatabaseError``s."""
        return checks.driver_errors(self.engine)

    def integrity_check(self) -> checks.DatabaseCheck:
        """The database's own check of its files (see ``checks``)."""
        return checks.integrity_check(self.engine)

    def lock_catalog(self, conn: Connection) -> None:
        lock_catalog(conn)

    def lock_for_run(self, conn: Connection, holder: int | None) -> None:
        """First in each transaction a recalculation commits: the catalog lock, then the
        proof that the run still holds its recalculation lock (``RecalcLock.holder``).

        Raises:
            LockLostError: the lock went with its connection (see ``locks``).
        """
        lock_catalog(conn)
        verify(conn, holder)

    def recalc_lock(self) -> RecalcLock:
        return RecalcLock(self.engine, self.file_path)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Transactions are begun by _sqlite_begin, not by the driver (SQLAlchemy's recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("tc_write", True) else "BEGIN")
