"""Bulk movement of (key, entity, period, value) rows through each driver's fastest path.

Measured on these machines (../shared/DESIGN.md): SQLite multi-row VALUES ~800k rows/s
against ~100k for SQLAlchemy executemany; PostgreSQL COPY binary ~500k; MariaDB
LOAD DATA LOCAL INFILE ~270k; DuckDB a registered pandas frame and INSERT ... SELECT
(~4M rows/s into a table without a key, storage.duck). All paths run inside the caller's
transaction.

One ``BulkWriter`` per database, chosen once per ``Store`` by ``for_dialect``.
"""

from __future__ import annotations

from sqlalchemy.engine import Dialect

from tracecalc.errors import DatabaseError
from tracecalc.storage.bulk.base import BulkWriter, Rows, canonical_zero, period_strings
from tracecalc.storage.bulk.duck import DuckDBBulk
from tracecalc.storage.bulk.mariadb import MariaDBBulk
from tracecalc.storage.bulk.postgresql import PostgreSQLBulk
from tracecalc.storage.bulk.sqlite import SQLiteBulk

__all__ = ["BulkWriter", "Rows", "canonical_zero", "for_dialect", "period_strings"]

_WRITERS: dict[str, type[BulkWriter]] = {
    "sqlite": SQLiteBulk, "postgresql": PostgreSQLBulk, "mysql": MariaDBBulk,
    "mariadb": MariaDBBulk, "duckdb": DuckDBBulk,
}


def for_dialect(dialect: Dialect) -> BulkWriter:
    """The bulk writer of a SQLAlchemy dialect's database."""
    try:
        return _WRITERS[dialect.name]()
    except KeyError:
        raise DatabaseError(f"tracecalc works with SQLite, DuckDB, PostgreSQL and "
                            f"MariaDB/MySQL, not {dialect.name}") from None
