"""``verify`` and ``recalc --verify``: records changed behind their digests are found and
repaired; a damaged database gives one error line, never a traceback (issue 11, defect 15).
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import ROOT, SAMPLE
from tracecalc.cli import main
from tracecalc.engine import Engine
from tracecalc.evaluator import column_digests, updated_digests
from tracecalc.task import compare

QUARTERS = ["2023-03-31", "2023-06-30", "2023-09-30", "2023-12-31", "2024-03-31",
            "2024-06-30"]
ENTITIES = ["A", "B", "C", "D", "E"]
FORMULAS = [
    {"name": "gross", "expression": "revenue - cogs"},
    {"name": "margin", "expression": "gross / revenue"},
    {"name": "rev_growth", "expression": "growth(revenue, 1)"},
    {"name": "rank_margin", "expression": "cs_rank(margin)"},
]


def data(quarters=QUARTERS) -> pd.DataFrame:
    rows = []
    for i, e in enumerate(ENTITIES):
        for t, q in enumerate(quarters):
            rows.append(("revenue", e, q, str(100 + 10 * i + 3 * t)))
            rows.append(("cogs", e, q, str(40 + i + 2 * t)))
    return pd.DataFrame(rows, columns=["item", "entity", "period", "value"])


def build(eng: Engine, df: pd.DataFrame | None = None) -> None:
    eng.load_data(data() if df is None else df)
    eng.set_formulas(FORMULAS)
    eng.recalc(full=True)


def ids(eng: Engine, formula: str, entity: str) -> tuple[int, int]:
    with eng.store.transaction() as conn:
        return (eng.store.formula_row(conn, formula).id, eng.store.entity_ids(conn)[entity])


def sql(eng: Engine, statement: str) -> int:
    with eng.store.transaction() as conn:
        return conn.exec_driver_sql(statement).rowcount


def exported(eng: Engine) -> pd.DataFrame:
    return eng.export().sort_values(["formula", "entity", "period"]).reset_index(drop=True)


def from_scratch(tmp_path) -> pd.DataFrame:
    with Engine(f"sqlite:///{tmp_path / 'scratch.db'}") as ref:
        build(ref)
        return exported(ref)


def mismatches(rep) -> list[tuple[str, str]]:
    return [(f.formula, f.entity) for f in rep.findings if f.kind == "mismatch"]


def test_a_clean_database_verifies_clean(engine):
    build(engine)
    rep = engine.verify()
    assert rep.ok and rep.problems == 0 and not rep.integrity and not rep.findings
    assert rep.formulas == 4 and rep.entities == 5
    assert rep.records == engine.status()["records"] > 0
    assert rep.digests == 4 * 5  # one per formula and entity
    assert rep.integrity_method == {"sqlite": "PRAGMA integrity_check",
                                    "mysql": "CHECK TABLE"}.get(
        engine.store.dialect, rep.integrity_method)


def test_a_tampered_record_is_found_and_repaired(engine, tmp_path):
    build(engine)
    fid, eid = ids(engine, "gross", "C")
    period = "'2023-09-30'"
    assert sql(engine, f"UPDATE tc_records SET value = value + 0.5 WHERE formula_id = {fid} "
                       f"AND entity_id = {eid} AND period = {period}") == 1
    rep = engine.verify()
    assert not rep.ok and rep.integrity == ()
    assert mismatches(rep) == [("gross", "C")] and rep.count("mismatch") == 1
    # the hole: digests match the new values, so a plain full run reads no records
    plain = engine.recalc(full=True)
    assert plain.records_written == 0
    assert mismatches(engine.verify()) == [("gross", "C")]
    fixed = engine.recalc(full=True, verify=True)
    assert fixed.verify and fixed.kind == "full-verify"
    assert fixed.records_written == 1
    assert [(f.name, f.records_written) for f in fixed.formulas if f.records_written] == [
        ("gross", 1)]
    assert engine.runs(1)[0]["kind"] == "full-verify"
    assert engine.verify().ok
    pd.testing.assert_frame_equal(exported(engine), from_scratch(tmp_path))
    # the repaired cell holds revenue - cogs again (C: i = 2, Q3: t = 2)
    got = engine.records("gross", ["C"], "2023-09-30", "2023-09-30")["value"].tolist()
    assert got == [(100 + 20 + 6) - (40 + 2 + 4)]


def test_a_tampered_digest_is_found_and_rewritten(engine):
    build(engine)
    fid, eid = ids(engine, "margin", "B")
    assert sql(engine, f"UPDATE tc_digests SET digest = 12345 WHERE formula_id = {fid} "
                       f"AND entity_id = {eid}") == 1
    rep = engine.verify()
    assert mismatches(rep) == [("margin", "B")]
    fixed = engine.recalc(full=True, verify=True)
    assert fixed.records_written == 0  # the records were right
    assert engine.verify().ok
    with engine.store.transaction() as conn:
        stored = engine.store.read_digests(conn, fid, np.array([eid]))
    assert stored[0] != 12345
    recs = engine.records("margin", ["B"])
    col = recs["value"].to_numpy()[:, None]
    days = pd.to_datetime(recs["period"]).to_numpy().astype("datetime64[D]")
    assert stored[0] == column_digests(col, days)[0]


def test_a_deleted_record_and_a_deleted_digest(engine):
    build(engine)
    fid, eid = ids(engine, "rev_growth", "D")
    sql(engine, f"DELETE FROM tc_records WHERE formula_id = {fid} AND entity_id = {eid} "
                "AND period = '2024-06-30'")
    fid2, eid2 = ids(engine, "gross", "A")
    sql(engine, f"DELETE FROM tc_digests WHERE formula_id = {fid2} AND entity_id = {eid2}")
    rep = engine.verify()
    assert mismatches(rep) == [("rev_growth", "D")]
    assert [(f.formula, f.entity) for f in rep.findings if f.kind == "missing digest"] == [
        ("gross", "A")]
    assert rep.problems == 1  # a missing digest only costs a cell-by-cell compare
    assert engine.recalc(full=True, verify=True).records_written == 1
    rep = engine.verify()
    assert rep.ok and not rep.findings


def test_stray_records_and_digests_are_reported_and_removed(engine):
    build(engine)
    fid, _ = ids(engine, "gross", "A")
    sql(engine, "INSERT INTO tc_records (formula_id, entity_id, period, value) "
                "VALUES (999, 1, '2023-03-31', 1.0)")
    sql(engine, f"INSERT INTO tc_records (formula_id, entity_id, period, value) "
                f"VALUES ({fid}, 77, '2023-03-31', 2.0)")
    sql(engine, f"INSERT INTO tc_records (formula_id, entity_id, period, value) "
                f"VALUES ({fid}, 1, '2023-02-15', 3.0)")
    sql(engine, "INSERT INTO tc_digests (formula_id, entity_id, digest) VALUES (999, 1, 5)")
    rep = engine.verify()
    assert not rep.ok
    strays = sorted((f.formula, f.entity) for f in rep.findings if f.kind == "stray records")
    assert strays == [("#999", None), ("gross", "#77"), ("gross", "A")]
    assert rep.count("stray records") == 3 and rep.count("stray digest") == 1
    fixed = engine.recalc(full=True, verify=True)
    assert fixed.strays_removed == 3 and fixed.records_written == 0
    assert engine.verify().ok


def test_digests_stay_true_when_the_calendar_grows(engine):
    build(engine)
    # a new quarter for A only: the others keep the digests written before the calendar
    # grew, and those still describe their records (missing cells are no cells)
    engine.load_data(pd.DataFrame({"item": ["revenue", "cogs"], "entity": ["A", "A"],
                                   "period": ["2024-09-30"] * 2, "value": ["200", "50"]}))
    engine.recalc()
    rep = engine.verify()
    assert rep.ok, rep.findings
    assert rep.counts == ()


def test_verify_reads_in_bounded_chunks(engine):
    build(engine)
    fid, eid = ids(engine, "rank_margin", "E")
    sql(engine, f"UPDATE tc_records SET value = 0.125 WHERE formula_id = {fid} "
                f"AND entity_id = {eid} AND period = '2024-06-30'")
    rep = engine.verify(chunk_entities=2)  # chunks [A, B] [C, D] [E]
    assert mismatches(rep) == [("rank_margin", "E")] and rep.digests == 20


@pytest.fixture
def postgresql_url(tmp_path):
    """A fresh PostgreSQL schema (amcheck is a PostgreSQL extension)."""
    from conftest import make_database

    url, cleanup = make_database("postgresql", tmp_path)
    yield url
    cleanup()


def test_postgresql_amcheck_when_installed(postgresql_url):
    with Engine(postgresql_url) as eng:
        build(eng)
        rep = eng.verify()
        assert rep.ok and rep.notes and "amcheck" in rep.notes[0]
        with eng.store.engine.connect() as conn:
            if not conn.exec_driver_sql("SELECT count(*) FROM pg_available_extensions "
                                        "WHERE name = 'amcheck'").scalar():
                pytest.skip("no amcheck on this server")
            if conn.exec_driver_sql("SELECT count(*) FROM pg_extension "
                                    "WHERE extname = 'amcheck'").scalar():
                pytest.skip("amcheck is installed in this database already")
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
            conn.exec_driver_sql(f'CREATE EXTENSION amcheck SCHEMA "{schema}"')
            conn.commit()
        try:
            rep = eng.verify()
            assert rep.ok and rep.notes == ()
            assert "verify_heapam" in rep.integrity_method
        finally:
            with eng.store.engine.connect() as conn:
                conn.exec_driver_sql("DROP EXTENSION IF EXISTS amcheck")
                conn.commit()


def test_compare_with_verify_diffs_every_cell():
    new = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
    ids_ = np.array([10, 11, 12])
    stored = new.copy()
    stored[0, 1] = 9.0  # records changed behind the digest
    days = np.array(["2024-03-31", "2024-06-30"], dtype="datetime64[D]")
    digests = column_digests(new, days)
    digests_stored = digests.copy()
    digests_stored[2] = 7  # a wrong digest over right records
    out, unchanged = compare(new, ids_, digests_stored, lambda sub: stored[:, np.searchsorted(
        ids_, sub)], days)
    assert out.ids.tolist() == [12] and out.diff.written == 0  # trusting the digests
    out, unchanged = compare(new, ids_, digests_stored, lambda sub: stored[:, np.searchsorted(
        ids_, sub)], days, verify=True)
    assert out.ids.tolist() == [11, 12]  # the changed cell's entity and the wrong digest
    assert out.diff.written == 1 and out.diff.update[0, 0]
    assert out.digests.tolist() == digests[[1, 2]].tolist()
    assert unchanged == 4 and out.diff.unchanged == 2


def test_digests_see_present_cells_with_their_dates_and_update_from_changes():
    rng = np.random.default_rng(3)
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-10"))
    panel = rng.normal(size=(9, 4))
    panel[rng.random(panel.shape) < 0.3] = np.nan
    d = column_digests(panel, days)
    # a missing row is no cell: a longer calendar with nothing there digests the same
    longer = np.vstack([panel, np.full((3, 4), np.nan)])
    more = np.arange(days[0], days[-1] + 4)
    assert column_digests(longer, more).tolist() == d.tolist()
    # the same values on other dates, or one bit changed, digest differently
    assert (column_digests(panel, days + 1) != d).all()
    bumped = panel.copy()
    bumped[4] = np.nextafter(bumped[4], np.inf)
    full = column_digests(bumped, days)
    changed = ~np.isnan(panel[4])
    assert (full[changed] != d[changed]).all() and (full[~changed] == d[~changed]).all()
    # updating from the changed rows gives the digest of the whole new column
    tail = slice(4, None)
    up = updated_digests(d, panel[tail], bumped[tail], days[tail])
    assert up.tolist() == full.tolist()
    assert updated_digests(np.zeros(4, np.int64), panel[tail], bumped[tail],
                           days[tail]).tolist() == [0] * 4


# -- the command line ------------------------------------------------------------------------




def test_cli_verify_and_recalc_verify(cli, tmp_path):
    pd.DataFrame(data()).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(FORMULAS).to_csv(tmp_path / "f.csv", index=False)
    cli("load-data", str(tmp_path / "d.csv"))
    cli("load-formulas", str(tmp_path / "f.csv"))
    cli("recalc", "--full")
    out = cli("verify").stdout
    assert "integrity: PRAGMA integrity_check: ok" in out
    assert "digests of 4 formulas and 5 entities" in out
    assert "verified: no problems found" in out
    with Engine(cli.db) as eng:
        fid, eid = ids(eng, "margin", "E")
        sql(eng, f"UPDATE tc_records SET value = 0.5 WHERE formula_id = {fid} "
                 f"AND entity_id = {eid} AND period = '2024-03-31'")
    res = cli("verify", code=1)
    assert "mismatch: 1" in res.stdout and "mismatch: margin / E" in res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 1 problems in the stored records: run `tracecalc recalc --full "
                      "--verify` to compare and repair every record"]
    assert "0 records written" in cli("recalc", "--full").stdout
    out = cli("recalc", "--full", "--verify").stdout
    assert "4 formulas recomputed, 1 record written" in out
    assert "verified: every recomputed record compared with the stored one" in out
    assert "verified: no problems found" in cli("verify").stdout


def _damaged_sample_db(tmp_path) -> str:
    """The sample model (148,437 records) with random bytes over five of the records'
    pages, written while no connection is open."""
    path = tmp_path / "damaged.db"
    with Engine(f"sqlite:///{path}") as eng:
        eng.load_entities(SAMPLE / "entities.csv")
        eng.load_data(SAMPLE / "data.csv")
        from tracecalc.storage.files import read_formulas

        eng.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
        assert eng.recalc(full=True).records_written == 148_437
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = con.execute("PRAGMA page_size").fetchone()[0]
    try:
        pages = [r[0] for r in con.execute(
            "SELECT pageno FROM dbstat WHERE name = 'tc_records' AND pagetype = 'leaf'")]
    except sqlite3.OperationalError:  # no dbstat: the middle of the file is records
        n = con.execute("PRAGMA page_count").fetchone()[0]
        pages = list(range(n // 3, 2 * n // 3))
    con.close()
    rnd = random.Random(11)
    with open(path, "r+b") as f:
        for p in rnd.sample(pages, 5):
            f.seek((p - 1) * size + 100)
            f.write(rnd.randbytes(size // 2))
    return f"sqlite:///{path}"


def test_a_damaged_sqlite_file(tmp_path):
    url = _damaged_sample_db(tmp_path)
    with Engine(url) as eng:
        rep = eng.verify()  # no exception
    assert not rep.ok and rep.corrupt and rep.integrity
    assert rep.damaged_tables == ("tc_records",)
    proc = subprocess.run([sys.executable, "-m", "tracecalc", "--db", url, "verify"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert errors[0].startswith("error: the database is damaged (PRAGMA integrity_check: ")
    assert "in tc_records): restore a backup, or rebuild the records" in errors[0]
    assert "integrity: PRAGMA integrity_check:" in proc.stdout
    assert "damaged:   tc_records" in proc.stdout
    # the run that cannot read them fails in one line too
    res = CliRunner().invoke(main, ["--db", url, "recalc", "--full", "--verify"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "is damaged (database disk image is malformed)" in res.output
