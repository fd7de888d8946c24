"""``tracecalc demo``: the sample data end to end on a fresh SQLite (or DuckDB) file.

Loads sample_data/, runs the nightly full recalculation, edits one formula, recomputes only
what the edit affects, and prints a summary.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from tracecalc.engine import Engine
from tracecalc.errors import TracecalcError
from tracecalc.storage.files import read_formulas

EDIT = ("roe_quality", "if_(avg_balance(equity, 4) > 0, clip(roe, -0.5, 0.5), roa)")
SHOW = ("revenue_ttm", "gross_margin_ttm", "roe", "pe", "rsi", "composite_rank")


EMBEDDED = {"sqlite": ("", "-wal", "-shm", "-journal"), "duckdb": ("", ".wal")}


def demo_target(target: str | Path) -> tuple[str, Path]:
    """(URL, file) of the demo's database: a path is a SQLite file; a URL must name an
    embedded database's file (the demo replaces it)."""
    text = str(target)
    kind, sep, rest = text.partition(":///")
    if not sep:
        return f"sqlite:///{text}", Path(text)
    if kind not in EMBEDDED or not rest or rest.startswith(":memory:"):
        raise TracecalcError(f"the demo replaces its database: give a file "
                             f"(sqlite:///file.db or duckdb:///file.duckdb), not {text}")
    return text, Path(rest)


def run_demo(data_dir: Path, target: str | Path, out: Console, run_recalc) -> None:
    url, db_file = demo_target(target)
    for suffix in EMBEDDED[url.split(":", 1)[0]]:
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    out.print(f"[bold]tracecalc demo[/]: sample data from {data_dir} into {db_file}")
    with Engine(url, user="demo") as eng:
        if (data_dir / "entities.csv").is_file():
            n = eng.load_entities(data_dir / "entities.csv")
            out.print(f"  entities:  {n}")
        res = eng.load_data(data_dir / "data.csv", label="data.csv")
        out.print(f"  data:      {res.rows:,} rows, items {', '.join(res.items)}")
        saved = eng.set_formulas(read_formulas(data_dir / "formulas.csv"))
        out.print(f"  formulas:  {len(saved)} saved and validated (no cycles)")

        full = run_recalc(eng, True, False)
        out.print(f"\n[bold]nightly batch[/] (recalc --full): {full.formulas_computed} formulas, "
                  f"{full.records_written:,} records in {full.seconds:.2f}s")

        name, expr = EDIT
        if name in set(eng.formulas()["name"]):
            old = eng.formula(name).expression
            check = eng.check_formula(name, expr)
            out.print(f"\n[bold]edit[/] {name}:\n  was  {old}\n  now  {expr}")
            out.print(f"  impact: {len(check.affected)} formulas, "
                      f"{check.records_in_scope:,} records in scope")
            eng.set_formula(name, expr)
            inc = run_recalc(eng, False, False)
            out.print(f"  recomputed only: {', '.join(f.name for f in inc.formulas)}")
            out.print(f"  ({inc.formulas_computed} of {full.formulas_computed} formulas, "
                      f"{inc.records_written:,} records, {inc.seconds:.2f}s)")

        if (data_dir / "restatements.csv").is_file():
            _restate(eng, data_dir / "restatements.csv", out, run_recalc)
        if all((data_dir / f).is_file() for f in PIT_FILES):
            _point_in_time(eng, data_dir, out, run_recalc)
        _summary(eng, out)
    out.print(f"\nexplore it:  tracecalc --db {url} list | show roe | status")


def _restate(eng: Engine, path: Path, out: Console, run_recalc) -> None:
    """Load amended filings: each keeps the first report as an earlier version."""
    res = eng.load_data(path, label=path.name)
    rows = list(read_rows(path))
    first, restated = rows[0], len({r["entity"] for r in rows})
    out.print(f"\n[bold]restatements[/] ({path.name}): {res.rows} points restated, "
              f"{len(res.marked_stale)} formulas stale for the entities they touch")
    versions = eng.history_data(first["item"], first["entity"], first["period"])
    for v in versions:
        out.print(f"  {first['item']} {first['entity']} {first['period']} known "
                  f"{v['known_at']}: {_fmt(v['value'])}" + ("  (latest)" if v["latest"] else ""),
                  markup=False)
    inc = run_recalc(eng, False, False)
    few = sum(1 for f in inc.formulas if 0 < f.entities <= restated)
    out.print(f"  recomputed {inc.formulas_computed} formulas, {inc.records_written:,} records: "
              f"{few} for the {restated} restated entities only, the rest for all "
              "(cross-sectional, or downstream of one)")


PIT_FILES = ("prices.csv", "eps_reports.csv", "daily_formulas.csv")


def _point_in_time(eng: Engine, data_dir: Path, out: Console, run_recalc) -> None:
    """Daily prices with quarterly EPS as reported: P/E on each day from what it knew."""
    px = eng.load_data(data_dir / "prices.csv", label="prices.csv",
                       frequencies={"px": "daily"})
    eps = eng.load_data(data_dir / "eps_reports.csv", label="eps_reports.csv",
                        frequencies={"eps_reported": "quarterly"})
    eng.set_formulas(read_formulas(data_dir / "daily_formulas.csv"))
    run = run_recalc(eng, False, False)
    out.print(f"\n[bold]point in time[/]: {px.rows:,} daily prices, {eps.rows:,} EPS reports "
              f"with their filing dates ({eps.versions:,} versions); {run.formulas_computed} "
              f"daily and quarterly formulas, {run.records_written:,} records")
    days = [str(d)[:10] for d in eng.records("px", "ACME")["period"]]
    last = [r for r in read_rows(data_dir / "eps_reports.csv")
            if r["entity"] == "ACME" and days[0] < r["known_at"] <= days[-1]][-1]
    filed = last["known_at"]
    before = max(d for d in days if d < filed)
    on = min(d for d in days if d >= filed)
    pe = eng.records("pe_daily", "ACME", start=before, end=on)
    for day, value in zip(pe["period"], pe["value"]):
        out.print(f"  pe_daily ACME {str(day)[:10]}: {_fmt(value)}", markup=False)
    out.print(f"  (ACME's {last['period']} EPS report was filed {filed}: the P/E moves then, "
              "never before)", markup=False)
    view = eng.records("eps_ttm_reported", "ACME", as_of=before)
    out.print(f"  eps_ttm_reported ACME as known on {before}: latest quarter "
              f"{str(view['period'].iloc[-1])[:10]} (tracecalc export --as-of {before})",
              markup=False)


def read_rows(path: Path):
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _summary(eng: Engine, out: Console) -> None:
    names = [n for n in SHOW if n in set(eng.formulas()["name"])]
    if not names:
        return
    frames = {n: eng.records(n) for n in names}
    last = max(f["period"].max() for f in frames.values() if len(f))
    table = Table("entity", *names, title=f"latest quarter, {last:%Y-%m-%d} (first 8 entities)")
    cols = {n: f[f["period"] == last].set_index("entity")["value"] for n, f in frames.items()}
    entities = sorted(set().union(*(c.index for c in cols.values())))[:8]
    for e in entities:
        table.add_row(e, *(_fmt(cols[n].get(e)) for n in names))
    out.print()
    out.print(table)


def _fmt(v) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
