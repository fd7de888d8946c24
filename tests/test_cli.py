"""The command line: every command works, is documented, and errors never show a traceback."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import ROOT, SAMPLE
from tracecalc.cli import main
from tracecalc.engine import Engine


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
    assert "run 2: 1 formula recomputed" in run("recalc")
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
    (["show", "nope"], "no formula or item named 'nope'"),
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
    # the restatements keep the first reports as versions; the increment equals a full run
    assert "net_income BLRX 2024-12-31 known 2024-12-31: 193.799\n" in res.output
    assert "net_income BLRX 2024-12-31 known 2025-06-01: 191.709  (latest)" in res.output
    with Engine(f"sqlite:///{tmp_path / 'tracecalc-demo.db'}") as eng:
        ni = eng.records("net_income", entities="BLRX").set_index("period")["value"]
        assert ni[pd.Timestamp("2024-12-31")] == 191.7094
        assert eng.recalc(full=True).records_written == 0
        # point in time: the P/E on the filing day and the day before, from the files
        reports = pd.read_csv(SAMPLE / "eps_reports.csv", parse_dates=["period", "known_at"])
        px = pd.read_csv(SAMPLE / "prices.csv", parse_dates=["period"])
        acme = reports[reports["entity"] == "ACME"]
        for day in ("2025-11-14", "2025-11-17"):
            known = acme[acme["known_at"] <= day].sort_values("known_at").groupby("period")[
                "value"].last()
            ttm = known.rolling(4).sum().iloc[-1]
            close = px[(px["entity"] == "ACME") & (px["period"] == day)]["value"].iloc[0]
            got = eng.records("pe_daily", "ACME", start=day, end=day)["value"].iloc[0]
            assert got == pytest.approx(close / ttm, rel=1e-12), day
            assert f"pe_daily ACME {day}: {close / ttm:.3f}" in res.output


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "tracecalc", "--help"], capture_output=True,
                         text=True, check=True)
    assert "recalc" in res.stdout


# -- load-data and delete-data (issue 11: defects 4, 8, 10 and the output's grammar) --------

QUARTERLY = "item,entity,period,value\n" + "".join(
    f"revenue,{e},{p},{10 * i + j + 1}\n" for i, e in enumerate(["A", "B"])
    for j, p in enumerate(["2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31"]))


def _csv(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_load_data_says_what_is_new_and_warns_about_odd_dates(cli, tmp_path):
    res = cli("load-data", _csv(tmp_path, "q.csv", QUARTERLY))
    assert res.stdout.splitlines() == [
        "loaded 8 rows for 1 item (1 new item, 2 new entities); 0 formulas now stale",
        "1 new item: revenue", "2 new entities: A, B"]
    assert res.stderr == ""
    cli("set", "prev", "lag(revenue)")
    odd = _csv(tmp_path, "odd.csv", "item,entity,period,value\nrevenue,CHIP,2024-08-15,99\n")
    res = cli("load-data", odd, code=1)
    assert res.stderr.startswith(f"error: {odd}, row 2: period 2024-08-15 of item 'revenue' is "
                                 "not on the quarterly")
    res = cli("load-data", "--snap", odd)
    assert res.stdout.splitlines() == [
        "loaded 1 row for 1 item (0 new items, 1 new entity); 1 formula now stale",
        "1 new entity: CHIP",
        "moved 1 point onto the calendar; history-data ITEM ENTITY PERIOD shows the date "
        "each was loaded with"]
    assert res.stderr == ""
    assert "loaded as 2024-08-15" in cli("history-data", "revenue", "CHIP", "2024-06-30").stdout
    res = cli("load-data", _csv(tmp_path, "next.csv",
                                "item,entity,period,value\nrevenue,A,2025-03-31,5\n"))
    assert res.stderr == "" and "1 formula now stale" in res.stdout
    many = "item,entity,period,value\n" + "".join(f"cash,E{i:02d},2024-03-31,1\n"
                                                    for i in range(12))
    res = cli("load-data", "-f", "cash=quarterly", _csv(tmp_path, "many.csv", many))
    assert "12 new entities: E00, E01, E02, E03, E04, E05, E06, E07, E08, E09, ... (2 more)" \
        in res.stdout


def test_load_data_no_new_entities(cli, tmp_path):
    cli("load-data", _csv(tmp_path, "q.csv", QUARTERLY))
    path = _csv(tmp_path, "new.csv", "item,entity,period,value\nrevenue,A,2025-03-31,1\n"
                                     "revenue,ACME,2025-03-31,2\n")
    res = cli("load-data", "--no-new-entities", path, code=1)
    assert " ".join(res.stderr.split()).startswith(
        f"error: {path}, row 3: unknown entity 'ACME' (1 new entity in the file: ACME); load "
        "them first (load-entities)")
    assert "entities:    2" in cli("status").stdout
    cli("load-entities", _csv(tmp_path, "e.csv", "code\nACME\n"))
    res = cli("load-data", "--no-new-entities", path)
    assert "0 new entities" in res.stdout and "new entity:" not in res.stdout


def test_load_data_progress_only_on_a_terminal(cli, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import tracecalc.cli as cli_module
    from tracecalc.engine import Engine

    seen = []
    real = Engine.load_data

    def spy(self, *args, **kw):
        seen.append(kw.get("progress"))
        return real(self, *args, **kw)

    monkeypatch.setattr(Engine, "load_data", spy)
    path = _csv(tmp_path, "q.csv", QUARTERLY)
    res = cli("load-data", path)  # piped: no bar
    assert seen == [None] and "━" not in res.output and "reading" not in res.output
    screen = io.StringIO()
    monkeypatch.setattr(cli_module, "out", Console(file=screen, force_terminal=True,
                                                   width=100, highlight=False))
    cli("load-data", path)
    assert callable(seen[-1])
    shown = screen.getvalue()
    assert "8/8" in shown and "━" in shown and "loaded 8 rows" in shown


def test_delete_data(cli, tmp_path):
    cli("load-data", _csv(tmp_path, "q.csv", QUARTERLY))
    cli("load-data", _csv(tmp_path, "late.csv", "item,entity,period,value\n"
                                                "revenue,CHIP,2025-06-30,99\n"
                                                "cash,A,2024-03-31,1\ncash,A,2024-06-30,2\n"))
    cli("set", "prev", "lag(revenue)")
    cli("set", "twice", "2 * revenue")
    cli("recalc")
    res = cli("delete-data", "revenue", "--entity", "CHIP", "--period", "2025-06-30")
    assert res.stdout.splitlines() == [
        "deleted 1 data point of revenue (1 entity: CHIP; 1 period: 2025-06-30)",
        "2 periods left the quarterly calendar: 2025-03-31, 2025-06-30",
        "2 formulas now stale: prev, twice"]
    res = cli("delete-data", "revenue", "-e", "A", "-e", "B", "-p", "2024-12-31")
    assert res.stdout.splitlines() == [
        "deleted 2 data points of revenue (2 entities: A, B; 1 period: 2024-12-31)",
        "2024-12-31 left the quarterly calendar (no data there any more)",
        "2 formulas now stale: prev, twice"]
    assert "run 2: 2 formula" in cli("recalc").stdout
    res = cli("delete-data", "revenue", code=1)
    assert res.stderr.startswith("error: cannot delete 'revenue': used by prev, twice")
    res = cli("delete-data", "cash")
    assert res.stdout.splitlines() == ["deleted item cash and its 2 data points",
                                       "0 formulas now stale"]
    res = cli("delete-data", "revnue", code=1)
    assert "error: no data item named 'revnue'. Did you mean 'revenue'?" in res.stderr
    res = cli("delete-data", "revenue", "-e", "AA", code=1)
    assert "Did you mean 'A'?" in res.stderr
    res = cli("delete-data", "revenue", "-p", "2024-02-30", code=1)
    assert "bad period '2024-02-30'" in res.stderr
    assert "data points: 6" in cli("status").stdout  # nothing deleted by the failures
    cli("delete-data", code=2)


def _export_session(tmp_path):
    """A database with item close (36.7861 at =B, 9999-12-31 at A) and formula twice;
    quarterly, so the calendar from 1000 to 9999 has 36,000 periods, not 2.3M days."""
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

    invoke("load-data", str(src), "-f", "close=quarterly")
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
                                      str(tmp_path / "out.csv"), "-f", "close=quarterly"])
    assert other.exit_code == 0 and "loaded 3 rows" in other.output
    again = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'b.db'}", "export"
                                      , "close"])
    assert again.stdout == (tmp_path / "out.csv").read_text()


def test_export_of_an_empty_database(run):
    run("init")
    assert run("export") == "formula,entity,period,value\n"
