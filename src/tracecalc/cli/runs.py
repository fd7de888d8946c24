"""Commands that run and check recalculations: recalc, verify, status, runs, demo; and the
progress bars."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from tracecalc import cli
from tracecalc.cli import SHOWN, _engine, _escape, _show, handle_errors, main
from tracecalc.cli.output import row, table, when
from tracecalc.cli.progress import _bar, _run_recalc
from tracecalc.errors import TracecalcError, plural
from tracecalc.model import VerifyReport


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
    cli.out.print(f"run {rep.run_id}: {plural(rep.formulas_computed, 'formula')} recomputed"
                  + (f" ({skipped:,} skipped: nothing upstream changed)" if skipped else "")
                  + f", {plural(rep.records_written, 'record')} written, "
                  f"{rep.records_unchanged:,} unchanged, in {rep.seconds:.2f}s", markup=False)

    if rep.verify:
        cli.out.print("verified: every recomputed record compared with the stored one"
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
    if quiet or not cli.out.is_terminal:
        rep = eng.verify(wait=wait, chunk_entities=chunk_entities)
    else:
        with _bar() as (bar, task):
            def progress(done, total, name):
                bar.update(task, completed=done, total=total, description=f"verifying {name}")

            rep = eng.verify(wait=wait, chunk_entities=chunk_entities, progress=progress)
    cli.out.print(f"database:  {rep.database}", markup=False)
    cli.out.print(f"integrity: {rep.integrity_method}: "
                  + (f"{len(rep.integrity)} problems" if rep.integrity else "ok"))
    for line in rep.integrity[:SHOWN]:
        cli.out.print(f"  {_escape(line)}")
    if len(rep.integrity) > SHOWN:
        cli.out.print(f"  ... and {len(rep.integrity) - SHOWN} more")
    if rep.damaged_tables:
        cli.out.print(f"damaged:   {', '.join(rep.damaged_tables)}")
    for note in rep.notes:
        cli.out.print(f"note: {_escape(note)}")
    cli.out.print(f"records:   {rep.records:,} records and {rep.digests:,} digests of "
                  f"{rep.formulas} formulas and {rep.entities:,} entities, in {rep.seconds:.2f}s")
    for kind, n in rep.counts:
        cli.out.print(f"{kind}: {n:,}")
    listed: dict[str, int] = {}
    for f in rep.findings:
        listed[f.kind] = listed.get(f.kind, 0) + 1
        if listed[f.kind] <= SHOWN:
            where = f.formula + (f" / {f.entity}" if f.entity else "")
            cli.out.print(f"  {f.kind}: {_escape(where)}: {_escape(f.detail)}")
    for kind, n in listed.items():
        if n > SHOWN:
            cli.out.print(f"  ... and {n - SHOWN:,} more {kind} findings (Engine.verify lists "
                          f"{VerifyReport.MAX_LISTED:,} of each kind)")
    if rep.ok:
        cli.out.print("verified: no problems found")
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


@main.command()
@click.pass_context
@handle_errors
def status(ctx):
    """Counts, and the formulas waiting for a recalculation."""
    eng = _engine(ctx)
    s = eng.status()
    say = functools.partial(cli.out.print, markup=False)
    say(f"database:    {eng.url}")
    say(f"formulas:    {s['formulas']:,} ({len(s['stale']):,} not fresh)")
    say(f"items:       {s['items']:,}")
    say(f"entities:    {s['entities']:,}")
    say(f"data points: {s['data_points']:,}")
    say(f"records:     {s['records']:,}")
    if s["stale"]:
        t = table("formula", "state", "entities to recompute",
                  title="waiting for recalc (in order)", numeric=["entities to recompute"])
        for name in s["stale"]:
            state = s["states"][name]
            scope = {"stale": "all", "pending": "where inputs change"}.get(
                state, s["stale_entities"].get(name, 0))
            row(t, name, state, scope)
        _show(t)


@main.command()
@click.option("--limit", "-n", default=20, show_default=True)
@click.option("--id", "run_id", type=int, default=None, help="Show one run, per formula.")
@click.pass_context
@handle_errors
def runs(ctx, limit, run_id):
    """The run log: the latest recalculations, or one of them per formula (--id)."""
    eng = _engine(ctx)
    if run_id is not None:
        t = table("formula", "version", "entities", "from", "written", "unchanged", "read",
                  "seconds", title=f"run {run_id}", whole=["entities"],
                  numeric=["version", "entities", "written", "unchanged", "read", "seconds"])
        for r in eng.run_log(run_id):
            first = "" if not r["entities"] else str(r["first_period"] or "start")[:10]
            row(t, r["formula_name"], r["version"], r["entities"] or "skipped", first,
                r["records_written"], r["records_unchanged"], r["records_read"],
                float(r["seconds"]))
        _show(t)
        return
    t = table("id", "kind", "started (UTC)", "status", "formulas", "written", "unchanged",
              "by", numeric=["id", "formulas", "written", "unchanged"],
              whole=["kind", "started (UTC)", "status"])
    notes = []
    for r in eng.runs(limit):
        row(t, r["id"], r["kind"], when(r["started_at"])[:-4] + "Z", r["status"],
            r["formulas_computed"], r["records_written"], r["records_unchanged"], r["run_by"])
        if r["message"]:
            notes.append(f"run {r['id']}: {r['message']}")
    _show(t)
    for n in notes:  # below the table: a message is as long as it needs to be
        cli.out.print(n, markup=False, overflow="fold")


@main.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Folder with entities.csv, data.csv and formulas.csv "
                   "(default: the project's sample_data/).")
@click.option("--out", "--db", "db_file", default="tracecalc-demo.db", show_default=True,
              help="SQLite file, or an embedded database's URL (sqlite:///file.db, "
                   "duckdb:///file.duckdb), to create (replaced if it exists).")
@handle_errors
def demo(data_dir, db_file):
    """Build a database from the sample data, run the nightly batch, edit a formula."""
    from tracecalc.demo import run_demo

    run_demo(_sample_dir(data_dir), db_file, cli.out, _run_recalc)


def _sample_dir(given: str | None) -> Path:
    candidates = [Path(given)] if given else [
        Path.cwd() / "sample_data", Path(__file__).resolve().parents[3] / "sample_data"]
    for c in candidates:
        if (c / "data.csv").is_file() and (c / "formulas.csv").is_file():
            return c
    raise TracecalcError("no sample data found (looked in "
                         f"{', '.join(str(c) for c in candidates)}); pass --data DIR")
