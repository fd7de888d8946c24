"""What only DuckDB has: its table layout, one process per database file, writers that
queue inside that process, the frame-joined row deletes and updates, the demo on it.
(Every database test also runs on DuckDB: tests/conftest.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import ROOT, SAMPLE
from tracecalc.cli import main
from tracecalc.engine import Engine
from tracecalc.errors import CycleError, TracecalcError
from tracecalc.storage import migrations
from tracecalc.storage.schema import data_points

pytest.importorskip("duckdb_engine")

X = pd.DataFrame({"item": "x", "entity": ["A", "B"], "period": "2024-03-31",
                  "value": [1.0, 2.0]})


@pytest.fixture
def url(tmp_path):
    return f"duckdb:///{tmp_path / 'one.duckdb'}"


def test_layout_big_tables_keyless_ids_from_sequences(url):
    with Engine(url) as eng, eng.store.engine.connect() as c:
        keys = {t for (t,) in c.exec_driver_sql(
            "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'")}
        fks = c.exec_driver_sql("SELECT count(*) FROM duckdb_constraints() "
                                "WHERE constraint_type = 'FOREIGN KEY'").scalar()
        seqs = {s for (s,) in c.exec_driver_sql("SELECT sequence_name FROM duckdb_sequences()")}
        stamp = c.exec_driver_sql("SELECT version_num FROM tc_alembic_version").scalar()
    heaps = {"tc_data", "tc_records", "tc_data_versions", "tc_record_versions"}
    assert not keys & heaps
    assert {"tc_formulas", "tc_items", "tc_entities", "tc_digests", "tc_meta"} <= keys
    assert fks == 0
    assert seqs == {"tc_items_id_seq", "tc_entities_id_seq", "tc_formulas_id_seq",
                    "tc_formula_history_id_seq", "tc_runs_id_seq"}
    assert stamp == migrations.HEAD


def test_ids_count_up_and_survive_a_reopen(url):
    with Engine(url) as eng:
        eng.load_data(X, frequencies={"x": "quarterly"})
        eng.set_formulas([{"name": "a", "expression": "x * 2"},
                          {"name": "b", "expression": "a + 1"}])
    with Engine(url) as eng:
        eng.set_formula("c", "b - x")
        with eng.store.transaction(write=False) as conn:
            ids = [eng.store.formula_row(conn, n).id for n in ("a", "b", "c")]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert eng.recalc().records_written == 6
        got = eng.records("c").set_index("entity")["value"].to_dict()
    assert got == {"A": 1.0 * 2 + 1 - 1.0, "B": 2.0 * 2 + 1 - 2.0}


def test_a_second_process_is_refused_in_one_line(url):
    eng = Engine(url)
    eng.load_data(X, frequencies={"x": "quarterly"})
    cmd = [sys.executable, "-m", "tracecalc", "--db", url, "list"]
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    finally:
        eng.close()
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "open in another process" in lines[0], res.stderr
    assert "one process open a database file at a time" in lines[0]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr


def test_racing_cyclic_saves_on_threads(url):
    """As test_concurrency's race, on two threads of one process (the one process DuckDB
    lets in): the writer lock makes each save's cycle check see the other's commit."""
    rounds = 20
    eng = Engine(url)
    eng.load_data(X, frequencies={"x": "quarterly"})
    racers = [Engine(url, user=f"racer-{n}") for n in "ab"]
    barrier = threading.Barrier(3)
    results: dict[int, list] = {i: [] for i in range(rounds)}

    def race(racer, name, expr):
        for i in range(rounds):
            barrier.wait(timeout=60)
            try:
                racer.set_formula(name, expr)
                results[i].append((name, "ok"))
            except CycleError as e:
                results[i].append((name, "cycle" if e.cycle[0] == e.cycle[-1] else repr(e)))
            except Exception as e:  # anything else fails the test
                results[i].append((name, repr(e)))
            barrier.wait(timeout=60)

    threads = [threading.Thread(target=race, args=(r, n, e))
               for r, (n, e) in zip(racers, (("a", "b + 1"), ("b", "a + 1")))]
    try:
        eng.set_formulas([{"name": "a", "expression": "x"}, {"name": "b", "expression": "x"}])
        for t in threads:
            t.start()
        for i in range(rounds):
            barrier.wait(timeout=60)
            barrier.wait(timeout=60)
            got = sorted(results[i])
            assert sorted(r for _, r in got) == ["cycle", "ok"], (i, got)
            winner = next(n for n, r in got if r == "ok")
            assert eng.dependencies(winner) == ["b" if winner == "a" else "a"]
            eng.set_formulas([{"name": "a", "expression": "x"},
                              {"name": "b", "expression": "x"}])
    finally:
        barrier.abort()
        for t in threads:
            t.join(timeout=60)
        for r in racers:
            r.close()
        eng.close()


def test_frame_joined_deletes_and_updates_against_a_dict(url):
    """The bulk writer's deletes and updates of single cells (joins with a registered
    frame), checked against the same edits on a plain dict."""
    rng = np.random.default_rng(7)
    n_e, days = 40, np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-03-01"))
    e = np.repeat(np.arange(1, n_e + 1), len(days))
    p = np.tile(days, n_e)
    v = rng.normal(size=len(e))
    want = {(int(a), b): float(c) for a, b, c in zip(e, p.astype(str), v)}
    pick = rng.choice(len(e), size=300, replace=False)
    gone, moved = pick[:120], pick[120:]
    new = rng.normal(size=len(moved))
    for i in gone:
        del want[(int(e[i]), str(p[i]))]
    for i, x in zip(moved, new):
        want[(int(e[i]), str(p[i]))] = float(x)
    with Engine(url) as eng:
        s = eng.store
        with s.transaction() as conn:
            s.bulk.insert_rows(conn, data_points, "item_id", 5, e, p, v)
            s.bulk.insert_rows(conn, data_points, "item_id", 6, e, p, v)  # left alone
            assert s.bulk.delete_keys(conn, data_points, "item_id", 5, e[gone], p[gone]) == 120
            s.bulk.update_values(conn, data_points, "item_id", 5, e[moved], p[moved], new)
        with s.transaction(write=False) as conn:
            ge, gp, gv = s.bulk.read_rows(conn, data_points, "item_id", 5)
            other = s.bulk.read_rows(conn, data_points, "item_id", 6)
    got = {(int(a), str(b)): float(c) for a, b, c in zip(ge, gp, gv)}
    assert got == want
    assert len(other[0]) == len(e) and np.array_equal(np.sort(other[2]), np.sort(v))


def test_demo_on_duckdb(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = f"duckdb:///{tmp_path / 'demo.duckdb'}"
    res = CliRunner().invoke(main, ["demo", "--data", str(SAMPLE), "--db", db],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "recomputed only: roe_quality" in res.output
    assert "net_income BLRX 2024-12-31 known 2025-06-01: 191.709  (latest)" in res.output
    assert f"tracecalc --db {db} list" in res.output
    with Engine(db) as eng:
        assert eng.status()["stale"] == []
        assert eng.recalc(full=True).records_written == 0
        rep = eng.verify()
        assert rep.ok and rep.notes == () and rep.records > 100_000
        assert rep.integrity_method.startswith("a read of every block")
    bad = CliRunner().invoke(main, ["demo", "--db", "duckdb:///:memory:"])
    assert bad.exit_code == 1 and "the demo replaces its database" in bad.output


def test_dask_is_refused_before_any_work(url):
    pytest.importorskip("distributed")
    with Engine(url) as eng:
        eng.load_data(X, frequencies={"x": "quarterly"})
        eng.set_formula("y", "x * 2")
        with pytest.raises(TracecalcError, match="DuckDB database opens in one process"):
            eng.recalc(full=True, dask="tcp://127.0.0.1:1")
        assert eng.status()["stale"] == ["y"]
