"""Schema 5: the oldest schema tracecalc upgrades, and the root of the revisions.

A database of schema 5 or later from before Alembic is stamped at its own revision. A new
database is created whole from ``tracecalc.storage.schema`` and stamped at the head, so
this upgrade never runs.
"""

revision = "schema5"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    raise NotImplementedError("tracecalc creates a new database whole (Store, tracecalc init) "
                              "and stamps it at the head")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore a backup")
