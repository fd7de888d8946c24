"""Schema 10: staleness by period and a run log by dates (issues 13 and 15).

- ``tc_formulas.stale_since``: the first period a stale or partial formula must be
  recomputed from (NULL: from its first period);
- ``tc_run_formulas.first_period`` and ``records_read``: per run and formula, the first
  period recomputed and how many stored records were read to compare;
- digests are now salted with each cell's date and cover present cells only
  (``evaluator.column_digests``), so a period-incremental run can update them: the stored
  ones are dropped and every formula is marked stale, so the next ``recalc`` compares its
  records cell by cell (rewriting none that are right) and stores the new digests.
"""

import sqlalchemy as sa
from alembic import op

from tracecalc.storage.migrations import set_schema

revision = "schema10"
down_revision = "schema9"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tc_formulas", sa.Column("stale_since", sa.Date, nullable=True))
    op.add_column("tc_run_formulas", sa.Column("first_period", sa.Date, nullable=True))
    op.add_column("tc_run_formulas", sa.Column("records_read", sa.BigInteger, nullable=False,
                                               server_default="0"))
    op.execute(sa.delete(sa.table("tc_digests")))
    op.execute(sa.delete(sa.table("tc_stale")))
    formulas = sa.table("tc_formulas", sa.column("state"), sa.column("stale_seq"))
    op.execute(sa.update(formulas).values(state="stale", stale_seq=formulas.c.stale_seq + 1))
    set_schema("10")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore a backup")
