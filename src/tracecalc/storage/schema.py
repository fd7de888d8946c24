"""The tables. Catalog tables are small and go through SQLAlchemy Core; the two big tables
(``data_points`` and ``records``) move through each driver's bulk path (see ``bulk``).

Values are DOUBLE everywhere (SQLAlchemy ``Double``: MariaDB's FLOAT is single precision).
A missing value is never stored: no row means NaN.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

from tracecalc.storage import duck

SCHEMA_VERSION = "11"

metadata = MetaData()


def Name(length: int = 64):  # noqa: N802 (a column type, like String)
    """A name or code: compared byte for byte, as SQLite and PostgreSQL do. MariaDB's
    default collation ignores case (``ACME`` and ``acme`` would be one key), so there the
    column is ``utf8mb4_bin`` (schema 8 converts older MariaDB databases)."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")

meta = Table(
    "tc_meta",
    metadata,
    Column("key", Name(), primary_key=True),
    Column("value", String(255), nullable=False),
)

items = Table(
    "tc_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Name(), nullable=False, unique=True),
    Column("frequency", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

entities = Table(
    "tc_entities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", Name(), nullable=False, unique=True),
    Column("name", String(200)),
    Column("sector", String(100)),
)

# The other attributes of entities (industry, country: any extra column of an entities
# file), one row per entity and attribute that has a value; ``sector`` stays in
# tc_entities. Formulas group by them (cs_rank(x, by=industry)).
entity_attributes = Table(
    "tc_entity_attributes",
    metadata,
    Column("entity_id", Integer, ForeignKey("tc_entities.id"), primary_key=True),
    Column("name", Name(), primary_key=True),
    Column("value", String(200), nullable=False),
)



def _values_table(name: str, key: str, versions: bool = False) -> Table:
    """A big table of values: (key, entity, period) -> value; data points and records.
    With ``versions``, (key, entity, period, known_at) -> value, NULL for "known to be
    missing from then": every version of the cells whose history is more than one value
    known at its own period. The latest version of every cell is also in the values table,
    which every latest-view read uses; a cell known once, at its period, is only there, so a
    database without report dates or restatements holds no version row.

    No foreign keys: a database checks them row by row on every bulk insert (PostgreSQL's
    COPY into tc_records ran at a third of its speed with them). Only tracecalc writes these
    tables, with ids it has just read, and it deletes a formula's records with the formula.

    On SQLite the rows live in the primary-key b-tree itself (WITHOUT ROWID): a rowid table
    keeps them twice, in the table and in the key's index. Measured on 6.4M rows in key
    order: 9 s and 202 MB against 12-14 s and 368 MB. (MariaDB's InnoDB clusters rows by
    the primary key anyway; PostgreSQL has no such layout.) On DuckDB the key is not
    declared at all (``storage.duck``: its index would cost two thirds of the insert speed).
    """
    return Table(
        name,
        metadata,
        Column(key, Integer, primary_key=True),
        Column("entity_id", Integer, primary_key=True),
        Column("period", Date, primary_key=True),
        *([Column("known_at", Date, primary_key=True)] if versions else []),
        Column("value", Double, nullable=versions),
        sqlite_with_rowid=False,
        info={duck.HEAP: True},
    )


data_points = _values_table("tc_data", "item_id")
data_versions = _values_table("tc_data_versions", "item_id", versions=True)

# The date a point was loaded with when the load moved it onto its item's calendar
# (``load_data(snap=True)``; storage.calendars.SNAP_RULES): a fiscal quarter ending on
# 2024-01-31 is stored at 2023-12-31, and its own date is kept here.
snapped = Table(
    "tc_snapped",
    metadata,
    Column("item_id", Integer, primary_key=True),
    Column("entity_id", Integer, primary_key=True),
    Column("period", Date, primary_key=True),
    Column("original", Date, nullable=False),
    sqlite_with_rowid=False,
)

# The formula graph's nodes and links (the shape of storage.trace's TraceNode/TraceLink, as
# plain tables: the engine reads and writes them through Core, never the ORM).
formulas = Table(
    "tc_formulas",
    metadata,
    Column("name", Name(), nullable=False, unique=True),
    Column("expression", Text, nullable=False),
    Column("canonical", Text, nullable=False),
    Column("canonical_key", String(40), nullable=False, index=True),  # sha1 of canonical
    Column("description", Text, nullable=False, default=""),
    Column("frequency", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(8), nullable=False),
    # Bumped whenever the formula is marked stale from outside a run (see Engine.recalc).
    Column("stale_seq", Integer, nullable=False, default=0),
    # A stale or partial formula: the first period to recompute (NULL: its first one).
    Column("stale_since", Date),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(128), nullable=False),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("changed", Boolean, nullable=False, default=True, index=True),  # (unused since 12)
)

# A formula (node_id) references another formula (depends_on_id).
formula_links = Table(
    "tc_formula_links",
    metadata,
    Column("node_id", Integer, ForeignKey("tc_formulas.id", ondelete="CASCADE"),
           primary_key=True),
    Column("depends_on_id", Integer, ForeignKey("tc_formulas.id", ondelete="CASCADE"),
           primary_key=True, index=True),
)

# References from formulas to data items (the leaves of the graph).
formula_items = Table(
    "tc_formula_items",
    metadata,
    Column("formula_id", Integer, ForeignKey("tc_formulas.id", ondelete="CASCADE"),
           primary_key=True),
    Column("item_id", Integer, ForeignKey("tc_items.id"), primary_key=True, index=True),
)

formula_history = Table(
    "tc_formula_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("formula_name", Name(), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("action", String(8), nullable=False),  # create | update | delete
    Column("old_expression", Text),
    Column("new_expression", Text),
    Column("changed_at", DateTime, nullable=False),
    Column("changed_by", String(128), nullable=False),
)

records = _values_table("tc_records", "formula_id")
record_versions = _values_table("tc_record_versions", "formula_id", versions=True)

# One 64-bit digest per (formula, entity) of the entity's computed column: its present cells
# salted with their dates (tracecalc.evaluator.column_digests). A run compares digests first
# and reads stored records only where they differ, so a full run over unchanged data reads
# and writes almost nothing.
# Invariant: a formula's records of an entity are only ever written with its digest.
digests = Table(
    "tc_digests",
    metadata,
    Column("formula_id", Integer, primary_key=True),  # no foreign key: as tc_records
    Column("entity_id", Integer, primary_key=True),
    Column("digest", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# The columns of Name type (made utf8mb4_bin on an older MariaDB database by schema 8).
NAME_COLUMNS = (("tc_meta", "key"), ("tc_items", "name"), ("tc_entities", "code"),
                ("tc_formulas", "name"), ("tc_formula_history", "formula_name"),
                ("tc_run_formulas", "formula_name"))

runs = Table(
    "tc_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(16), nullable=False),
    Column("formulas_computed", Integer, nullable=False, default=0),
    Column("records_written", Integer, nullable=False, default=0),
    Column("records_unchanged", Integer, nullable=False, default=0),
    Column("run_by", String(128), nullable=False),
    Column("message", Text),
)

# The audit of each run, per formula: written in the formula's own write transaction.
run_formulas = Table(
    "tc_run_formulas",
    metadata,
    Column("run_id", Integer, ForeignKey("tc_runs.id"), primary_key=True),
    Column("formula_name", Name(), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("entities", Integer, nullable=False),  # recomputed; 0 = skipped (early cutoff)
    Column("records_written", Integer, nullable=False),
    Column("records_unchanged", Integer, nullable=False),
    Column("seconds", Double, nullable=False),
    Column("first_period", Date),  # the first period recomputed (NULL: the first one)
    Column("records_read", BigInteger, nullable=False, default=0),  # stored, to compare
)

# Entities whose records of a formula must be recomputed (formula state 'partial').
stale_entities = Table(
    "tc_stale",
    metadata,
    Column("formula_id", Integer, ForeignKey("tc_formulas.id", ondelete="CASCADE"),
           primary_key=True),
    Column("entity_id", Integer, ForeignKey("tc_entities.id"), primary_key=True),
)

# The calendar of each frequency: every date of its grid (storage.calendars) from the first
# data point of that frequency to the last. Panels of a frequency have one row per period.
periods = Table(
    "tc_periods",
    metadata,
    Column("frequency", String(16), primary_key=True),
    Column("period", Date, primary_key=True),
)
