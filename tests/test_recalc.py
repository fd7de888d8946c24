"""The recalculation runner: parallel evaluation, overlapped writes, failures."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE, fail_writes
from tracecalc.errors import TracecalcError
from tracecalc.evaluator import Compiled, compile_tree
from tracecalc.model import FormulaState
from tracecalc.parser import parse
from tracecalc.recalc import chunks, stages
from tracecalc.runner import Runner
from tracecalc.storage.files import read_formulas
from tracecalc.task import Task

PANEL = np.arange(6.0).reshape(3, 2)
UNIVERSE = np.array([1, 2])


def task(name, expr, uses=()):
    parsed = parse(expr)
    return Task(name, compile_tree(parsed.tree, name), tuple(uses), UNIVERSE,
                parsed.has_cross_sectional)


def custom(name, inputs, fn, uses=()):
    return Task(name, Compiled(tuple(inputs), fn), tuple(uses), UNIVERSE)


def run(tasks, workers=2, write=None):
    """Inputs are PANEL; nothing is stored yet (every computed cell is an insert)."""
    written = {}

    def read(name, ids):
        if name in written or name.startswith("x"):
            return PANEL[:, ids - 1]
        return np.full((PANEL.shape[0], len(ids)), np.nan)

    def default_write(stats, outcome, final):
        written[stats.name] = outcome.new

    stats = Runner(tasks, UNIVERSE, read, write or default_write, workers).run()
    return stats, written


def test_results_and_order():
    tasks = [task("a", "x + 1"), task("b", "a * 2", ["a"]), task("c", "a + b + x", ["a", "b"])]
    stats, written = run(tasks, workers=3)
    np.testing.assert_array_equal(written["c"], (PANEL + 1) + 2 * (PANEL + 1) + PANEL)
    assert sorted(s.name for s in stats) == ["a", "b", "c"]
    assert all(s.records_written == 6 and s.entities == 2 for s in stats)


def test_writes_follow_the_plan_and_never_precede_what_a_formula_uses():
    """A write marks the formula's users stale where it changed, so a user written before
    it would stay stale: every formula is written after the formulas it uses. Among those
    free to go, the plan's order comes first (rows append to the records' key)."""
    import random
    import time

    rng = random.Random(5)
    tasks = []
    for i in range(60):
        uses = sorted({f"f{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 2)))})
        slow = 0.004 if rng.random() < 0.3 else 0.0

        def fn(*xs, slow=slow):
            time.sleep(slow)  # uneven evaluation times shuffle completion
            return sum(xs) + 1.0
        tasks.append(custom(f"f{i}", ["x", *uses], fn, uses))
    order = []

    def write(stats, outcome, final):
        time.sleep(0.002)  # a slow writer: evaluation fills the queue and waits for room
        order.append(stats.name)

    for _ in range(3):
        order.clear()
        run(tasks, workers=2, write=write)
        pos = {n: i for i, n in enumerate(order)}
        assert sorted(order) == sorted(t.name for t in tasks)
        assert all(pos[u] < pos[t.name] for t in tasks for u in t.uses)
    # One evaluation thread: always the earliest ready formula, so exactly the plan's
    # order (first come, first served would run every formula without inputs first).
    order.clear()
    run(tasks, workers=1, write=write)
    assert order == [t.name for t in tasks]


def test_a_plan_out_of_dependency_order_is_refused():
    tasks = [task("b", "a * 2", ["a"]), task("a", "x + 1")]
    with pytest.raises(ValueError, match="plan order puts b before a"):
        run(tasks)


def test_independent_formulas_run_at_the_same_time():
    barrier = threading.Barrier(2, timeout=10)

    def meet(x):  # passes only if the other formula is being evaluated concurrently
        barrier.wait()
        return x + 1

    tasks = [custom("a", ["x"], meet), custom("b", ["x"], meet)]
    stats, written = run(tasks, workers=2)
    assert set(written) == {"a", "b"}


def test_writes_overlap_evaluation():
    b_evaluating = threading.Event()

    def slow_write(stats, outcome, final):
        if stats.name == "a":  # a's write waits until b (which needs a) is being evaluated
            assert b_evaluating.wait(10), "b did not start while a was being written"

    def b_fn(a):
        b_evaluating.set()
        return a * 2

    tasks = [task("a", "x + 1"), custom("b", ["a"], b_fn, ["a"])]
    stats, _ = run(tasks, workers=1, write=slow_write)
    assert sorted(s.name for s in stats) == ["a", "b"]


def test_a_failing_write_stops_the_run():
    def write(stats, outcome, final):
        if stats.name == "b":
            raise RuntimeError("disk full")

    tasks = [task("a", "x + 1"), task("b", "a * 2", ["a"]), task("c", "b * 2", ["b"])]
    with pytest.raises(RuntimeError, match="disk full"):
        run(tasks, write=write)


def test_a_failing_evaluation_stops_the_run():
    def boom(x):
        raise ValueError("kernel failed")

    tasks = [custom("a", ["x"], boom), task("b", "a * 2", ["a"])]
    with pytest.raises(ValueError, match="kernel failed"):
        run(tasks)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_engine_results_do_not_depend_on_workers(sqlite_engine, workers):
    sqlite_engine.load_data(SAMPLE / "data.csv")
    sqlite_engine.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    rep = sqlite_engine.recalc(workers=workers)
    assert rep.status == "ok" and rep.formulas_computed == len(sqlite_engine.formulas())
    frame = sqlite_engine.export()
    key = ["formula", "entity", "period"]
    frame = frame.sort_values(key).reset_index(drop=True)
    other = sqlite_engine.recalc(full=True, workers=1)
    # nothing changed: everything recomputed, nothing rewritten (early cutoff)
    assert other.formulas_computed == rep.formulas_computed
    assert other.records_written == 0 and other.records_unchanged == rep.records_written
    again = sqlite_engine.export().sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, again)


def test_engine_run_failure_is_logged_and_leaves_the_rest_stale(sqlite_engine, monkeypatch):
    sqlite_engine.load_data(pd.DataFrame({"item": "x", "entity": ["A", "B"],
                                          "period": "2024-03-31", "value": [1.0, 2.0]}),
                            frequencies={"x": "quarterly"})
    sqlite_engine.set_formulas([{"name": "a", "expression": "x + 1"},
                                {"name": "b", "expression": "a * 2"}])
    fail_writes(monkeypatch, sqlite_engine, "b", OSError("connection lost"))
    with pytest.raises(TracecalcError, match="connection lost"):
        sqlite_engine.recalc()
    run_row = sqlite_engine.runs()[0]
    assert run_row["status"] == "failed" and "connection lost" in run_row["message"]
    assert sqlite_engine.formula("a").state == FormulaState.FRESH
    assert sqlite_engine.formula("b").state == FormulaState.STALE
    monkeypatch.undo()
    assert [f.name for f in sqlite_engine.recalc().formulas] == ["b"]


# -- entity chunks and stages -------------------------------------------------------------------


def test_stages_cut_the_plan_at_cross_sectional_formulas():
    tasks = [task("a", "x + 1"), task("r", "cs_rank(a)", ["a"]), task("b", "r * a", ["r", "a"]),
             task("c", "x * 2"), task("z", "cs_zscore(b)", ["b"]), task("d", "z + c", ["z", "c"])]
    got = [[t.name for t in s] for s in stages(tasks)]
    assert got == [["a", "c"], ["r", "b"], ["z", "d"]]
    assert [t.cross_sectional for t in stages(tasks)[1]] == [True, False]


def test_chunks_split_the_universe_evenly():
    parts = chunks(np.arange(1, 11), 4)
    assert [p.tolist() for p in parts] == [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert [p.tolist() for p in chunks(np.arange(1, 4), 100)] == [[1, 2, 3]]


def _sorted_export(eng) -> pd.DataFrame:
    return eng.export().sort_values(["formula", "entity", "period"]).reset_index(drop=True)


def test_chunked_runs_equal_one_chunk_bit_for_bit(db_url, tmp_path):
    """Chunks of 7 entities (the sample has 50, and 10 cross-sectional formulas): the same
    records as one chunk, cold, after a data change, and after an edit."""
    from tracecalc.engine import Engine

    ref = Engine(f"sqlite:///{tmp_path / 'ref.db'}")
    eng = Engine(db_url)
    for e in (ref, eng):
        e.load_data(SAMPLE / "data.csv")
        e.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    seen = []
    ref.recalc(full=True)
    rep = eng.recalc(full=True, chunk_entities=7,
                     progress=lambda done, total, name: seen.append((done, total)))
    # once planned (0 done), then once per formula
    assert seen == [(i, len(rep.formulas)) for i in range(len(rep.formulas) + 1)]
    pd.testing.assert_frame_equal(_sorted_export(ref), _sorted_export(eng))
    logged = {r["formula_name"]: r for r in eng.run_log(rep.run_id)}
    assert set(logged) == {f.name for f in rep.formulas}  # one line per formula
    assert sum(r["records_written"] for r in logged.values()) == rep.records_written
    data = pd.read_csv(SAMPLE / "data.csv")
    one = data[data["entity"] == data["entity"].iloc[-1]].copy()
    one["value"] *= 1.1
    for e in (ref, eng):
        e.load_data(one)
        e.set_formula("gross_margin", "(revenue - cogs) / revenue * 100")
    a = ref.recalc()
    b = eng.recalc(chunk_entities=7)
    assert b.records_written == a.records_written > 0
    assert eng.status()["stale"] == []
    pd.testing.assert_frame_equal(_sorted_export(ref), _sorted_export(eng))
    assert eng.recalc(full=True, chunk_entities=7).records_written == 0
    ref.close()
    eng.close()


def test_a_full_run_over_unchanged_data_reads_digests_not_records(sqlite_engine, monkeypatch):
    sqlite_engine.load_data(SAMPLE / "data.csv")
    sqlite_engine.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    first = sqlite_engine.recalc(full=True)
    reads = []
    real = sqlite_engine.store.read_records
    monkeypatch.setattr(sqlite_engine.store, "read_records",
                        lambda conn, fid, ids=None: reads.append(fid) or real(conn, fid, ids))
    again = sqlite_engine.recalc(full=True)
    assert again.records_written == 0 and again.records_unchanged == first.records_written
    # inputs computed in the run come from memory, and digests say nothing changed
    assert reads == []


def test_records_without_digests_are_compared_cell_by_cell(sqlite_engine):
    """A database from before digests (or digests lost) still gets an exact diff."""
    sqlite_engine.load_data(SAMPLE / "data.csv")
    sqlite_engine.set_formula("m", "revenue - cogs")
    first = sqlite_engine.recalc()
    with sqlite_engine.store.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM tc_digests")
        tampered = c.exec_driver_sql(
            "UPDATE tc_records SET value = value + 1 WHERE entity_id = 1").rowcount
    assert 0 < tampered < first.records_written
    rep = sqlite_engine.recalc(full=True)
    assert rep.records_written == tampered  # entity 1's cells, nothing else
    assert rep.records_unchanged == first.records_written - tampered
    assert sqlite_engine.recalc(full=True).records_written == 0
