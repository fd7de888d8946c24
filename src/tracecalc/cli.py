"""The ``tracecalc`` command: a thin layer over ``Engine`` that turns errors into one line.

Every library error becomes ``error: ...`` on stderr and exit code 1 (2 for usage errors);
never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from tracecalc.errors import (
    BusyError,
    DataError,
    NotFoundError,
    TracecalcError,
    close_matches,
    plural,
)
from tracecalc.model import VerifyReport
from tracecalc.storage import DEFAULT_URL
from tracecalc.storage.checks import describe, is_driver_error

EXIT_BUSY = 3  # another recalculation holds the lock
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
SHOWN = 20  # lines of each kind of verify finding printed

# A terminal's own width; piped or redirected output gets COLUMNS, else 160 (rather than
# rich's 80-column default), so that files and pipes keep whole lines.
_COLUMNS = os.environ.get("COLUMNS", "")
_WIDTH = (None if sys.stdout.isatty() else
          int(_COLUMNS) if _COLUMNS.isdigit() and int(_COLUMNS) >= 40 else 160)
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


def _engine(ctx: click.Context, create: bool = False):
    """The command's engine. Only commands that write (init, loads, saves) may create the
    database: a misspelt --db must not leave an empty file behind a read."""
    from tracecalc.engine import Engine

    obj = ctx.find_root().ensure_object(dict)
    if not obj["db"].strip():
        raise TracecalcError("--db (or TRACECALC_DB) is empty; give a database URL such as "
                             "sqlite:///finance.db")
    if "engine" not in obj:
        obj["engine"] = Engine(obj["db"], user=obj.get("user"), create=create)
        ctx.call_on_close(obj["engine"].close)
    return obj["engine"]


def handle_errors(fn):
    """Turn every failure into one message and a non-zero exit code: library errors and
    file errors exit 1, a busy database 3, an interrupt 130. An unexpected exception is
    reported in one line too (``TRACECALC_DEBUG=1`` shows its traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except BusyError as e:
            _fail(str(e), EXIT_BUSY, "busy")
        except TracecalcError as e:
            _fail(str(e), 1)
        except BrokenPipeError:  # `tracecalc export | head`: the reader left
            sys.stdout = open(os.devnull, "w")  # as Python's docs advise for SIGPIPE
            sys.exit(1)
        except OSError as e:
            what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            _fail(what, 1)
        except KeyboardInterrupt:
            _fail("interrupted; what was committed stays (a recalculation resumes with the "
                  "next run)", EXIT_INTERRUPTED)
        except Exception as e:
            if is_driver_error(e):  # a driver error outside what the store translates
                _fail(describe(e, "the database"), 1)
            if os.environ.get("TRACECALC_DEBUG"):
                raise
            _fail(f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]} (a bug: "
                  "please report it; TRACECALC_DEBUG=1 shows the traceback)", 1)

    return wrapper


def _readable(file: str) -> None:
    """A file to load must be there before the database is opened (and maybe created)."""
    if not os.path.isfile(file):
        what = "is a folder, not a file" if os.path.isdir(file) else "no such file"
        raise DataError(what, source=file)


def _fail(message: str, code: int, label: str = "error") -> None:
    err.print(Text.assemble((f"{label}:", "bold red"), " ", message), soft_wrap=True)
    sys.exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="TRACECALC_DB", default=DEFAULT_URL, show_default=True,
              help="Database URL (sqlite:///file.db, postgresql://..., mysql://...); "
                   "or set TRACECALC_DB.")
@click.option("--user", envvar="TRACECALC_USER", default=None,
              help="Who is making changes (default: TRACECALC_USER, then the OS user).")
@click.version_option(package_name="tracecalc")
@click.pass_context
def main(ctx: click.Context, db: str, user: str | None) -> None:
    """tracecalc: finance formulas recomputed in dependency order, stored in a database."""
    ctx.ensure_object(dict).update(db=db, user=user)


@main.command()
@click.pass_context
@handle_errors
def init(ctx):
    """Create the tracecalc tables in the database (if missing)."""
    eng = _engine(ctx, create=True)
    out.print(f"tracecalc database ready: {eng.url}", markup=False)


@main.command("load-data")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--frequency", "-f", multiple=True, metavar="ITEM=FREQ",
              help="Declare an item's frequency (daily, weekly, monthly, quarterly, annual).")
@click.option("--no-new-entities", is_flag=True,
              help="Refuse the file if it has entities the database does not know "
                   "(load them with load-entities first).")
@click.pass_context
@handle_errors
def load_data(ctx, file, frequency, no_new_entities):
    """Load data points from a CSV with columns item, entity, period, value."""
    _readable(file)
    freqs = {}
    for f in frequency:
        if "=" not in f:
            raise click.BadParameter(f"expected ITEM=FREQ, got {f!r}", param_hint="--frequency")
        k, v = f.split("=", 1)
        freqs[k.strip()] = v.strip().lower()
    try:
        res = _with_load_progress(_engine(ctx, create=True).load_data, file, frequencies=freqs,
                                  label=file, allow_new_entities=not no_new_entities)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--frequency") from None
    say = functools.partial(out.print, markup=False)
    say(f"loaded {plural(res.rows, 'row')} for {plural(len(res.items), 'item')} "
        f"({plural(len(res.new_items), 'new item')}, "
        f"{plural(res.new_entities, 'new entity')}); "
        f"{plural(len(res.marked_stale), 'formula')} now stale")
    if res.new_items:
        say(f"{plural(len(res.new_items), 'new item')}: {_first(res.new_items)}")
    if res.new_entity_codes:
        say(f"{plural(len(res.new_entity_codes), 'new entity')}: "
            f"{_first(res.new_entity_codes)}")
    for freq, days in res.removed_periods.items():
        say(_left_calendar(freq, days))
    for w in res.warnings:
        err.print(f"[bold yellow]warning:[/] {_escape(w)}", soft_wrap=True)  # one line


def _with_load_progress(load, *args, **kw):
    """A progress bar while a load runs, when standard output is a terminal."""
    if not out.is_terminal:
        return load(*args, **kw)
    with _bar("loading") as (bar, task):
        def progress(done, total, what):  # total 0: reading and checking, no measure
            bar.update(task, completed=done, total=total or None, description=Text(what))

        return load(*args, progress=progress, **kw)


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
    say = functools.partial(out.print, markup=False)
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


@main.command("load-entities")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@handle_errors
def load_entities(ctx, file):
    """Load entity attributes from a CSV with columns code, name, sector."""
    _readable(file)
    n = _engine(ctx, create=True).load_entities(file)
    out.print(f"loaded {plural(n, 'entity')}")


@main.command("load-formulas")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@handle_errors
def load_formulas(ctx, file):
    """Load formulas from CSV (name, expression, description) or YAML; all or nothing."""
    from tracecalc.storage.files import read_formulas

    _readable(file)
    rows = read_formulas(file)
    res = _engine(ctx, create=True).set_formulas(rows)
    created = sum(r.created for r in res)
    changed = sum(bool(r.marked_stale) and not r.created for r in res)
    described = sum(r.described for r in res)
    out.print(f"saved {plural(len(res), 'formula')} ({created} new, {changed} changed, "
              f"{len(res) - created - changed} unchanged"
              + (f", {described} with a new description" if described else "") + ")",
              markup=False)


class _ExpressionCommand(click.Command):
    """A command whose EXPRESSION may start with '-' (``"-cogs + revenue"``): every word
    that is not one of the command's own options is an argument, as users type it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {o: not p.is_flag for p in self.get_params(ctx)
                       if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        head: list[str] = []
        tail: list[str] = []
        words = iter(args)
        for word in words:
            if word == "--":
                tail.extend(words)
                break
            opt = word.split("=", 1)[0] if word.startswith("--") else word
            if opt in takes_value:
                head.append(word)
                if takes_value[opt] and "=" not in word:
                    head.extend(itertools.islice(words, 1))
            else:
                tail.append(word)
        return super().parse_args(ctx, [*head, "--", *tail])


@main.command("set", cls=_ExpressionCommand)
@click.argument("name")
@click.argument("expression")
@click.option("--description", "-d", default=None, help="What the formula means.")
@click.pass_context
@handle_errors
def set_(ctx, name, expression, description):
    """Save formula NAME = EXPRESSION (validated; it and its dependents become stale).

    EXPRESSION may start with '-' ("-cogs + revenue")."""
    res = _engine(ctx, create=True).set_formula(name, expression, description)
    what = ("created" if res.created else "updated" if res.marked_stale else
            "unchanged, description updated" if res.described else "unchanged")
    out.print(f"{name} {what} (version {res.version})", markup=False)
    if res.equivalent_to_previous and res.marked_stale:
        out.print("note: the new text is equivalent to the previous one; it will be "
                  "recomputed once")
    if res.marked_stale:
        out.print(f"stale now: {', '.join(res.marked_stale)}", markup=False)


@main.command(cls=_ExpressionCommand)
@click.argument("name")
@click.argument("expression")
@click.pass_context
@handle_errors
def check(ctx, name, expression):
    """Validate NAME = EXPRESSION and show its impact, without saving.

    EXPRESSION may start with '-' ("-cogs + revenue")."""
    rep = _engine(ctx).check_formula(name, expression)
    if not rep.is_valid:
        for p in rep.problems:
            err.print(Text.assemble(("problem:", "bold red"), " ", p.message))
        sys.exit(1)
    say = functools.partial(out.print, markup=False)
    say(f"{name} = {rep.expression}: valid ({rep.frequency})")
    say(f"canonical form: {rep.canonical}")
    if rep.is_new:
        say(f"a new formula: no formula named {name} yet")
    elif rep.equivalent_to_current:
        say("equivalent to the current definition")
    else:
        say("not equivalent to the current definition (canonical forms differ): saving it "
            "recomputes it and what depends on it")
    if rep.equivalent_formulas:
        say(f"equivalent to: {', '.join(rep.equivalent_formulas)}")
    say(f"would recompute, in order: {' -> '.join(rep.affected)}")
    say(f"records in scope: {rep.records_in_scope:,}")


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def delete(ctx, name):
    """Delete formula NAME and its records (refused while others use it)."""
    _engine(ctx).delete_formula(name)
    out.print(f"deleted {name}", markup=False)


def _table(*columns: str, title: str | None = None, numeric: Iterable[str] = (),
           whole: Iterable[str] = ()) -> Table:
    """A table that stays readable at 80 columns: text columns wrap (``whole`` ones never),
    number columns are right aligned in one format and never wrap."""
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
              title_justify="left")
    numeric, whole = set(numeric), set(whole)
    for c in columns:
        if c in numeric:
            t.add_column(c, justify="right", no_wrap=True)
        else:
            t.add_column(c, overflow="fold", no_wrap=c in whole)
    return t


def _row(t: Table, *cells) -> None:
    """Add a row of literal text: stored names, texts and users are never markup."""
    t.add_row(*(Text(_cell(c)) for c in cells))


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, dt.datetime):
        return _when(v)
    return str(v)


def _when(v: dt.datetime | None) -> str:
    """A stored timestamp (UTC) with its zone: 2026-12-02 00:54:27Z."""
    if v is None:
        return ""
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC)
    return v.strftime("%Y-%m-%d %H:%M:%SZ")


@main.command("list")
@click.pass_context
@handle_errors
def list_(ctx):
    """List formulas."""
    df = _engine(ctx).formulas()
    t = _table("name", "expression", "frequency", "version", "state", numeric=["version"],
               whole=["frequency", "state"])
    for r in df.itertuples():
        _row(t, r.name, r.expression, r.frequency, int(r.version), r.state)
    out.print(t)
    out.print(plural(len(df), "formula"))


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def show(ctx, name):
    """Show a formula (text, canonical form, dependencies, dependents, history) or a data
    item (frequency, entities, periods, users)."""
    eng = _engine(ctx)
    say = functools.partial(out.print, markup=False)
    if name in eng.items():
        i = eng.item(name)
        say(f"{i.name}: data item, {i.frequency}")
        say(f"data points:  {i.points:,} for {plural(i.entities, 'entity', 'entities')}")
        say(f"periods:      {i.first or '-'} to {i.last or '-'}")
        say(f"used by:      {', '.join(i.used_by) or '-'}")
        return
    try:
        f = eng.formula(name)
    except NotFoundError:  # suggest items too
        names = [*eng.items(), *eng.formulas()["name"]]
        raise NotFoundError("formula or item", name, close_matches(name, names)) from None
    out.print(Text.assemble((f.name, "bold"), f" = {f.expression}"))
    if f.description:
        say(f"  {f.description}")
    say(f"canonical:    {f.canonical}")
    say(f"frequency:    {f.frequency}   version: {f.version}   state: {f.state}")
    say(f"depends on:   {', '.join(f.references) or '-'}")
    say(f"used by:      {', '.join(eng.dependents(name)) or '-'}")
    t = _table("version", "action", "when (UTC)", "who", "text", title="history",
               numeric=["version"], whole=["when (UTC)"])
    for h in eng.history(name):
        _row(t, h["version"], h["action"], h["changed_at"], h["changed_by"],
             h["new_expression"])
    out.print(t)


@main.command()
@click.option("--full", is_flag=True, help="Recompute every formula (the nightly batch).")
@click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Wait this long for a running recalculation to finish (else exit 3).")
@click.option("--atomic", is_flag=True,
              help="One transaction for the whole run: readers see all of it or nothing.")
@click.option("--workers", type=int, default=None, help="Evaluation threads.")
@click.option("--chunk-entities", type=click.IntRange(min=1), default=None, metavar="N",
              help="Entities per chunk (memory bound; default: about 400,000 cells).")
@click.option("--dask", "dask", default=None, metavar="ADDRESS",
              help="Partition the entities across the Dask cluster at this scheduler "
                   "address (tcp://host:8786); needs the dask extra.")
@click.option("--verify", is_flag=True,
              help="Compare values with the stored records cell by cell instead of trusting "
                   "stored digests; repair records and digests that differ (see verify).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def recalc(ctx, full, wait, atomic, workers, chunk_entities, dask, verify, quiet):
    """Recompute what is stale (all with --full); write only records that changed."""
    rep = _run_recalc(_engine(ctx), full, quiet, wait=wait, atomic=atomic, workers=workers,
                      chunk_entities=chunk_entities, dask=dask, verify=verify)
    skipped = len(rep.formulas) - rep.formulas_computed
    out.print(f"run {rep.run_id}: {plural(rep.formulas_computed, 'formula')} recomputed"
              + (f" ({skipped:,} skipped: nothing upstream changed)" if skipped else "")
              + f", {plural(rep.records_written, 'record')} written, "
              f"{rep.records_unchanged:,} unchanged, in {rep.seconds:.2f}s", markup=False)

    if rep.verify:
        out.print("verified: every recomputed record compared with the stored one"
                  + (f"; {rep.strays_removed:,} stray records removed (of formulas, entities"
                     " or periods that no longer exist)" if rep.strays_removed else ""))


@main.command()
@click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Wait this long for a running recalculation to finish (else exit 3).")
@click.option("--chunk-entities", type=click.IntRange(min=1), default=None, metavar="N",
              help="Entities read at a time (memory bound; default: about 400,000 cells).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def verify(ctx, wait, chunk_entities, quiet):
    """Check the database's integrity and every stored record against its digest."""
    eng = _engine(ctx)
    if quiet or not out.is_terminal:
        rep = eng.verify(wait=wait, chunk_entities=chunk_entities)
    else:
        with _bar() as (bar, task):
            def progress(done, total, name):
                bar.update(task, completed=done, total=total, description=f"verifying {name}")

            rep = eng.verify(wait=wait, chunk_entities=chunk_entities, progress=progress)
    out.print(f"database:  {rep.database}", markup=False)
    out.print(f"integrity: {rep.integrity_method}: "
              + (f"{len(rep.integrity)} problems" if rep.integrity else "ok"))
    for line in rep.integrity[:SHOWN]:
        out.print(f"  {_escape(line)}")
    if len(rep.integrity) > SHOWN:
        out.print(f"  ... and {len(rep.integrity) - SHOWN} more")
    if rep.damaged_tables:
        out.print(f"damaged:   {', '.join(rep.damaged_tables)}")
    for note in rep.notes:
        out.print(f"note: {_escape(note)}")
    out.print(f"records:   {rep.records:,} records and {rep.digests:,} digests of "
              f"{rep.formulas} formulas and {rep.entities:,} entities, in {rep.seconds:.2f}s")
    if rep.outdated_digests:
        out.print(f"note: {rep.outdated_digests:,} digests predate periods added since "
                  "(fine: the next run compares those entities cell by cell)")
    for kind, n in rep.counts:
        out.print(f"{kind}: {n:,}")
    listed: dict[str, int] = {}
    for f in rep.findings:
        listed[f.kind] = listed.get(f.kind, 0) + 1
        if listed[f.kind] <= SHOWN:
            where = f.formula + (f" / {f.entity}" if f.entity else "")
            out.print(f"  {f.kind}: {_escape(where)}: {_escape(f.detail)}")
    for kind, n in listed.items():
        if n > SHOWN:
            out.print(f"  ... and {n - SHOWN:,} more {kind} findings (Engine.verify lists "
                      f"{VerifyReport.MAX_LISTED:,} of each kind)")
    if rep.ok:
        out.print("verified: no problems found")
        return
    raise TracecalcError(_verify_advice(rep))


def _verify_advice(rep) -> str:
    """The one line that says what is wrong and what to do."""
    if rep.corrupt or rep.integrity:
        where = f", in {', '.join(rep.damaged_tables)}" if rep.damaged_tables else ""
        what = (f"{rep.integrity_method}: {len(rep.integrity)} problems"
                if rep.integrity else "reads failed")
        derived = rep.damaged_tables and set(rep.damaged_tables) <= {"tc_records",
                                                                     "tc_digests"}
        return (f"the database is damaged ({what}{where}): restore a backup"
                + (", or rebuild the records" if derived else "") + " (docs/operations.md)")
    return (f"{rep.problems:,} problems in the stored records: run "
            "`tracecalc recalc --full --verify` to compare and repair every record")


class _Count(ProgressColumn):
    """done/total once the total is known; nothing while the run is being planned."""

    def render(self, task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed):,}/{int(task.total):,}", style="progress.download")


def _run_recalc(eng, full: bool, quiet: bool, **kw):
    if quiet or not out.is_terminal:
        return eng.recalc(full=full, **kw)
    with _bar("planning: reading the catalog and the stale marks") as (bar, task):
        def progress(done, total, name):
            what = Text(f"recalculating {name}" if name else "recalculating")
            bar.update(task, completed=done, total=total, description=what)

        return eng.recalc(full=full, progress=progress, **kw)


@contextlib.contextmanager
def _bar(first: str = "starting"):
    """A transient progress bar; a spinner and ``first`` until the total is known."""
    cols = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Count(),
            TimeElapsedColumn())
    with Progress(*cols, console=out, transient=True) as bar:
        yield bar, bar.add_task(first, total=None)


@main.command()
@click.argument("names", nargs=-1)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
@click.option("--spreadsheet-safe", is_flag=True,
              help="Quote text cells starting with = + - @ so that spreadsheets show them "
                   "instead of running them (the file no longer loads back exactly).")
@click.pass_context
@handle_errors
def export(ctx, names, output, spreadsheet_safe):
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
        df = _engine(ctx).export(list(names) or None)
    for w in caught:
        m = w.message
        if isinstance(m, StaleWarning):
            err.print(f"[yellow]warning:[/] {_escape(m.formula)} is {m.state} ({m.scope}); "
                      "its records may be out of date: run tracecalc recalc", soft_wrap=True)
        else:
            warnings.warn_explicit(m, w.category, w.filename, w.lineno)
    if output:
        files.write_csv(df, output, spreadsheet_safe)
        out.print(f"wrote {len(df):,} records to {_escape(output)}")
    else:
        files.write_csv(df, sys.stdout, spreadsheet_safe)


@main.command()
@click.pass_context
@handle_errors
def status(ctx):
    """Counts, and the formulas waiting for a recalculation."""
    eng = _engine(ctx)
    s = eng.status()
    say = functools.partial(out.print, markup=False)
    say(f"database:    {eng.url}")
    say(f"formulas:    {s['formulas']:,} ({len(s['stale']):,} not fresh)")
    say(f"items:       {s['items']:,}")
    say(f"entities:    {s['entities']:,}")
    say(f"data points: {s['data_points']:,}")
    say(f"records:     {s['records']:,}")
    if s["stale"]:
        t = _table("formula", "state", "entities to recompute",
                   title="waiting for recalc (in order)", numeric=["entities to recompute"])
        for name in s["stale"]:
            state = s["states"][name]
            scope = {"stale": "all", "pending": "where inputs change"}.get(
                state, s["stale_entities"].get(name, 0))
            _row(t, name, state, scope)
        out.print(t)


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def impact(ctx, name):
    """What depends on formula or item NAME, in recalculation order."""
    down = _engine(ctx).dependents(name, transitive=True)
    out.print(f"{plural(len(down), 'formula')} depend{'s' if len(down) == 1 else ''} on "
              f"{name}" + (":" if down else ""), markup=False)
    for n in down:
        out.print(f"  {n}", markup=False)


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def deps(ctx, name):
    """What formula NAME depends on, all the way up, in order."""
    eng = _engine(ctx)
    up = eng.dependencies(name, transitive=True)
    items = eng.items()
    out.print(f"{name} depends on {plural(len(up), 'formula or item', 'formulas and items')}"
              + (":" if up else ""), markup=False)
    for n in up:
        out.print(f"  {n}  ({'item, ' + items[n] if n in items else 'formula'})", markup=False)


@main.command()
@click.argument("name")
@click.argument("entity")
@click.argument("period")
@click.pass_context
@handle_errors
def explain(ctx, name, entity, period):
    """Show how the record of NAME for ENTITY at PERIOD was computed."""
    from rich.tree import Tree

    e = _engine(ctx).explain(name, entity, period)
    out.print(f"[bold]{e['formula']}[/] (version {e['version']}, {e['frequency']}) = "
              f"{_escape(e['expression'])}")
    out.print(f"entity {_escape(e['entity'])}, period {e['period']}: stored value "
              f"{_num(e['stored'])}")

    def add(branch, node):
        label = f"{_escape(node['text'])} = [bold]{_num(node['value'])}[/]"
        if node["kind"] in ("item", "formula"):
            label += f"  ({node['kind']})"
        b = branch.add(label)
        for w in node.get("window", []):
            vals = ", ".join(f"{p}: {_num(v)}" for p, v in w["values"])
            b.add(f"[dim]window of {_escape(w['text'])}: {vals}[/]")
        for child in node["children"]:
            add(b, child)

    root = Tree(f"{_escape(e['tree']['text'])} = [bold]{_num(e['tree']['value'])}[/]")
    for w in e["tree"].get("window", []):
        vals = ", ".join(f"{p}: {_num(v)}" for p, v in w["values"])
        root.add(f"[dim]window of {_escape(w['text'])}: {vals}[/]")
    for child in e["tree"]["children"]:
        add(root, child)
    out.print(root)


def _num(v) -> str:
    return "missing" if v is None else f"{v:.10g}"


@main.command()
@click.option("--limit", "-n", default=20, show_default=True)
@click.option("--id", "run_id", type=int, default=None, help="Show one run, per formula.")
@click.pass_context
@handle_errors
def runs(ctx, limit, run_id):
    """The run log: the latest recalculations, or one of them per formula (--id)."""
    eng = _engine(ctx)
    if run_id is not None:
        t = _table("formula", "version", "entities", "written", "unchanged", "seconds",
                   title=f"run {run_id}", whole=["entities"],
                   numeric=["version", "entities", "written", "unchanged", "seconds"])
        for r in eng.run_log(run_id):
            _row(t, r["formula_name"], r["version"], r["entities"] or "skipped",
                 r["records_written"], r["records_unchanged"], float(r["seconds"]))
        out.print(t)
        return
    t = _table("id", "kind", "started (UTC)", "status", "formulas", "written", "unchanged",
               "by", numeric=["id", "formulas", "written", "unchanged"],
               whole=["kind", "started (UTC)", "status"])
    notes = []
    for r in eng.runs(limit):
        _row(t, r["id"], r["kind"], _when(r["started_at"])[:-4] + "Z", r["status"],
             r["formulas_computed"], r["records_written"], r["records_unchanged"], r["run_by"])
        if r["message"]:
            notes.append(f"run {r['id']}: {r['message']}")
    out.print(t)
    for n in notes:  # below the table: a message is as long as it needs to be
        out.print(n, markup=False, overflow="fold")


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def history(ctx, name):
    """Every saved version of a formula."""
    t = _table("version", "action", "when (UTC)", "who", "old", "new", numeric=["version"],
               whole=["when (UTC)"])
    for h in _engine(ctx).history(name):
        _row(t, h["version"], h["action"], h["changed_at"], h["changed_by"],
             h["old_expression"], h["new_expression"])
    out.print(t)


@main.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Folder with entities.csv, data.csv and formulas.csv "
                   "(default: the project's sample_data/).")
@click.option("--out", "db_file", default="tracecalc-demo.db", show_default=True,
              help="SQLite file to create (replaced if it exists).")
@handle_errors
def demo(data_dir, db_file):
    """Build a SQLite database from the sample data, run the nightly batch, edit a formula."""
    from tracecalc.demo import run_demo

    run_demo(_sample_dir(data_dir), Path(db_file), out, _run_recalc)


def _sample_dir(given: str | None) -> Path:
    candidates = [Path(given)] if given else [
        Path.cwd() / "sample_data", Path(__file__).resolve().parents[2] / "sample_data"]
    for c in candidates:
        if (c / "data.csv").is_file() and (c / "formulas.csv").is_file():
            return c
    raise TracecalcError("no sample data found (looked in "
                         f"{', '.join(str(c) for c in candidates)}); pass --data DIR")


# -- tracecalc db: the schema's migrations ------------------------------------------------------

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
        out.print(f"{state.revision or 'schema ' + state.schema} (newer than this tracecalc's "
                  f"head {migrations.HEAD}: upgrade tracecalc)", markup=False)
        return
    rev = state.effective
    note = "; not stamped yet, a database from before migrations" if not state.revision else ""
    if rev == migrations.HEAD:
        out.print(f"{rev} (head{note})", markup=False)
    else:
        out.print(f"{rev} (not the head, {migrations.HEAD}{note}); upgrade with: "
                  f"{migrations.upgrade_command(store)}", markup=False, soft_wrap=True)


@db.command("upgrade")
@click.pass_context
@handle_errors
def db_upgrade(ctx):
    """Upgrade the schema to the head, in place (as opening it to change it does)."""
    from tracecalc.storage import migrations

    store = _store(ctx)
    if migrations.current(store).current:  # a read: a read-only database says so too
        out.print(f"already at the head, {migrations.HEAD}")
        return
    before = migrations.upgrade(store, create=False)
    if before.current:
        out.print(f"already at the head, {migrations.HEAD}")
    else:
        out.print(f"upgraded from {before.effective} to {migrations.HEAD}")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
