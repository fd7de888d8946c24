"""Commands that load, delete and export data: init, load-data, delete-data, load-entities,
export."""

from __future__ import annotations

import functools
import sys

import click

from tracecalc import cli
from tracecalc.cli import _engine, _escape, _readable, handle_errors, main
from tracecalc.cli.progress import _with_load_progress
from tracecalc.errors import plural


@main.command()
@click.pass_context
@handle_errors
def init(ctx):
    """Create the tracecalc tables in the database (if missing)."""
    eng = _engine(ctx, create=True)
    cli.out.print(f"tracecalc database ready: {eng.url}", markup=False)


@main.command("load-data")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--frequency", "-f", multiple=True, metavar="ITEM=FREQ",
              help="Declare an item's frequency (daily, weekly, monthly, quarterly, annual).")
@click.option("--no-new-entities", is_flag=True,
              help="Refuse the file if it has entities the database does not know "
                   "(load them with load-entities first).")
@click.option("--snap", is_flag=True,
              help="Move a period off its item's calendar onto it (a fiscal quarter ending "
                   "Jan 31 to Dec 31; see docs/formula-language.md) instead of refusing it.")
@click.pass_context
@handle_errors
def load_data(ctx, file, frequency, no_new_entities, snap):
    """Load data points from a CSV with columns item, entity, period, value [, frequency]
    [, known_at]."""
    _readable(file)
    freqs = {}
    for f in frequency:
        if "=" not in f:
            raise click.BadParameter(f"expected ITEM=FREQ, got {f!r}", param_hint="--frequency")
        k, v = f.split("=", 1)
        freqs[k.strip()] = v.strip().lower()
    try:
        res = _with_load_progress(_engine(ctx, create=True).load_data, file, frequencies=freqs,
                                  label=file, allow_new_entities=not no_new_entities,
                                  snap=snap)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--frequency") from None
    say = functools.partial(cli.out.print, markup=False)
    say(f"loaded {plural(res.rows, 'row')} for {plural(len(res.items), 'item')} "
        f"({plural(len(res.new_items), 'new item')}, "
        f"{plural(res.new_entities, 'new entity')}); "
        f"{plural(len(res.marked_stale), 'formula')} now stale")
    if res.new_items:
        say(f"{plural(len(res.new_items), 'new item')}: {_first(res.new_items)}")
    if res.new_entity_codes:
        say(f"{plural(len(res.new_entity_codes), 'new entity')}: "
            f"{_first(res.new_entity_codes)}")
    if res.snapped:
        say(f"moved {plural(res.snapped, 'point')} onto the calendar; history-data ITEM "
            "ENTITY PERIOD shows the date each was loaded with")
    if res.versions:
        say(f"{plural(res.versions, 'version row')} written (report dates, restatements)")
    for freq, days in res.removed_periods.items():
        say(_left_calendar(freq, days))
    for w in res.warnings:
        cli.err.print(f"[bold yellow]warning:[/] {_escape(w)}", soft_wrap=True)  # one line


def _first(names, n: int = 10) -> str:
    names = [str(x) for x in names]
    more = f", ... ({len(names) - n:,} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _left_calendar(freq: str, days) -> str:
    if len(days) == 1:
        return f"{days[0]} left the {freq} calendar (no data there any more)"
    return f"{plural(len(days), 'period')} left the {freq} calendar: {_first(days)}"


@main.command("delete-data")
@click.argument("item")
@click.option("--entity", "-e", multiple=True, metavar="E",
              help="Only the points of this entity (repeatable).")
@click.option("--period", "-p", multiple=True, metavar="P",
              help="Only the points at this date, YYYY-MM-DD (repeatable).")
@click.pass_context
@handle_errors
def delete_data(ctx, item, entity, period):
    """Delete data points of ITEM (or, with no option, the whole item if no formula uses it);
    all or nothing, dependents become stale."""
    res = _engine(ctx).delete_data(item, list(entity) or None, list(period) or None)
    say = functools.partial(cli.out.print, markup=False)
    if res.item_deleted:
        say(f"deleted item {item} and its {plural(res.points, 'data point')}")
    else:
        say(f"deleted {plural(res.points, 'data point')} of {item} "
                  f"({plural(len(res.entities), 'entity')}: {_first(res.entities)}; "
                  f"{plural(len(res.periods), 'period')}: {_first(res.periods)})")
    if res.removed_periods:
        say(_left_calendar(res.frequency, res.removed_periods))
    say(f"{plural(len(res.marked_stale), 'formula')} now stale"
              + (f": {_first(res.marked_stale)}" if res.marked_stale else ""))


@main.command("history-data")
@click.argument("item")
@click.argument("entity")
@click.argument("period")
@click.pass_context
@handle_errors
def history_data(ctx, item, entity, period):
    """Every version of one data point: when each value became known (known_at), oldest
    first; the latest is the one formulas read."""
    rows = _engine(ctx).history_data(item, entity, period)
    say = functools.partial(cli.out.print, markup=False)
    if rows[0]["loaded_as"]:
        say(f"loaded as {rows[0]['loaded_as']}, snapped onto the calendar")
    values = ["(missing)" if r["value"] is None else repr(r["value"]) for r in rows]
    width = max(len("value"), *map(len, values))
    say(f"{'known_at':<10}  {'value':>{width}}")
    for r, value in zip(rows, values):
        say(f"{r['known_at']:<10}  {value:>{width}}" + ("  latest" if r["latest"] else ""))


@main.command("daily-calendar")
@click.argument("name", required=False)
@click.pass_context
@handle_errors
def daily_calendar(ctx, name):
    """Show the daily calendar, or set it: weekdays (Monday to Friday, the default) or an
    exchange calendar code (XNYS, XLON, XTKS, ...); refused while daily data sits off it."""
    eng = _engine(ctx, create=name is not None)
    say = functools.partial(cli.out.print, markup=False)
    if name is None:
        say(eng.daily_calendar)
        return
    stale = eng.set_daily_calendar(name)
    say(f"daily calendar: {eng.daily_calendar}; {plural(len(stale), 'formula')} now stale")


@main.command("load-entities")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@handle_errors
def load_entities(ctx, file):
    """Load entities from a CSV: code, optionally name and sector, and any other column as
    an attribute formulas group by (cs_demean(x, by=industry))."""
    _readable(file)
    n = _engine(ctx, create=True).load_entities(file)
    cli.out.print(f"loaded {plural(n, 'entity')}")


@main.command()
@click.argument("names", nargs=-1)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
@click.option("--spreadsheet-safe", is_flag=True,
              help="Quote text cells starting with = + - @ so that spreadsheets show them "
                   "instead of running them (the file no longer loads back exactly).")
@click.option("--as-of", "as_of", default=None, metavar="DATE",
              help="The records as known on DATE: each data point at its version known then "
                   "(report dates, restatements).")
@click.pass_context
@handle_errors
def export(ctx, names, output, spreadsheet_safe, as_of):
    """Export records as CSV: formula, entity, period, value.

    NAMES are formulas or data items (default: every formula). The plain file is for
    programs: it loads back with load-data unchanged (dates, and every value to the last
    bit). A formula that is not fresh is exported with a warning on stderr.
    """
    import warnings

    from tracecalc.errors import StaleWarning
    from tracecalc.storage import files

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StaleWarning)
        df = _engine(ctx).export(list(names) or None, as_of=as_of)
    for w in caught:
        m = w.message
        if isinstance(m, StaleWarning):
            cli.err.print(f"[yellow]warning:[/] {_escape(m.formula)} is {m.state} ({m.scope}); "
                          "its records may be out of date: run tracecalc recalc", soft_wrap=True)
        else:
            warnings.warn_explicit(m, w.category, w.filename, w.lineno)
    if output:
        files.write_csv(df, output, spreadsheet_safe)
        cli.out.print(f"wrote {len(df):,} records to {_escape(output)}")
    else:
        files.write_csv(df, sys.stdout, spreadsheet_safe)
