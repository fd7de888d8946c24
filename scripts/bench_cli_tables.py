"""Benchmark: the CLI's table printing (``tracecalc list`` / ``status``) at catalog scale.

    python scripts/bench_cli_tables.py                 # 50,000 rows, plain-text tables
    python scripts/bench_cli_tables.py --rows 5000 --rich

Lays out the ``list`` table of N formulas at 160 columns (piped output) and 80 columns, with
tracecalc.cli.output, and with --rich also through rich's Table as the CLI did before (slow:
about 25 s at 50,000 rows), checking that both give the same text. No database: for end
to end figures (imports, engine, printing) time `tracecalc list` on a real catalog.
"""

from __future__ import annotations

import argparse
import io
import time

from tracecalc.cli import output


def _rows(n: int) -> list[tuple]:
    return [(f"f{i}", f"revenue * {i}", "quarterly", 1, "stale") for i in range(n)]


def _ours(rows, width: int) -> str:
    t = output.table("name", "expression", "frequency", "version", "state",
                     numeric=["version"], whole=["frequency", "state"])
    for r in rows:
        output.row(t, *r)
    return t.render(width)


def _rich(rows, width: int) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, title_justify="left")
    for c in ("name", "expression", "frequency", "version", "state"):
        if c == "version":
            t.add_column(c, justify="right", no_wrap=True)
        else:
            t.add_column(c, overflow="fold", no_wrap=c in ("frequency", "state"))
    for r in rows:
        t.add_row(*(Text(output.cell(c)) for c in r))
    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False).print(t)
    return buf.getvalue()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--rich", action="store_true", help="time rich's layout too and compare")
    args = ap.parse_args(argv)
    rows = _rows(args.rows)
    for width in (160, 80):
        t0 = time.perf_counter()
        text = _ours(rows, width)
        took = time.perf_counter() - t0
        line = f"{args.rows:,} rows at {width} columns: plain text {took:.2f}s"
        if args.rich:
            t0 = time.perf_counter()
            same = _rich(rows, width) == text
            line += f", rich {time.perf_counter() - t0:.2f}s, same output: {same}"
        print(line)


if __name__ == "__main__":
    main()
