"""Alembic's environment for tracecalc: the migrations run on the connection the caller
hands over (``tracecalc.storage.migrations`` does), inside its transaction. Given none (the
``alembic`` command with an ini file of one's own, to try a revision), it connects to the
ini's ``sqlalchemy.url``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tracecalc.storage.migrations import VERSION_TABLE
from tracecalc.storage.schema import metadata


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():  # in the caller's transaction: that one commits
        context.run_migrations()


def _main() -> None:
    conn = context.config.attributes.get("connection")
    if conn is not None:
        _run(conn)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as own:
            _run(own)
    finally:
        engine.dispose()


_main()
