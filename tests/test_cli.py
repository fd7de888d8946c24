"""The command line: every command works, is documented, and errors never show a traceback."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import ROOT, SAMPLE
from tracecalc.cli import main


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'cli.db'}"

    def invoke(*args, code=0):
        res = runner.invoke(main, ["--db", db, "--user", "cli-user", *args],
                            catch_exceptions=False)
        assert res.exit_code == code, res.output
        assert "Traceback" not in res.output
        return res.output

    return invoke


def test_every_command_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `tracecalc ([a-z-]+)", readme, flags=re.M))
    assert documented == set(main.commands)
    for name, cmd in main.commands.items():
        assert cmd.help, name


def test_a_whole_session(run, tmp_path):
    assert "ready" in run("init")
    assert "loaded 50 entities" in run("load-entities", str(SAMPLE / "entities.csv"))
    out = run("load-data", str(SAMPLE / "data.csv"))
    assert "loaded 19,717 rows for 10 items (10 new items, 0 new entities)" in out
    out = run("load-formulas", str(SAMPLE / "formulas.csv"))
    assert re.search(r"saved (\d+) formulas \(\1 new, 0 changed, 0 unchanged\)", out)
    assert "stale" in run("status")
    out = run("recalc", "--full")
    assert re.search(r"run 1: \d+ formulas recomputed, [\d,]+ records written", out)
    out = run("set", "gm_pct", "100 * gross_margin", "-d", "gross margin in percent")
    assert "gm_pct created (version 1)" in out and "stale now: gm_pct" in out
    out = run("check", "gross_margin", "(revenue - cogs) / revenue")
    assert "valid (quarterly)" in out and "would recompute, in order: gross_margin" in out
    assert "gm_pct" in out
    assert "run 2: 1 formulas recomputed" in run("recalc")
    out = run("show", "gm_pct")
    assert "gm_pct = 100 * gross_margin" in out and "depends on:   gross_margin" in out
    assert "create" in out
    assert "gm_pct" in run("list")
    assert "cli-user" in run("history", "gm_pct")
    assert "incremental" in run("runs")
    target = tmp_path / "out.csv"
    assert "records to" in run("export", "gm_pct", "gross_margin", "-o", str(target))
    with target.open() as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"formula", "entity", "period", "value"}
    by_key = {(r["formula"], r["entity"], r["period"]): float(r["value"]) for r in rows}
    key = next(k for k in by_key if k[0] == "gm_pct")
    assert by_key[key] == pytest.approx(100 * by_key[("gross_margin", key[1], key[2])])
    out = run("impact", "gross_margin")
    assert "formulas depend on gross_margin" in out and "gm_pct" in out
    out = run("deps", "gm_pct")
    assert "gross_margin  (formula)" in out and "revenue  (item, quarterly)" in out
    out = run("explain", "gm_pct", key[1], key[2])
    assert "gm_pct (version 1, quarterly) = 100 * gross_margin" in out
    assert "gross_margin = " in out and "(formula)" in out
    out = run("runs", "--id", "2")
    assert "gm_pct" in out and "run 2" in out
    run("set", "gross_margin", "gross_profit / revenue + 0")
    out = run("status")
    assert "waiting for recalc" in out and "pending" in out and "where inputs change" in out
    out = run("recalc")
    assert "skipped: nothing upstream changed" in out and "0 records written" in out
    assert "deleted gm_pct" in run("delete", "gm_pct")


@pytest.mark.parametrize("args, message", [
    (["set", "x", "revenu + 1"], "unknown reference 'revenu'"),
    (["set", "x", "__import__('os')"], "unknown function '__import__'"),
    (["set", "x", "x + 1"], "cycle: x -> x"),
    (["show", "nope"], "no formula named 'nope'"),
    (["delete", "nope"], "no formula named 'nope'"),
    (["load-data", "/no/such/file.csv"], "no such file"),
    (["load-formulas", "/no/such/file.csv"], "no such file"),
])
def test_errors_are_one_message_and_exit_1(run, args, message):
    run("load-data", str(SAMPLE / "data.csv"))
    out = run(*args, code=1)
    assert "error:" in out and message in out


def test_check_reports_problems_without_saving(run):
    run("load-data", str(SAMPLE / "data.csv"))
    out = run("check", "x", "revenue + cgs", code=1)
    assert "problem:" in out and "Did you mean 'cogs'" in out
    assert "0 formulas" in run("list")


def test_bad_database_url(tmp_path):
    res = CliRunner().invoke(main, ["--db", "nosuchdb://x", "status"])
    assert res.exit_code == 1 and "cannot open database" in res.output


def test_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["demo", "--data", str(SAMPLE)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "nightly batch" in res.output and "recomputed only: roe_quality" in res.output
    assert (tmp_path / "tracecalc-demo.db").exists()


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "tracecalc", "--help"], capture_output=True,
                         text=True, check=True)
    assert "recalc" in res.stdout


def _export_session(tmp_path):
    """A database with item close (36.7861 at =B, 9999-12-31 at A) and formula twice."""
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'export.db'}"
    src = tmp_path / "in.csv"
    src.write_text("item,entity,period,value\nclose,=B,2025-06-30,36.7861\n"
                   "close,A,9999-12-31,0.1\nclose,@x,1000-12-31,-5e-324\n")

    def invoke(*args):
        res = runner.invoke(main, ["--db", db, *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert "Traceback" not in res.output
        return res

    invoke("load-data", str(src), "-f", "close=daily")
    return invoke


def test_export_writes_shortest_digits_and_exact_dates(tmp_path):
    invoke = _export_session(tmp_path)
    out = invoke("export", "close").stdout
    assert out.splitlines() == ["formula,entity,period,value", "close,=B,2025-06-30,36.7861",
                                "close,@x,1000-12-31,-5e-324", "close,A,9999-12-31,0.1"]
    invoke("export", "close", "-o", str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text() == out


def test_export_of_a_stale_formula_warns_on_stderr(tmp_path):
    invoke = _export_session(tmp_path)
    invoke("set", "twice", "close * 2")
    res = invoke("export", "twice")
    assert res.stdout == "formula,entity,period,value\n"  # the CSV stays clean
    assert ("warning: twice is stale (3 entities to recompute); its records may be out of "
            "date: run tracecalc recalc") in res.stderr
    invoke("recalc")
    res = invoke("export")
    assert res.stderr == "" and "twice,=B,2025-06-30,73.5722" in res.stdout


def test_export_spreadsheet_safe_quotes_cells_a_spreadsheet_would_run(tmp_path):
    invoke = _export_session(tmp_path)
    rows = list(csv.reader(invoke("export", "close", "--spreadsheet-safe").stdout.splitlines()))
    assert rows[1:] == [["close", "'=B", "2025-06-30", "36.7861"],
                        ["close", "'@x", "1000-12-31", "-5e-324"],
                        ["close", "A", "9999-12-31", "0.1"]]  # numbers stay numbers
    assert "--spreadsheet-safe" in invoke("export", "--help").stdout


def test_export_loads_back_with_load_data(tmp_path):
    invoke = _export_session(tmp_path)
    out = invoke("export", "close", "-o", str(tmp_path / "out.csv"))
    assert "wrote 3 records" in out.stdout
    other = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'b.db'}", "load-data",
                                      str(tmp_path / "out.csv"), "-f", "close=daily"])
    assert other.exit_code == 0 and "loaded 3 rows" in other.output
    again = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'b.db'}", "export"
                                      , "close"])
    assert again.stdout == (tmp_path / "out.csv").read_text()


def test_export_of_an_empty_database(run):
    assert run("export") == "formula,entity,period,value\n"
