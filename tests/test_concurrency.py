"""Saves that race, recalculations that collide, runs killed with SIGKILL."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import ROOT, SAMPLE, fail_writes
from tracecalc.engine import Engine
from tracecalc.errors import BusyError, CycleError, TracecalcError
from tracecalc.model import FormulaState
from tracecalc.storage.files import read_formulas

X = pd.DataFrame({"item": "x", "entity": ["A", "B"], "period": "2024-03-31",
                  "value": [1.0, 2.0]})


def save_worker(url, name, expr, rounds, barrier, results):
    eng = Engine(url, user=f"racer-{name}")
    for i in range(rounds):
        barrier.wait()
        try:
            eng.set_formula(name, expr)
            results.put((i, name, "ok"))
        except CycleError as e:
            results.put((i, name, "cycle" if e.cycle[0] == e.cycle[-1] else repr(e)))
        except Exception as e:  # anything else is a failure of the test
            results.put((i, name, repr(e)))
        barrier.wait()
    eng.close()


def test_racing_cyclic_saves(db_url):
    """50 rounds: one process saves a = b + 1 while another saves b = a + 1."""
    rounds = 50
    eng = Engine(db_url)
    eng.load_data(X, frequencies={"x": "quarterly"})
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=save_worker, args=(db_url, n, e, rounds, barrier, results))
             for n, e in (("a", "b + 1"), ("b", "a + 1"))]
    eng.set_formulas([{"name": "a", "expression": "x"}, {"name": "b", "expression": "x"}])
    for p in procs:
        p.start()
    try:
        for i in range(rounds):
            eng.set_formulas([{"name": "a", "expression": "x"},
                              {"name": "b", "expression": "x"}])
            barrier.wait(timeout=60)
            barrier.wait(timeout=60)
            got = sorted(results.get(timeout=60)[1:] for _ in range(2))
            assert sorted(r for _, r in got) == ["cycle", "ok"], (i, got)
            deps = {n: eng.dependencies(n) for n in ("a", "b")}
            assert not ("b" in deps["a"] and "a" in deps["b"]), (i, deps)
            winner = next(n for n, r in got if r == "ok")
            assert deps[winner] == ["b" if winner == "a" else "a"]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
        eng.close()
    assert all(p.exitcode == 0 for p in procs)


def test_a_second_recalc_waits_or_gives_up(db_url):
    eng = Engine(db_url)
    eng.load_data(X, frequencies={"x": "quarterly"})
    eng.set_formula("y", "x * 2")
    holder = Engine(db_url).store.recalc_lock()
    holder.acquire()
    try:
        t0 = time.monotonic()
        with pytest.raises(BusyError, match="another recalculation is running"):
            eng.recalc(wait=0.6)
        assert time.monotonic() - t0 >= 0.5
        assert eng.formula("y").state == FormulaState.STALE
    finally:
        holder.release()
    assert eng.recalc(wait=0.6).records_written == 2
    eng.close()


def test_busy_exit_code(tmp_path):
    from click.testing import CliRunner

    from tracecalc.cli import EXIT_BUSY, main

    db = f"sqlite:///{tmp_path / 'busy.db'}"
    eng = Engine(db)
    eng.load_data(X, frequencies={"x": "quarterly"})
    lock = eng.store.recalc_lock()
    lock.acquire()
    try:
        res = CliRunner().invoke(main, ["--db", db, "recalc"])
        assert res.exit_code == EXIT_BUSY == 3
        assert "another recalculation is running" in res.output
    finally:
        lock.release()


def test_a_save_during_a_run_stays_stale_for_the_next(db_url):
    eng = Engine(db_url)
    eng.load_data(X, frequencies={"x": "quarterly"})
    eng.set_formulas([{"name": "a", "expression": "x + 1"},
                      {"name": "b", "expression": "a * 2"},
                      {"name": "c", "expression": "b * 2"}])
    editor = Engine(db_url, user="editor")
    saved = []

    def progress(done, total, name):
        if name == "a":  # a is written; b and c are not yet
            saved.append(editor.set_formula("c", "b * 3"))

    eng.recalc(progress=progress, workers=1)
    assert saved and eng.formula("c").state == FormulaState.STALE
    assert eng.formula("a").state == eng.formula("b").state == FormulaState.FRESH
    rep = eng.recalc()
    assert [f.name for f in rep.formulas] == ["c"]
    assert sorted(eng.records("c")["value"]) == [12.0, 18.0]
    editor.close()
    eng.close()


def test_atomic_run_is_all_or_nothing(tmp_path, monkeypatch):
    eng = Engine(f"sqlite:///{tmp_path / 'atomic.db'}")
    eng.load_data(X, frequencies={"x": "quarterly"})
    eng.set_formulas([{"name": "a", "expression": "x + 1"},
                      {"name": "b", "expression": "a * 2"}])
    fail_writes(monkeypatch, eng, "b", OSError("disk full"))
    with pytest.raises(TracecalcError, match="disk full"):
        eng.recalc(atomic=True)
    assert eng.status()["records"] == 0  # a's records were rolled back too
    assert eng.formula("a").state == FormulaState.STALE
    assert eng.runs()[0]["status"] == "failed"
    assert "rolled back" in eng.runs()[0]["message"]
    monkeypatch.undo()
    rep = eng.recalc(atomic=True)
    assert rep.records_written == 4 and eng.status()["stale"] == []


def snapshot(eng) -> dict:
    df = eng.export()
    return {(r.formula, r.entity, r.period): r.value for r in df.itertuples()}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigkill_at_random_moments(kind, tmp_path):
    """Kill a full recalculation with SIGKILL at 10 random moments; the next run finishes
    the remaining work and the records equal those of an uninterrupted run."""
    from conftest import make_database

    url, cleanup = make_database(kind, tmp_path)
    try:
        ref = Engine("sqlite:///:memory:")
        for e in (ref, Engine(url)):
            e.load_data(SAMPLE / "data.csv")
            e.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
        ref.recalc(full=True)
        want = snapshot(ref)
        eng = Engine(url)
        rng = random.Random(20261122)
        # Each run starts cold (records and digests gone, every formula stale, in one
        # transaction) and goes in small entity chunks: many commits to be killed between.
        code = ("import sys\nfrom sqlalchemy import text\n"
                "from tracecalc.engine import Engine\n"
                f"e = Engine({url!r})\n"
                "with e.store.engine.begin() as c:\n"
                "    c.execute(text('DELETE FROM tc_records'))\n"
                "    c.execute(text('DELETE FROM tc_digests'))\n"
                "    c.execute(text(\"UPDATE tc_formulas SET state = 'stale'\"))\n"
                "e.recalc(full=True, workers=2, chunk_entities=int(sys.argv[1]))\n")
        killed_mid_run = 0
        for _ in range(10):
            proc = subprocess.Popen([sys.executable, "-c", code,
                                     str(rng.choice([7, 20, 1000]))])
            time.sleep(rng.uniform(0.5, 2.5))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                last = eng.runs(1)  # none yet if killed while still importing
                killed_mid_run += bool(last) and last[0]["status"] == "running"
            proc.wait()
            eng.recalc(wait=10)
            assert eng.status()["stale"] == []
            assert snapshot(eng) == want
        statuses = [r["status"] for r in eng.runs(100)]
        assert statuses.count("interrupted") == killed_mid_run >= 3, statuses
        eng.close()
    finally:
        cleanup()


def test_nightly_script(tmp_path):
    db = f"sqlite:///{tmp_path / 'nightly.db'}"
    eng = Engine(db)
    eng.load_data(SAMPLE / "data.csv")
    eng.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    log = tmp_path / "nightly.log"
    script = str(ROOT / "scripts" / "nightly_recalc.py")
    ok = subprocess.run([sys.executable, script, "--db", db, "--log", str(log)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    text = log.read_text()
    assert "full recalculation finished" in text and "status ok" in text
    assert eng.status()["stale"] == [] and eng.status()["records"] > 0
    lock = eng.store.recalc_lock()
    lock.acquire()
    try:
        busy = subprocess.run([sys.executable, script, "--db", db, "--log", str(log)],
                              capture_output=True, text=True)
    finally:
        lock.release()
    assert busy.returncode == 3
    assert len(busy.stderr.strip().splitlines()) == 1 and "another recalculation" in busy.stderr
    bad = subprocess.run([sys.executable, script, "--db", "nosuch://x", "--log", str(log)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
