"""The database's own locks: one catalog change at a time, one recalculation at a time.

Catalog changes lock inside their transaction, before reading anything, so the cycle check
always sees the other savers' committed work: PostgreSQL a transaction-level advisory lock,
MariaDB a row lock (``SELECT ... FOR UPDATE``), SQLite ``BEGIN IMMEDIATE`` (every write
transaction starts that way, see ``Store``), DuckDB (no ``FOR UPDATE``, and one process per
database file) a lock of the process held by every write transaction (``storage.duck``).

A recalculation holds a session-level lock for its whole run on a connection of its own, so
a killed process releases it: PostgreSQL ``pg_try_advisory_lock``, MariaDB ``GET_LOCK``,
SQLite and DuckDB an exclusive lock (``filelock``: ``flock`` on Unix, ``msvcrt.locking`` on
Windows) on a file beside the database (removed when the run ends).

That connection can die while the run goes on (a DBA's ``pg_terminate_backend`` or ``KILL``,
an idle timeout): the server frees the lock and a second run may take it. So no commit of a
run may happen unless its lock is still held, and this is made exact, not just likely:

* every write transaction of a run first takes the catalog lock, then checks (``verify``)
  that the recalculation lock is held by the run's own lock connection (``holder``: its
  backend pid or connection id), and raises ``LockLostError`` if not;
* whoever acquires the recalculation lock then takes the catalog lock once (``acquire``),
  so it waits for any write transaction that is still open.

A writer that passed the check did so while the old holder was still connected, so before
any new run got the lock; it keeps the catalog lock until it commits, and the new run waits
for that commit before it reads or writes anything. Every later transaction of the old run
fails the check. So the commits of two runs never interleave; what is lost is only the work
the stopped run had not committed (its formulas stay stale for the next run). The one write
it still makes is its own line of the run log (failed, and why), which is no data.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from tracecalc.errors import BusyError, DatabaseError, LockLostError

if TYPE_CHECKING:
    from filelock import FileLock

_CATALOG, _RECALC = "tracecalc.catalog", "tracecalc.recalc"
_memory_locks: dict[int, threading.Lock] = {}


def lock_catalog(conn: Connection) -> None:
    """Serialise catalog changes; call first in the changing transaction."""
    name = conn.dialect.name
    if name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k), hashtext(current_schema()))"),
                     {"k": _CATALOG})
    elif name in ("mysql", "mariadb"):
        conn.execute(text("SELECT value FROM tc_meta WHERE `key` = 'catalog' FOR UPDATE"))
    # SQLite: the transaction began IMMEDIATE and holds the database's write lock already;
    # DuckDB: Store.transaction holds the process's writer lock (storage.duck).


def verify(conn: Connection, holder: int | None) -> None:
    """Raise ``LockLostError`` unless the recalculation lock is held by the connection
    ``holder`` (``RecalcLock.holder``); call inside a write transaction, after
    ``lock_catalog``. ``None`` (SQLite: a lock of this process) checks nothing."""
    if holder is None:
        return
    if conn.dialect.name == "postgresql":
        held = conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = :pid AND classid = hashtext(:k)::oid "
            "AND objid = hashtext(current_schema())::oid AND objsubid = 2 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"pid": holder, "k": _RECALC}).scalar()
    else:
        held = conn.execute(text("SELECT IS_USED_LOCK(CONCAT('tcr.', DATABASE())) = :cid"),
                            {"cid": holder}).scalar()
    if not held:
        raise LockLostError()


class RecalcLock:
    """Held for a whole recalculation; ``acquire`` waits up to ``wait`` seconds."""

    def __init__(self, engine: Engine, file_path: str | None):
        self.engine = engine  # file_path: an embedded database's file (SQLite, DuckDB)
        self.path = None if not file_path else f"{file_path}.recalc.lock"
        self._conn: Connection | None = None
        self._file: FileLock | None = None
        self._fd: int | None = None  # the lock file's descriptor while held
        self._mem: threading.Lock | None = None
        self.holder: int | None = None  # the lock connection's backend pid / connection id
        self._busy = ""  # why acquire gave up

    def acquire(self, wait: float = 0.0) -> None:
        deadline = time.monotonic() + max(0.0, wait)
        self._busy = "another recalculation is running on this database"
        while not self._try():
            if time.monotonic() >= deadline:
                raise BusyError(f"{self._busy}; try again later or pass --wait SECONDS")
            time.sleep(0.2)

    def _try(self) -> bool:
        name = self.engine.dialect.name
        if name in ("sqlite", "duckdb"):  # embedded: a lock of this machine's processes
            if self.path is None:  # in memory: one process, so a lock per engine will do
                self._mem = _memory_locks.setdefault(id(self.engine), threading.Lock())
                return self._mem.acquire(blocking=False)
            return self._try_file()
        conn = self.engine.connect()
        if name == "postgresql":
            got = conn.execute(text(
                "SELECT pg_try_advisory_lock(hashtext(:k), hashtext(current_schema()))"),
                {"k": _RECALC}).scalar()
            me = "SELECT pg_backend_pid()"
        else:
            got = conn.execute(text("SELECT GET_LOCK(CONCAT('tcr.', DATABASE()), 0)")).scalar()
            me = "SELECT CONNECTION_ID()"
        conn.commit()
        if not got:
            conn.close()
            return False
        self._conn = conn
        self.holder = int(conn.execute(text(me)).scalar())
        try:
            # Wait for the write transactions still open (a run that lost this lock may be
            # committing one): see the module's docstring.
            lock_catalog(conn)
            conn.commit()
        except DBAPIError:  # MariaDB's lock wait timeout on the catalog row: still busy
            self.release()
            self._busy = ("the catalog stayed locked (a data load, a save or a stopping "
                          "recalculation is still writing)")
            return False
        return True

    def _try_file(self) -> bool:
        """An exclusive lock on the lock file. The holder removes the file when it lets go,
        so the file locked may no longer be the one at the path (opened before the unlink,
        locked after it): then it does not count (filelock skips a file already unlinked;
        the inode check here covers one replaced), and the next try takes the file there
        now."""
        from filelock import FileLock, Timeout  # only a run on SQLite locks a file

        assert self.path is not None
        while True:
            lock = FileLock(self.path, mode=0o644, thread_local=False, fallback_to_soft=False,
                            on_acquired=self._held)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return False
            except OSError as e:
                if e.errno == errno.EROFS:  # a read-only file system: nobody can write the
                    return True  # database either, so there is nothing to keep out
                raise DatabaseError(
                    f"cannot create the recalculation lock file {self.path} ({e.strerror}); "
                    "a recalculation or verify needs to write beside the database") from None
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                now = None
            assert self._fd is not None
            if now is not None and os.path.samestat(now, os.fstat(self._fd)):
                self._file = lock
                return True
            self._fd = None
            lock.release()  # an orphaned file: its lock guards nothing

    def _held(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock; quiet when its connection is gone already (the server freed
        the lock with it)."""
        if self._file is not None:
            lock, self._file, self._fd = self._file, None, None
            try:
                os.unlink(self.path)  # while still locked: see _try_file
            except (FileNotFoundError, PermissionError):  # Windows: filelock removes it after
                pass
            lock.release()
        if self._mem is not None:
            self._mem.release()
            self._mem = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.holder = None
            try:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text(
                        "SELECT pg_advisory_unlock(hashtext(:k), hashtext(current_schema()))"),
                        {"k": _RECALC})
                else:
                    conn.execute(text("SELECT RELEASE_LOCK(CONCAT('tcr.', DATABASE()))"))
                conn.commit()
            except DBAPIError:
                conn.invalidate()  # dead: do not hand it back to the pool
            finally:
                conn.close()

    def __enter__(self) -> RecalcLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
