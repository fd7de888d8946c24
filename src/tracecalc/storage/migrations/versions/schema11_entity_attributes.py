"""Schema 11: entity attributes (issue 14, groups).

``tc_entity_attributes`` holds every attribute of an entity other than its name and sector
(any extra column of an entities file: industry, country), one row per entity and attribute
with a value; cross-sectional formulas group by them (``cs_demean(x, by=industry)``). An
older database has none yet: the table starts empty and ``sector`` stays where it was.
"""

import sqlalchemy as sa
from alembic import op

from tracecalc.storage.migrations import set_schema
from tracecalc.storage.schema import Name

revision = "schema11"
down_revision = "schema10"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("tc_entity_attributes",
                    sa.Column("entity_id", sa.Integer, sa.ForeignKey("tc_entities.id"),
                              primary_key=True),
                    sa.Column("name", Name(), primary_key=True),
                    sa.Column("value", sa.String(200), nullable=False))
    set_schema("11")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore a backup")
