"""tracecalc db: the schema's migrations (current, upgrade)."""

from __future__ import annotations

import click

from tracecalc import cli
from tracecalc.cli import handle_errors, main
from tracecalc.errors import TracecalcError


@main.group()
def db():
    """The database's schema: the migration it is at (current), and upgrading it (upgrade)."""


def _store(ctx: click.Context):
    """The database without its tables checked: these commands read them themselves."""
    from tracecalc.storage import Store

    url = ctx.find_root().ensure_object(dict)["db"]
    if not url.strip():
        raise TracecalcError("--db (or TRACECALC_DB) is empty; give a database URL such as "
                             "sqlite:///finance.db")
    store = Store(url, create=False, check=False)
    ctx.call_on_close(store.dispose)
    return store


@db.command("current")
@click.pass_context
@handle_errors
def db_current(ctx):
    """The schema's revision, and whether it is the head (this tracecalc's newest)."""
    from tracecalc.storage import migrations

    store = _store(ctx)
    state = migrations.current(store)
    if state.schema is None:
        raise TracecalcError(f"no tracecalc tables in the database {store.safe_url}; check "
                             "--db (or TRACECALC_DB), or create them with tracecalc init")
    try:
        migrations.refuse_unknown(state)
    except TracecalcError:
        cli.out.print(f"{state.revision or 'schema ' + state.schema} (newer than this "
                      f"tracecalc's head {migrations.HEAD}: upgrade tracecalc)", markup=False)
        return
    rev = state.effective
    note = "; not stamped yet, a database from before migrations" if not state.revision else ""
    if rev == migrations.HEAD:
        cli.out.print(f"{rev} (head{note})", markup=False)
    else:
        cli.out.print(f"{rev} (not the head, {migrations.HEAD}{note}); upgrade with: "
                      f"{migrations.upgrade_command(store)}", markup=False, soft_wrap=True)


@db.command("upgrade")
@click.pass_context
@handle_errors
def db_upgrade(ctx):
    """Upgrade the schema to the head, in place (as opening it to change it does)."""
    from tracecalc.storage import migrations

    store = _store(ctx)
    if migrations.current(store).current:  # a read: a read-only database says so too
        cli.out.print(f"already at the head, {migrations.HEAD}")
        return
    before = migrations.upgrade(store, create=False)
    if before.current:
        cli.out.print(f"already at the head, {migrations.HEAD}")
    elif before.effective == migrations.HEAD:  # from before migrations: only stamped
        cli.out.print(f"stamped at the head, {migrations.HEAD} (the tables were current)")
    else:
        cli.out.print(f"upgraded from {before.effective} to {migrations.HEAD}")
