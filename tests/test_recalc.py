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
from tracecalc.recalc import Runner, Task
from tracecalc.storage.files import read_formulas

PANEL = np.arange(6.0).reshape(3, 2)
UNIVERSE = np.array([1, 2])


def task(name, expr, uses=()):
    return Task(name, compile_tree(parse(expr).tree, name), tuple(uses), UNIVERSE)


def custom(name, inputs, fn, uses=()):
    return Task(name, Compiled(tuple(inputs), fn, "<test>"), tuple(uses), UNIVERSE)


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
