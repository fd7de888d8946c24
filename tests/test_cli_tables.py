"""The CLI's plain-text tables (tracecalc.cli.output) lay out exactly as rich's SIMPLE_HEAD
table did: the same widths, wrapping, cropping and header, byte for byte."""

from __future__ import annotations

import datetime as dt
import io
import random

import pytest
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracecalc.cli import output


def _rich(columns, title, numeric, whole, rows, width) -> str:
    """The table as the CLI printed it through rich before."""
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
              title_justify="left")
    for c in columns:
        if c in numeric:
            t.add_column(c, justify="right", no_wrap=True)
        else:
            t.add_column(c, overflow="fold", no_wrap=c in whole)
    for r in rows:
        t.add_row(*(Text(output.cell(c)) for c in r))
    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False).print(t)
    return buf.getvalue()


WORDS = ["revenue", "-", "cogs", "/", "ts_mean(revenue, 4)", "a", "  ", "é漢字", "[bold]",
         "[red]x[/red]", "1,234", "\t", "ab\ncd", "\r"]


def _value(rnd: random.Random):
    r = rnd.random()
    if r < 0.5:
        words = [*WORDS, "x" * rnd.randint(1, 90)]
        return " ".join(rnd.choice(words) for _ in range(rnd.randint(0, 12)))
    if r < 0.65:
        return rnd.randint(-10 ** rnd.randint(0, 12), 10 ** rnd.randint(0, 12))
    if r < 0.75:
        return rnd.random() * 10 ** rnd.randint(0, 9)
    if r < 0.8:
        return None
    if r < 0.85:
        return rnd.random() < 0.5
    return dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize("seed", range(4))
def test_random_tables_match_rich(seed):
    rnd = random.Random(seed)
    for _ in range(100):
        columns = list(dict.fromkeys(
            f"col{i}" + ("_" + "h" * rnd.randint(0, 20) if rnd.random() < 0.3 else "")
            for i in range(rnd.randint(1, 8))))
        numeric = [c for c in columns if rnd.random() < 0.3]
        whole = [c for c in columns if c not in numeric and rnd.random() < 0.3]
        title = rnd.choice([None, "waiting for recalc (in order)", "run 12", "a long title " * 6])
        rows = [[_value(rnd) for _ in columns] for _ in range(rnd.randint(0, 6))]
        width = rnd.choice([40, 80, 160, rnd.randint(30, 200)])
        t = output.table(*columns, title=title, numeric=numeric, whole=whole)
        for r in rows:
            output.row(t, *r)
        expected = _rich(columns, title, numeric, whole, rows, width)
        assert t.render(width) == expected, (columns, numeric, whole, title, rows, width)


def test_the_list_table_at_80_columns():
    t = output.table("name", "expression", "frequency", "version", "state",
                     numeric=["version"], whole=["frequency", "state"])
    output.row(t, "gross_margin", "(revenue - cogs) / revenue", "quarterly", 1, "fresh")
    output.row(t, "x" * 30, "ts_mean(revenue, 4) + ts_mean(cogs, 4) * 1000000 - lag(cash, 2)",
               "daily", 12345, "stale")
    assert t.render(80) == (
        " " * 80 + "\n"
        " name                      expression                 frequency  version  state \n"
        " " + "\u2500" * 78 + " \n"
        " gross_margin              (revenue - cogs) /         quarterly        1  fresh \n"
        "                           revenue                                              \n"
        " xxxxxxxxxxxxxxxxxxxxxxxx  ts_mean(revenue, 4) +      daily       12,345  stale \n"
        " xxxxxx                    ts_mean(cogs, 4) *                                   \n"
        "                           1000000 - lag(cash, 2)                               \n"
        + " " * 80 + "\n")
