"""The ``tracecalc`` command: a thin layer over ``Engine`` that turns errors into one line.

Every library error becomes ``error: ...`` on stderr and exit code 1 (2 for usage errors);
never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tracecalc.errors import BusyError, TracecalcError
from tracecalc.storage import DEFAULT_URL

EXIT_BUSY = 3  # another recalculation holds the lock

# Piped or redirected output gets wide tables instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


def _engine(ctx: click.Context):
    from tracecalc.engine import Engine

    obj = ctx.ensure_object(dict)
    if "engine" not in obj:
        obj["engine"] = Engine(obj["db"], user=obj.get("user"))
        ctx.call_on_close(obj["engine"].close)
    return obj["engine"]


def handle_errors(fn):
    """Turn library errors into one message and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BusyError as e:
            err.print(f"[bold red]busy:[/] {_escape(str(e))}")
            sys.exit(EXIT_BUSY)
        except TracecalcError as e:
            err.print(f"[bold red]error:[/] {_escape(str(e))}")
            sys.exit(1)

    return wrapper


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
    eng = _engine(ctx)
    out.print(f"tracecalc database ready: {eng.url}")


@main.command("load-data")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--frequency", "-f", multiple=True, metavar="ITEM=FREQ",
              help="Declare an item's frequency (daily, weekly, monthly, quarterly, annual).")
@click.pass_context
@handle_errors
def load_data(ctx, file, frequency):
    """Load data points from a CSV with columns item, entity, period, value."""
    freqs = {}
    for f in frequency:
        if "=" not in f:
            raise click.BadParameter(f"expected ITEM=FREQ, got {f!r}", param_hint="--frequency")
        k, v = f.split("=", 1)
        freqs[k.strip()] = v.strip().lower()
    try:
        res = _engine(ctx).load_data(file, frequencies=freqs, label=file)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--frequency") from None
    out.print(f"loaded {res.rows:,} rows for {len(res.items)} items "
              f"({len(res.new_items)} new items, {res.new_entities} new entities); "
              f"{len(res.marked_stale)} formulas now stale")


@main.command("load-entities")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@handle_errors
def load_entities(ctx, file):
    """Load entity attributes from a CSV with columns code, name, sector."""
    n = _engine(ctx).load_entities(file)
    out.print(f"loaded {n} entities")


@main.command("load-formulas")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@handle_errors
def load_formulas(ctx, file):
    """Load formulas from CSV (name, expression, description) or YAML; all or nothing."""
    from tracecalc.storage.files import read_formulas

    rows = read_formulas(file)
    res = _engine(ctx).set_formulas(rows)
    created = sum(r.created for r in res)
    changed = sum(bool(r.marked_stale) and not r.created for r in res)
    out.print(f"saved {len(res)} formulas ({created} new, {changed} changed, "
              f"{len(res) - created - changed} unchanged)")


@main.command("set")
@click.argument("name")
@click.argument("expression")
@click.option("--description", "-d", default=None, help="What the formula means.")
@click.pass_context
@handle_errors
def set_(ctx, name, expression, description):
    """Save formula NAME = EXPRESSION (validated; it and its dependents become stale)."""
    res = _engine(ctx).set_formula(name, expression, description)
    what = "created" if res.created else ("unchanged" if not res.marked_stale else "updated")
    out.print(f"{name} {what} (version {res.version})")
    if res.equivalent_to_previous and res.marked_stale:
        out.print("note: the new text is equivalent to the previous one; it will be "
                  "recomputed once")
    if res.marked_stale:
        out.print(f"stale now: {', '.join(res.marked_stale)}")


@main.command()
@click.argument("name")
@click.argument("expression")
@click.pass_context
@handle_errors
def check(ctx, name, expression):
    """Validate NAME = EXPRESSION and show its impact, without saving."""
    rep = _engine(ctx).check_formula(name, expression)
    if not rep.is_valid:
        for p in rep.problems:
            err.print(f"[bold red]problem:[/] {_escape(p.message)}")
        sys.exit(1)
    out.print(f"{name} = {rep.expression}: valid ({rep.frequency})")
    out.print(f"canonical form: {rep.canonical}")
    if rep.equivalent_to_current:
        out.print("equivalent to the current definition")
    if rep.equivalent_formulas:
        out.print(f"equivalent to: {', '.join(rep.equivalent_formulas)}")
    out.print(f"would recompute, in order: {' -> '.join(rep.affected)}")
    out.print(f"records in scope: {rep.records_in_scope:,}")


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def delete(ctx, name):
    """Delete formula NAME and its records (refused while others use it)."""
    _engine(ctx).delete_formula(name)
    out.print(f"deleted {name}")


@main.command("list")
@click.pass_context
@handle_errors
def list_(ctx):
    """List formulas."""
    df = _engine(ctx).formulas()
    t = Table("name", "expression", "frequency", "version", "state")
    for r in df.itertuples():
        t.add_row(r.name, _escape(r.expression), r.frequency, str(r.version), r.state)
    out.print(t)
    out.print(f"{len(df)} formulas")


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def show(ctx, name):
    """Show a formula: text, canonical form, dependencies, dependents, history."""
    eng = _engine(ctx)
    f = eng.formula(name)
    out.print(f"[bold]{f.name}[/] = {_escape(f.expression)}")
    if f.description:
        out.print(f"  {_escape(f.description)}")
    out.print(f"canonical:    {_escape(f.canonical)}")
    out.print(f"frequency:    {f.frequency}   version: {f.version}   state: {f.state}")
    out.print(f"depends on:   {', '.join(f.references) or '-'}")
    out.print(f"used by:      {', '.join(eng.dependents(name)) or '-'}")
    t = Table("version", "action", "when", "who", "text", title="history")
    for h in eng.history(name):
        t.add_row(str(h["version"]), h["action"], str(h["changed_at"]), h["changed_by"],
                  _escape(h["new_expression"] or ""))
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def recalc(ctx, full, wait, atomic, workers, chunk_entities, dask, quiet):
    """Recompute what is stale (all with --full); write only records that changed."""
    rep = _run_recalc(_engine(ctx), full, quiet, wait=wait, atomic=atomic, workers=workers,
                      chunk_entities=chunk_entities, dask=dask)
    skipped = len(rep.formulas) - rep.formulas_computed
    out.print(f"run {rep.run_id}: {rep.formulas_computed} formulas recomputed"
              + (f" ({skipped} skipped: nothing upstream changed)" if skipped else "")
              + f", {rep.records_written:,} records written, "
              f"{rep.records_unchanged:,} unchanged, in {rep.seconds:.2f}s")


def _run_recalc(eng, full: bool, quiet: bool, **kw):
    if quiet or not out.is_terminal:
        return eng.recalc(full=full, **kw)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())
    with Progress(*cols, console=out, transient=True) as bar:
        task = bar.add_task("recalculating", total=None)

        def progress(done, total, name):
            bar.update(task, completed=done, total=total, description=f"recalculating {name}")

        return eng.recalc(full=full, progress=progress, **kw)


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
                      "its records may be out of date: run tracecalc recalc")
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
    out.print(f"database:    {eng.url}")
    out.print(f"formulas:    {s['formulas']} ({len(s['stale'])} not fresh)")
    out.print(f"items:       {s['items']}")
    out.print(f"entities:    {s['entities']}")
    out.print(f"data points: {s['data_points']:,}")
    out.print(f"records:     {s['records']:,}")
    if s["stale"]:
        t = Table("formula", "state", "entities to recompute",
                  title="waiting for recalc (in order)")
        for name in s["stale"]:
            state = s["states"][name]
            scope = {"stale": "all", "pending": "where inputs change"}.get(
                state, f"{s['stale_entities'].get(name, 0):,}")
            t.add_row(name, state, scope)
        out.print(t)


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def impact(ctx, name):
    """What depends on formula or item NAME, in recalculation order."""
    down = _engine(ctx).dependents(name, transitive=True)
    out.print(f"{len(down)} formulas depend on {name}" + (":" if down else ""))
    for n in down:
        out.print(f"  {n}")


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def deps(ctx, name):
    """What formula NAME depends on, all the way up, in order."""
    eng = _engine(ctx)
    up = eng.dependencies(name, transitive=True)
    items = eng.items()
    out.print(f"{name} depends on {len(up)} formulas and items" + (":" if up else ""))
    for n in up:
        out.print(f"  {n}  ({'item, ' + items[n] if n in items else 'formula'})")


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
        t = Table("formula", "version", "entities", "written", "unchanged", "seconds",
                  title=f"run {run_id}")
        for r in eng.run_log(run_id):
            t.add_row(r["formula_name"], str(r["version"]),
                      str(r["entities"]) if r["entities"] else "skipped",
                      f"{r['records_written']:,}", f"{r['records_unchanged']:,}",
                      f"{r['seconds']:.3f}")
        out.print(t)
        return
    t = Table("id", "kind", "started", "finished", "status", "formulas", "written",
              "unchanged", "by", "message")
    for r in eng.runs(limit):
        t.add_row(str(r["id"]), r["kind"], str(r["started_at"]), str(r["finished_at"] or ""),
                  r["status"], str(r["formulas_computed"]), f"{r['records_written']:,}",
                  f"{r['records_unchanged']:,}", r["run_by"], _escape(r["message"] or ""))
    out.print(t)


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def history(ctx, name):
    """Every saved version of a formula."""
    t = Table("version", "action", "when", "who", "old", "new")
    for h in _engine(ctx).history(name):
        t.add_row(str(h["version"]), h["action"], str(h["changed_at"]), h["changed_by"],
                  _escape(h["old_expression"] or ""), _escape(h["new_expression"] or ""))
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


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
