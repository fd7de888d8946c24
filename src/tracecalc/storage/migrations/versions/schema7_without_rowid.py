"""Schema 7: SQLite keeps the bulk tables WITHOUT ROWID (rows in the primary-key b-tree
only, not twice); see ``tracecalc.storage.schema``. PostgreSQL and MariaDB only have their
version bumped.

Each table is copied in key order (every row appends to the new b-tree instead of landing
in its middle); this also drops the foreign keys schema 5 had on them.
"""

import sqlalchemy as sa
from alembic import op

from tracecalc.storage.migrations import set_schema

revision = "schema7"
down_revision = "schema6"
branch_labels = None
depends_on = None


def _values(key: str) -> list:
    return [sa.Column(key, sa.Integer, primary_key=True),
            sa.Column("entity_id", sa.Integer, primary_key=True),
            sa.Column("period", sa.Date, primary_key=True),
            sa.Column("value", sa.Double, nullable=False)]


TABLES = {
    "tc_data": _values("item_id"),
    "tc_records": _values("formula_id"),
    "tc_digests": [sa.Column("formula_id", sa.Integer, primary_key=True),
                   sa.Column("entity_id", sa.Integer, primary_key=True),
                   sa.Column("digest", sa.BigInteger, nullable=False)],
}


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for name, columns in TABLES.items():
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                (name,)).scalar()
            if sql is None or "WITHOUT ROWID" in sql.upper():
                continue
            cols = ", ".join(c.name for c in columns)
            key = ", ".join(c.name for c in columns if c.primary_key)
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}_v6")
            conn.exec_driver_sql(f"ALTER TABLE {name} RENAME TO {name}_v6")
            op.create_table(name, *columns, sqlite_with_rowid=False)
            conn.exec_driver_sql(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {name}_v6 "
                                 f"ORDER BY {key}")
            conn.exec_driver_sql(f"DROP TABLE {name}_v6")
    set_schema("7")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore a backup")
