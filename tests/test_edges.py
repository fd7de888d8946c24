"""The edges (issue 11): every failure is one line and a documented exit code, nothing is
created or half-saved by mistake, and what the CLI shows is literal and fits a terminal."""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE, make_cli
from tracecalc import errors
from tracecalc.cli import main
from tracecalc.engine import Engine
from tracecalc.storage import store as store_module
from tracecalc.storage.files import read_formulas


def one_error(res, code: int = 1) -> str:
    """The result failed with exactly one ``error:`` line and no traceback."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.fixture
def cli(tmp_path):
    """The CLI on tmp_path/edges.db; exit codes are checked by each test."""
    return make_cli(f"sqlite:///{tmp_path / 'edges.db'}", code=None, user="edge-user")


def _daily(eng: Engine) -> None:
    days = pd.bdate_range("2024-10-01", "2024-12-31")
    closes = 100 + np.cumsum(np.sin(np.arange(len(days))))
    eng.load_data(pd.DataFrame({"item": "close", "entity": "CHIP",
                                "period": days.strftime("%Y-%m-%d"), "value": closes}))


# -- 1. explain of a formula with a constant call ---------------------------------------------

def test_explain_shows_calls_on_constants(tmp_path, cli):
    eng = Engine(f"sqlite:///{tmp_path / 'edges.db'}")
    _daily(eng)
    eng.set_formulas({"ret1": "growth(close, 1)", "vol20": "ts_std(ret1, 20) * sqrt(252)",
                      "shifted": "close + abs(-2)"})
    eng.recalc()
    e = eng.explain("vol20", "CHIP", "2024-12-31")
    stored = eng.records("vol20").set_index("period")["value"]
    assert e["stored"] == stored[pd.Timestamp("2024-12-31")]
    assert e["tree"]["value"] == pytest.approx(e["stored"], rel=1e-12)
    const = e["tree"]["children"][1]
    assert const["text"] == "sqrt(252)" and const["value"] == pytest.approx(math.sqrt(252))
    e = eng.explain("shifted", "CHIP", "2024-12-31")
    assert [c["value"] for c in e["tree"]["children"]][1] == 2.0
    eng.close()
    res = cli("explain", "vol20", "CHIP", "2024-12-31")
    assert res.exit_code == 0 and "sqrt(252) = 15.87450787" in res.output


# -- 2. bad URLs, unwritable outputs, API shapes ----------------------------------------------

def test_a_path_for_a_url_suggests_the_sqlite_url(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error(cli("status", db="finance.db"))
    assert "sqlite:///finance.db" in line
    assert not (tmp_path / "finance.db").exists()
    with pytest.raises(errors.DatabaseError, match="sqlite:///finance.db"):
        Engine("finance.db")


def test_an_unknown_driver_does_not_print_the_password(cli):
    line = one_error(cli("status", db="foo://analyst:s3cret@db.example/prod"))
    assert "s3cret" not in line and "***" in line


def test_export_to_an_unwritable_path_is_one_line(cli):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    line = one_error(cli("export", "revenue", "-o", "/nonexistent/dir/x.csv"))
    assert "/nonexistent/dir" in line


@pytest.mark.parametrize("batch", [
    [("a1", "revenue * 2"), ("a2", "a1 + 1", "with a description")],
    {"a1": "revenue * 2", "a2": {"expression": "a1 + 1", "description": "with a description"}},
    [{"name": "a1", "expression": "revenue * 2"},
     {"name": "a2", "expression": "a1 + 1", "description": "with a description"}],
])
def test_set_formulas_takes_the_shapes_users_pass(sqlite_engine, batch):
    sqlite_engine.load_data(SAMPLE / "data.csv")
    saved = sqlite_engine.set_formulas(batch)
    assert [s.name for s in saved] == ["a1", "a2"] and all(s.created for s in saved)
    assert sqlite_engine.formula("a2").description == "with a description"
    assert sqlite_engine.formula("a2").references == ("a1",)


@pytest.mark.parametrize("batch", ["a1 = revenue", [1, 2], [("a1",)], [("a1", 5)], 42])
def test_set_formulas_refuses_other_shapes_saying_what_is_accepted(sqlite_engine, batch):
    with pytest.raises(errors.UsageError, match="mapping") as info:
        sqlite_engine.set_formulas(batch)
    assert isinstance(info.value, errors.TracecalcError)
    assert sqlite_engine.formulas().empty


# -- 4. read-only commands never create a database --------------------------------------------

READERS = [("status",), ("list",), ("show", "x"), ("explain", "x", "A", "2024-12-31"),
           ("export",), ("runs",), ("history", "x"), ("impact", "x"), ("deps", "x"),
           ("check", "x", "revenue"), ("recalc",), ("delete", "x"), ("verify",),
           ("delete-data", "revenue")]


@pytest.mark.parametrize("args", READERS, ids=lambda a: a[0])
def test_reading_a_misspelt_database_creates_nothing(cli, tmp_path, args):
    path = tmp_path / "typo.db"
    line = one_error(cli(*args, db=f"sqlite:///{path}"))
    assert f"no tracecalc database at {path}" in line and "tracecalc init" in line
    assert not path.exists() and not list(tmp_path.glob("typo.db*"))


def test_writers_create_the_database(cli, tmp_path):
    path = tmp_path / "new.db"
    assert cli("init", db=f"sqlite:///{path}").exit_code == 0 and path.exists()
    path2 = tmp_path / "new2.db"
    assert cli("load-data", str(SAMPLE / "data.csv"), db=f"sqlite:///{path2}").exit_code == 0


def test_a_database_without_tracecalc_tables_is_named(cli, tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    assert "no tracecalc tables" in one_error(cli("status", db=f"sqlite:///{path}"))
    with pytest.raises(errors.DatabaseError):
        Engine(f"sqlite:///{path}", create=False)


# -- 5. an expression starting with '-' ------------------------------------------------------

def test_an_expression_may_start_with_a_minus(cli):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    res = cli("check", "gp2", "-cogs + revenue")
    assert res.exit_code == 0, res.output
    assert "gp2 = -cogs + revenue: valid (quarterly)" in res.output
    res = cli("set", "gp2", "-cogs + revenue", "-d", "gross profit, negated first")
    assert res.exit_code == 0 and "gp2 created" in res.output
    res = cli("set", "-d", "debt, negated", "neg_debt", "-revenue")
    assert res.exit_code == 0, res.output
    res = cli("show", "neg_debt")
    assert "neg_debt = -revenue" in res.output and "debt, negated" in res.output


# -- 6. every problem of a batch, with its row ------------------------------------------------

def test_a_formulas_file_reports_every_problem_with_its_row(cli, tmp_path):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    daily = tmp_path / "daily.csv"
    daily.write_text("item,entity,period,value,frequency\n"
                     "px,ACME,2024-12-30,1,daily\npx,ACME,2024-12-31,2,daily\n")
    assert cli("load-data", str(daily)).exit_code == 0
    yml = tmp_path / "f.yaml"
    yml.write_text("formulas:\n"
                   "  gm: (revenue - cogs) / revenue\n"
                   "  loop1: loop2 + 1\n"
                   "  loop2: loop1 * 2\n"
                   "  mix:\n"
                   "    expression: revenue + px\n"
                   "  typo: revenu * 2\n")
    res = cli("load-formulas", str(yml))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "failed with 3 problems; nothing was saved" in res.stderr
    assert "row 3, loop1: cycle: loop1 -> loop2 -> loop1" in res.stderr
    assert "row 5, mix: formula 'mix': mixes frequencies (revenue is quarterly, px is daily)" \
        in res.stderr
    assert "row 7, typo:" in res.stderr and "Did you mean 'revenue'" in res.stderr
    assert "0 formulas" in cli("list").output
    csv_file = tmp_path / "f.csv"
    csv_file.write_text("name,expression\ngm,(revenue - cogs) / revenue\n"
                        "loop1,loop2 + 1\nloop2,loop1 * 2\nmix,revenue + px\n")
    res = cli("load-formulas", str(csv_file))
    assert "row 3, loop1: cycle" in res.stderr and "row 5, mix:" in res.stderr


def test_one_problem_of_an_api_batch_keeps_its_own_error(sqlite_engine):
    sqlite_engine.load_data(SAMPLE / "data.csv")
    with pytest.raises(errors.CycleError):
        sqlite_engine.set_formulas([("l1", "l2 + revenue"), ("l2", "l1")])
    rows = read_formulas_rows([("l1", "l2 + revenue"), ("l2", "l1")])
    with pytest.raises(errors.ValidationError) as info:
        sqlite_engine.set_formulas(rows)
    assert info.value.problems[0].row == 2


def read_formulas_rows(pairs):
    return [{"name": n, "expression": e, "row": i + 2} for i, (n, e) in enumerate(pairs)]


def test_yaml_both_layouts_and_their_rows(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("# comment\ngm: (revenue - cogs) / revenue\n"
                 "roe:\n  expression: net_income / equity\n  description: return\n")
    assert [(r["name"], r["row"]) for r in read_formulas(a)] == [("gm", 2), ("roe", 3)]
    b = tmp_path / "b.yaml"
    b.write_text("- name: gm\n  expression: (revenue - cogs) / revenue\n"
                 "- name: roe\n  expression: net_income / equity\n")
    assert [(r["name"], r["row"]) for r in read_formulas(b)] == [("gm", 1), ("roe", 3)]


# -- 7. output --------------------------------------------------------------------------------

def test_show_on_a_data_item(cli):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    assert cli("set", "gm", "(revenue - cogs) / revenue").exit_code == 0
    res = cli("show", "revenue")
    assert res.exit_code == 0
    assert "revenue: data item, quarterly" in res.output
    df = pd.read_csv(SAMPLE / "data.csv")
    rev = df[(df["item"] == "revenue") & df["value"].notna()]
    assert (f"data points:  {len(rev):,} for {rev['entity'].nunique()} entities"
            in res.output)
    assert f"periods:      {rev['period'].min()} to {rev['period'].max()}" in res.output
    assert "used by:      gm" in res.output


def test_grammar_and_equivalence(cli):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    assert cli("set", "gm", "(revenue - cogs) / revenue").exit_code == 0
    assert cli("set", "gp", "revenue - cogs").exit_code == 0
    assert cli("delete", "gp").exit_code == 0
    assert "1 formula\n" in cli("list").output
    assert "0 formulas depend on gm" in cli("impact", "gm").output
    assert "1 formula depends on revenue" in cli("impact", "revenue").output
    res = cli("recalc")
    assert "1 formula recomputed" in res.output
    assert "not equivalent to the current definition" in cli("check", "gm", "revenue").output
    assert cli("set", "gp", "revenue - cogs").exit_code == 0
    out = cli("check", "gp", "-cogs + revenue").output
    assert "equivalent to the current definition" in out and "not equivalent" not in out


def test_timestamps_are_utc_and_marked(cli, tmp_path):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    assert cli("set", "gm", "(revenue - cogs) / revenue").exit_code == 0
    assert cli("recalc").exit_code == 0
    eng = Engine(f"sqlite:///{tmp_path / 'edges.db'}")
    h = eng.history("gm")[0]["changed_at"]
    r = eng.runs()[0]
    eng.close()
    assert h.tzinfo is not None and h.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - r["started_at"]) < dt.timedelta(minutes=5)
    assert h.strftime("%Y-%m-%d %H:%M:%SZ") in cli("history", "gm").output
    assert r["started_at"].strftime("%Y-%m-%d %H:%MZ") in cli("runs").output


def test_tables_fit_80_columns(tmp_path):
    db = f"sqlite:///{tmp_path / 'wide.db'}"
    env = {**os.environ, "COLUMNS": "80", "TRACECALC_DB": db, "TRACECALC_USER": "analyst"}

    def run(*args):
        res = subprocess.run([sys.executable, "-m", "tracecalc", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        return res.stdout

    run("load-data", str(SAMPLE / "data.csv"))
    run("load-formulas", str(SAMPLE / "formulas.csv"))
    run("recalc")
    run("set", "gross_margin", "1 - cogs / revenue")
    run("recalc")
    for args in (("runs",), ("status",), ("list",), ("history", "gross_margin"),
                 ("runs", "--id", "1")):
        out = run(*args)
        widths = [len(line) for line in out.splitlines()]
        assert max(widths) <= 80, (args, out)
    runs = run("runs")
    written = [line.split()[5] for line in runs.splitlines() if line.strip()[:1].isdigit()]
    assert all(w.replace(",", "").isdigit() for w in written) and len(written) == 2


# -- 12. faults: read-only, full, corrupted ---------------------------------------------------

def test_a_read_only_database_is_one_line_and_reads_still_work(cli, tmp_path):
    path = tmp_path / "edges.db"
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    assert cli("set", "gm", "(revenue - cogs) / revenue").exit_code == 0
    ro = f"sqlite:///file:{path}?mode=ro&uri=true"
    more = tmp_path / "more.csv"
    more.write_text("item,entity,period,value\nrevenue,ACME,2030-12-31,1\n")
    for args in (("set", "gm2", "gm * 2"), ("recalc",), ("load-data", str(more)),
                 ("load-formulas", str(SAMPLE / "formulas.csv")), ("delete", "gm")):
        assert "read-only" in one_error(cli(*args, db=ro)), args
    for args in (("status",), ("list",), ("show", "gm"), ("export",), ("runs",)):
        res = cli(*args, db=ro)
        assert res.exit_code == 0 and "Traceback" not in res.output, (args, res.output)
    eng = Engine(f"sqlite:///{path}")
    assert list(eng.formulas()["name"]) == ["gm"] and eng.formula("gm").version == 1
    eng.close()


@pytest.fixture
def small_disk(monkeypatch):
    """SQLite's own size limit: writes past it fail as on a full disk (SQLITE_FULL)."""
    real = store_module._sqlite_connect
    pages = {"n": 0}

    def limited(dbapi_conn, record):
        real(dbapi_conn, record)
        if pages["n"]:
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages['n']}")

    monkeypatch.setattr(store_module, "_sqlite_connect", limited)
    return pages


def test_a_full_disk_is_one_line_and_saves_nothing(cli, tmp_path, small_disk):
    path = tmp_path / "edges.db"
    assert cli("load-formulas", str(SAMPLE / "formulas.csv")).exit_code == 1  # no items yet
    assert cli("init").exit_code == 0
    size = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    small_disk["n"] = size + 3
    line = one_error(cli("load-data", str(SAMPLE / "data.csv")))
    assert "disk is full" in line and "nothing of this change was saved" in line
    small_disk["n"] = 0
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    used = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    small_disk["n"] = used + 2
    assert "disk is full" in one_error(cli("load-formulas", str(SAMPLE / "formulas.csv")))
    assert "0 formulas" in cli("list").output
    small_disk["n"] = 0
    assert cli("load-formulas", str(SAMPLE / "formulas.csv")).exit_code == 0
    used = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    small_disk["n"] = used + 30
    assert "disk is full" in one_error(cli("recalc"))
    used = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    small_disk["n"] = used  # not one page more: a long description needs new pages
    assert "disk is full" in one_error(cli("set", "big", "revenue * 2", "-d", "long " * 4000))
    small_disk["n"] = 0
    res = cli("recalc")  # finishes what the full disk stopped
    assert res.exit_code == 0, res.output
    eng = Engine(f"sqlite:///{path}")
    assert eng.status()["stale"] == []
    assert [r["status"] for r in eng.runs()][-1] in ("failed", "interrupted")
    eng.close()


def test_injected_os_errors_are_one_line(cli, monkeypatch):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0

    def full(*a, **k):
        raise OSError(28, "No space left on device", "/data/out.csv")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    line = one_error(cli("export", "revenue", "-o", "out.csv"))
    assert line == "error: No space left on device: /data/out.csv"


def test_a_corrupted_database_is_one_line(cli, tmp_path):
    path = tmp_path / "edges.db"
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    assert cli("load-formulas", str(SAMPLE / "formulas.csv")).exit_code == 0
    assert cli("recalc").exit_code == 0
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # every page but the schema's first: the tables themselves
        rng = np.random.default_rng(7)
        for offset in range(4096 * 8, size, 4096 * 3):
            f.seek(offset)
            f.write(rng.bytes(2048))
    for args in (("status",), ("export",), ("recalc", "--full")):
        line = one_error(cli(*args))
        assert "corrupted" in line or "malformed" in line or "not a database" in line, line


def test_unexpected_exceptions_are_one_line_with_a_way_to_see_more(cli, monkeypatch):
    def broken(self, *a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Engine, "status", broken)
    assert cli("init").exit_code == 0
    line = one_error(cli("status"))
    assert "unexpected ZeroDivisionError: division by zero" in line
    assert "TRACECALC_DEBUG=1" in line


# -- 16. smaller holes ------------------------------------------------------------------------

def test_stored_text_is_never_markup(cli):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    for user in ("[/bold]", "[red]x[/red]", "[link=http://x]"):
        assert cli("set", "gm", f"revenue * {len(user)}", user=user).exit_code == 0
    assert cli("recalc", user="[/bold]").exit_code == 0
    for args in (("show", "gm"), ("history", "gm"), ("runs",)):
        res = cli(*args)
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output
        assert "[/bold]" in res.output
    assert "[red]x[/red]" in cli("history", "gm").output


def test_a_huge_bad_field_is_cut_in_the_error(cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("item,entity,period,value\nrevenue,ACME,2024-12-31," + "9x" * 5_000_000 + "\n")
    line = one_error(cli("load-data", str(bad)))
    assert len(line) < 300 and "10,000,002 characters" in line and "row 2" in line



# -- done when 2: every command, every kind of bad environment --------------------------------

# Arguments that make each command do real work on the sample database.
EVERY = {
    "init": (), "status": (), "list": (), "runs": (), "export": ("gross_margin",),
    "show": ("gross_margin",), "history": ("gross_margin",), "impact": ("revenue",),
    "deps": ("gross_margin",), "explain": ("gross_margin", "ACME", "2025-12-31"),
    "check": ("gm2", "gross_margin * 2"), "set": ("gm2", "gross_margin * 2"),
    "delete": ("gross_margin_or_zero",), "recalc": ("--full",),
    "load-data": (str(SAMPLE / "data.csv"),), "load-entities": (str(SAMPLE / "entities.csv"),),
    "load-formulas": (str(SAMPLE / "formulas.csv"),), "demo": ("--data", str(SAMPLE)),
    "verify": (), "delete-data": ("revenue", "--entity", "ACME"), "db": ("current",),
    "history-data": ("revenue", "ACME", "2025-12-31"), "daily-calendar": (),
    "eval": ("gross_margin * 2", "--entity", "ACME"),
}
WRITERS = {"init", "set", "delete", "recalc", "load-data", "load-entities", "load-formulas",
           "delete-data"}
FILES = {"load-data": 0, "load-entities": 0, "load-formulas": 0}


def test_the_table_names_every_command():
    assert set(EVERY) == set(main.commands)


# (not demo: it writes its own SQLite file, --out, whatever --db says)
@pytest.mark.parametrize("name", sorted(set(EVERY) - {"demo"}))
def test_every_command_with_a_bad_db_value(cli, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for bad in ("finance.db", "postgresql://nobody@127.0.0.1:1/none",
                "mysql+nodriver://u:secret@h/db"):
        line = one_error(cli(name, *EVERY[name], db=bad))
        assert "secret" not in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(FILES) + ["demo"])
def test_every_command_with_a_missing_file(cli, name, tmp_path):
    args = ("--data", str(tmp_path / "nowhere")) if name == "demo" else (
        str(tmp_path / "missing.csv"),)
    line = one_error(cli(name, *args, db=f"sqlite:///{tmp_path / 'new.db'}"))
    assert "nowhere" in line or "missing.csv" in line
    assert not (tmp_path / "new.db").exists()  # a typo in the file name creates nothing


@pytest.fixture
def sample_db(tmp_path, cli):
    """A recalculated sample database (the demo's), at tmp_path/edges.db."""
    for args in (("load-entities", str(SAMPLE / "entities.csv")),
                 ("load-data", str(SAMPLE / "data.csv")),
                 ("load-formulas", str(SAMPLE / "formulas.csv")), ("recalc",)):
        assert cli(*args).exit_code == 0
    return tmp_path / "edges.db"


def test_every_output_path_that_cannot_be_written(cli, sample_db, tmp_path):
    assert "/nonexistent/dir" in one_error(cli("export", "-o", "/nonexistent/dir/x.csv"))
    assert "/nonexistent/dir" in one_error(cli("demo", "--data", str(SAMPLE), "--out",
                                               "/nonexistent/dir/demo.db"))


@pytest.mark.parametrize("name", sorted(EVERY))
def test_every_command_on_a_read_only_database(cli, sample_db, name):
    ro = f"sqlite:///file:{sample_db}?mode=ro&uri=true"
    res = cli(name, *EVERY[name], db=ro)
    if name in WRITERS - {"init", "load-data", "load-entities", "load-formulas"}:
        assert "read-only" in one_error(res)  # they would change something
    else:  # reads work; loads of unchanged data and init change nothing
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output


# (deletes free space: they succeed on a full disk)
@pytest.mark.parametrize("name", sorted(WRITERS - {"init", "delete", "delete-data"}))
def test_every_writing_command_on_a_full_disk(cli, sample_db, name, small_disk, tmp_path):
    args = EVERY[name]
    if name.startswith("load-"):  # changed data, so that the load has to write
        changed = tmp_path / "changed.csv"
        src = pd.read_csv(SAMPLE / args[0].rsplit("/", 1)[-1], dtype=str, keep_default_na=False)
        if name == "load-data":
            src["value"] = "1"
        elif name == "load-entities":
            src["name"] = src["name"] + " (renamed)" * 17  # within the 200 characters
        else:
            src["description"] = "changed " * 30
        src.to_csv(changed, index=False)
        args = (str(changed),)
    if name == "set":
        args = (*args, "-d", "long " * 4000)
    before = Engine(f"sqlite:///{sample_db}").export().sort_values(
        ["formula", "entity", "period"]).reset_index(drop=True)
    if name == "recalc":  # new formulas: their records need new pages
        for i in range(5):
            assert cli("set", f"new{i}", f"revenue * {i + 2}").exit_code == 0
    small_disk["n"] = sqlite3.connect(sample_db).execute("PRAGMA page_count").fetchone()[0]
    line = one_error(cli(name, *args))
    assert "disk is full" in line
    small_disk["n"] = 0
    if name != "recalc":  # all or nothing: the records are as they were
        after = Engine(f"sqlite:///{sample_db}").export().sort_values(
            ["formula", "entity", "period"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(before, after)


# -- found in review ---------------------------------------------------------------------------

def test_a_check_that_cannot_run_is_a_note_not_damage(tmp_path):
    from sqlalchemy import create_engine

    from tracecalc.storage import checks

    eng = create_engine(f"sqlite:///{tmp_path / 'x.db'}")

    def refused(conn):
        raise sqlite3.OperationalError("permission denied for function verify_heapam")

    def damaged(conn):
        raise sqlite3.DatabaseError("database disk image is malformed")

    notes: list[str] = []
    assert checks._run(eng, refused, notes) == []
    assert notes and "not checked" in notes[0] and "permission denied" in notes[0]
    assert "damaged" in checks._run(eng, damaged, notes)[0]


def test_verify_stays_clean_after_loads_and_deletes_inside_the_calendar(engine):
    engine.load_data(SAMPLE / "data.csv")
    engine.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    engine.recalc()
    assert engine.verify().ok
    late = pd.DataFrame({"item": ["revenue"], "entity": ["ACME"], "period": ["2026-06-30"],
                         "value": [1.0]})
    assert engine.load_data(late).new_periods == {  # with the quarter before it, empty
        "quarterly": (dt.date(2026, 3, 31), dt.date(2026, 6, 30))}
    engine.recalc()
    rep = engine.verify()
    assert rep.ok, rep.findings[:3]
    engine.delete_data("revenue", "ACME", "2020-03-31")  # inside: a missing value now
    engine.recalc()
    rep = engine.verify()
    assert rep.ok, rep.findings[:3]
    assert engine.delete_data("revenue", "ACME", "2026-06-30").removed_periods == (
        dt.date(2026, 3, 31), dt.date(2026, 6, 30))
    engine.recalc()
    rep = engine.verify()
    assert rep.ok, rep.findings[:3]
    assert engine.recalc(full=True, verify=True).records_written == 0


def test_the_lock_file_on_a_read_only_file_system(tmp_path, monkeypatch):
    import errno

    from tracecalc.storage import locks

    eng = Engine(f"sqlite:///{tmp_path / 'ro.db'}")
    real = os.open

    def refuse(code):
        def fake(path, *a, **k):
            if str(path).endswith(".recalc.lock"):
                raise OSError(code, os.strerror(code), path)
            return real(path, *a, **k)
        return fake

    monkeypatch.setattr(locks.os, "open", refuse(errno.EROFS))
    assert eng.verify().ok  # nothing can write there: nothing to keep out
    monkeypatch.setattr(locks.os, "open", refuse(errno.EACCES))
    with pytest.raises(errors.DatabaseError, match="cannot create the recalculation lock"):
        eng.recalc()
    eng.close()


def test_a_repeated_yaml_key_is_refused_with_both_rows(cli, tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("a1: revenue\nb1: cogs\na1: revenue * 2\n")
    line = one_error(cli("load-formulas", str(f)))
    assert "row 3: formula 'a1' is defined twice (first on row 1)" in line


def test_a_comma_in_an_unquoted_csv_field_names_the_row(cli, tmp_path):
    for text, row in (("name,expression\nroe,avg_balance(equity, 4)\n", 2),
                      ("name,expression\ngm,revenue\nroe,avg_balance(equity, 4)\n", 3)):
        f = tmp_path / "f.csv"
        f.write_text(text)
        line = one_error(cli("load-formulas", str(f)))
        assert f"row {row}: not a valid CSV file: 3 fields where the header has 2" in line
        assert "double quotes" in line


def test_delete_data_periods_are_dates_without_a_time(cli):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    assert "time of day" in one_error(cli("delete-data", "revenue", "-p", "2016-03-31 10:00"))
    assert "not a date" in one_error(cli("delete-data", "revenue", "-p", "2016-03-31xyz"))
    res = cli("delete-data", "revenue", "-e", "ACME", "-p", "2016-03-31T00:00:00")
    assert res.exit_code == 0 and "deleted 1 data point of revenue" in res.output


def test_honest_small_things(cli, tmp_path):
    assert cli("load-data", str(SAMPLE / "data.csv")).exit_code == 0
    assert cli("set", "gm", "(revenue - cogs) / revenue", "-d", "margin").exit_code == 0
    res = cli("set", "gm", "(revenue - cogs) / revenue", "-d", "gross margin")
    assert "gm unchanged, description updated (version 1)" in res.output
    f = tmp_path / "f.csv"
    f.write_text("name,expression\ngm,(revenue - cogs) / revenue\n")
    assert "0 changed, 1 unchanged" in cli("load-formulas", str(f)).output
    assert "gross margin" in cli("show", "gm").output  # a file without descriptions keeps it
    assert "Did you mean 'revenue'" in one_error(cli("show", "revnue"))
    assert "--db (or TRACECALC_DB) is empty" in one_error(cli("status", db=""))
    line = one_error(cli("load-data", str(SAMPLE / "data.csv"), "-f", "revenue=hourly"))
    assert "bad frequency 'hourly'" in line and "quarterly" in line
    res = cli("set", "g9", "(revnue - cogs) / revnue")  # one problem, with its caret
    assert res.stderr.count("unknown reference 'revnue'") == 1


def test_a_zero_terminal_width_still_prints(tmp_path):
    env = {**os.environ, "COLUMNS": "0", "TRACECALC_DB": f"sqlite:///{tmp_path / 'n.db'}"}
    res = subprocess.run([sys.executable, "-m", "tracecalc", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stderr.startswith("error: no tracecalc database")
