"""Schema 6: ``tc_digests``, one digest per (formula, entity) of its computed column.

A record without a digest only means "compare with the stored records", so the table
starts empty and the next run fills it without recomputing anything needlessly.
"""

import sqlalchemy as sa
from alembic import op

from tracecalc.storage.migrations import set_schema

revision = "schema6"
down_revision = "schema5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(  # as schema 6 had it; schema 7 rebuilds it WITHOUT ROWID on SQLite
        "tc_digests",
        sa.Column("formula_id", sa.Integer, primary_key=True),
        sa.Column("entity_id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.BigInteger, nullable=False),
    )
    set_schema("6")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore a backup")
