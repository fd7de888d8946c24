"""The tables. Catalog tables are small and go through SQLAlchemy Core; the two big tables
(``data_points`` and ``records``) move through each driver's bulk path (see ``bulk``).

Values are DOUBLE everywhere (SQLAlchemy ``Double``: MariaDB's FLOAT is single precision).
A missing value is never stored: no row means NaN.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = "1"

metadata = MetaData()

meta = Table(
    "tc_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

items = Table(
    "tc_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("frequency", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

entities = Table(
    "tc_entities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200)),
    Column("sector", String(100)),
)

data_points = Table(
    "tc_data",
    metadata,
    Column("item_id", Integer, ForeignKey("tc_items.id"), primary_key=True),
    Column("entity_id", Integer, ForeignKey("tc_entities.id"), primary_key=True),
    Column("period", Date, primary_key=True),
    Column("value", Double, nullable=False),
)

formulas = Table(
    "tc_formulas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("expression", Text, nullable=False),
    Column("canonical", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("frequency", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(8), nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# The dependency graph: one row per reference of a formula (to an item or to a formula).
formula_deps = Table(
    "tc_formula_deps",
    metadata,
    Column("formula_id", Integer, ForeignKey("tc_formulas.id"), primary_key=True),
    Column("ref_name", String(64), primary_key=True),
    Column("ref_kind", String(8), nullable=False),  # "item" | "formula"
    Index("ix_tc_formula_deps_ref", "ref_name"),
)

formula_history = Table(
    "tc_formula_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("formula_name", String(64), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("action", String(8), nullable=False),  # create | update | delete
    Column("old_expression", Text),
    Column("new_expression", Text),
    Column("changed_at", DateTime, nullable=False),
    Column("changed_by", String(128), nullable=False),
)

records = Table(
    "tc_records",
    metadata,
    Column("formula_id", Integer, ForeignKey("tc_formulas.id"), primary_key=True),
    Column("entity_id", Integer, ForeignKey("tc_entities.id"), primary_key=True),
    Column("period", Date, primary_key=True),
    Column("value", Double, nullable=False),
)

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
    Column("run_by", String(128), nullable=False),
    Column("message", Text),
)

# The calendar of each frequency: every period any item of that frequency has data for.
# Panels of a frequency have one row per calendar period.
periods = Table(
    "tc_periods",
    metadata,
    Column("frequency", String(16), primary_key=True),
    Column("period", Date, primary_key=True),
)
