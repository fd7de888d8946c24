"""Schema 8: names and codes compare byte for byte on MariaDB too (``utf8mb4_bin``; its
default collation ignores case, so ``ACME`` and ``acme`` were one key). No two stored names
differ only in case there: the old collation refused them. SQLite and PostgreSQL compare
bytes already and only have their version bumped.
"""

from alembic import op

from tracecalc.storage.migrations import set_schema

revision = "schema8"
down_revision = "schema7"
branch_labels = None
depends_on = None

# (table, column): every name or code, each VARCHAR(64) NOT NULL
NAME_COLUMNS = (("tc_meta", "key"), ("tc_items", "name"), ("tc_entities", "code"),
                ("tc_formulas", "name"), ("tc_formula_history", "formula_name"),
                ("tc_run_formulas", "formula_name"))


def upgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        for table, column in NAME_COLUMNS:  # each ALTER commits on its own
            op.execute(f"ALTER TABLE {table} MODIFY `{column}` VARCHAR(64) CHARACTER SET "
                       "utf8mb4 COLLATE utf8mb4_bin NOT NULL")
    set_schema("8")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore a backup")
