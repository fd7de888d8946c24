"""Schema 9: fixed calendars and versions of values (issue 13).

- ``tc_data_versions`` and ``tc_record_versions``: every version of a cell whose history is
  more than one value known at its period (empty until a load brings ``known_at``);
- ``tc_snapped``: the original dates of points a load moved onto the calendar;
- each frequency's calendar (``tc_periods``) becomes the whole grid from its first period to
  its last (``storage.calendars``): the dates missing inside it are added. Where a calendar
  gains dates, its formulas' windows step differently, so their digests are dropped and
  they are marked stale for the next ``recalc``. A period already stored off the grid (a
  weekend in daily data) stays where it is; ``load-data`` refuses new ones.
"""

import numpy as np
import sqlalchemy as sa
from alembic import op

from tracecalc.storage import calendars
from tracecalc.storage.migrations import set_schema

revision = "schema9"
down_revision = "schema8"
branch_labels = None
depends_on = None


def _versions(key: str) -> list:
    return [sa.Column(key, sa.Integer, primary_key=True),
            sa.Column("entity_id", sa.Integer, primary_key=True),
            sa.Column("period", sa.Date, primary_key=True),
            sa.Column("known_at", sa.Date, primary_key=True),
            sa.Column("value", sa.Double, nullable=True)]


def upgrade() -> None:
    conn = op.get_bind()
    op.create_table("tc_data_versions", *_versions("item_id"), sqlite_with_rowid=False)
    op.create_table("tc_record_versions", *_versions("formula_id"), sqlite_with_rowid=False)
    op.create_table("tc_snapped",
                    sa.Column("item_id", sa.Integer, primary_key=True),
                    sa.Column("entity_id", sa.Integer, primary_key=True),
                    sa.Column("period", sa.Date, primary_key=True),
                    sa.Column("original", sa.Date, nullable=False),
                    sqlite_with_rowid=False)
    periods = sa.table("tc_periods", sa.column("frequency"), sa.column("period", sa.Date))
    formulas = sa.table("tc_formulas", sa.column("id"), sa.column("frequency"),
                        sa.column("state"), sa.column("stale_seq"))
    digests = sa.table("tc_digests", sa.column("formula_id"))
    for freq in conn.execute(sa.select(periods.c.frequency).distinct()).scalars().all():
        have = np.array(conn.execute(sa.select(periods.c.period).where(
            periods.c.frequency == freq)).scalars().all(), dtype="datetime64[D]")
        full = calendars.grid(freq, have.min(), have.max())
        missing = np.setdiff1d(full, have)
        if not len(missing):
            continue
        conn.execute(sa.insert(periods), [{"frequency": freq, "period": d}
                                          for d in missing.tolist()])
        users = sa.select(formulas.c.id).where(formulas.c.frequency == freq)
        conn.execute(sa.delete(digests).where(digests.c.formula_id.in_(users)))
        conn.execute(sa.update(formulas).where(formulas.c.frequency == freq).values(
            state="stale", stale_seq=formulas.c.stale_seq + 1))
    set_schema("9")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore a backup")
