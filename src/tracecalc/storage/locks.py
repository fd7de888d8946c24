"""The database's own locks: one catalog change at a time, one recalculation at a time.

Catalog changes lock inside their transaction, before reading anything, so the cycle check
always sees the other savers' committed work: PostgreSQL a transaction-level advisory lock,
MariaDB a row lock (``SELECT ... FOR UPDATE``), SQLite ``BEGIN IMMEDIATE`` (every write
transaction starts that way, see ``Store``).

A recalculation holds a session-level lock for its whole run on a connection of its own, so
a killed process releases it: PostgreSQL ``pg_try_advisory_lock``, MariaDB ``GET_LOCK``,
SQLite an exclusive ``flock`` on a file beside the database.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from sqlalchemy import Connection, Engine, text

from tracecalc.errors import BusyError

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
    # SQLite: the transaction began IMMEDIATE and holds the database's write lock already.


class RecalcLock:
    """Held for a whole recalculation; ``acquire`` waits up to ``wait`` seconds."""

    def __init__(self, engine: Engine, sqlite_path: str | None):
        self.engine = engine
        self.path = None if not sqlite_path else f"{sqlite_path}.recalc.lock"
        self._conn: Connection | None = None
        self._fd: int | None = None
        self._mem: threading.Lock | None = None

    def acquire(self, wait: float = 0.0) -> None:
        deadline = time.monotonic() + max(0.0, wait)
        while not self._try():
            if time.monotonic() >= deadline:
                raise BusyError(
                    "another recalculation is running on this database; try again later or "
                    "pass --wait SECONDS")
            time.sleep(0.2)

    def _try(self) -> bool:
        name = self.engine.dialect.name
        if name == "sqlite":
            if self.path is None:  # in memory: one process, so a lock per engine will do
                self._mem = _memory_locks.setdefault(id(self.engine), threading.Lock())
                return self._mem.acquire(blocking=False)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        conn = self.engine.connect()
        if name == "postgresql":
            got = conn.execute(text(
                "SELECT pg_try_advisory_lock(hashtext(:k), hashtext(current_schema()))"),
                {"k": _RECALC}).scalar()
        else:
            got = conn.execute(text("SELECT GET_LOCK(CONCAT('tcr.', DATABASE()), 0)")).scalar()
        conn.commit()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._mem is not None:
            self._mem.release()
            self._mem = None
        if self._conn is not None:
            try:
                if self.engine.dialect.name == "postgresql":
                    self._conn.execute(text(
                        "SELECT pg_advisory_unlock(hashtext(:k), hashtext(current_schema()))"),
                        {"k": _RECALC})
                else:
                    self._conn.execute(text("SELECT RELEASE_LOCK(CONCAT('tcr.', DATABASE()))"))
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> RecalcLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
