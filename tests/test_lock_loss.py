"""A recalculation whose lock connection dies mid-run (issue 11, defects 11 and 12).

A DBA terminates the idle connection that holds the recalculation lock while a run goes
on; a second run then gets the lock. The first run must stop at its next commit, the two
runs' commits must never interleave, and the next run finishes exactly what is left.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, event, text

from conftest import SAMPLE, make_database
from test_concurrency import snapshot
from tracecalc.cli import main
from tracecalc.engine import Engine
from tracecalc.errors import LockLostError
from tracecalc.storage.files import read_formulas
from tracecalc.storage.store import Store

SERVERS = ["postgresql", "mariadb"]


@pytest.fixture(params=SERVERS)
def server_url(request, tmp_path):
    url, cleanup = make_database(request.param, tmp_path)
    yield url
    cleanup()


@pytest.fixture(scope="module")
def want() -> dict:
    """The records of an uninterrupted full run (SQLite in memory)."""
    with Engine("sqlite:///:memory:") as ref:
        ref.load_data(SAMPLE / "data.csv")
        ref.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
        ref.recalc(full=True)
        return snapshot(ref)


def loaded(url: str) -> Engine:
    eng = Engine(url, user="first")
    eng.load_data(SAMPLE / "data.csv")
    eng.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    return eng


def kill_lock_holder(url: str) -> int:
    """What a DBA does: find the connection holding the run lock and terminate it."""
    admin = create_engine(Store(url, create=False).url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            if c.dialect.name == "postgresql":
                pid = c.execute(text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
                    "classid = hashtext('tracecalc.recalc')::oid AND "
                    "objid = hashtext(current_schema())::oid")).scalar()
                assert pid and c.execute(text("SELECT pg_terminate_backend(:p)"),
                                         {"p": pid}).scalar()
            else:
                pid = c.execute(text("SELECT IS_USED_LOCK(CONCAT('tcr.', DATABASE()))")
                                ).scalar()
                assert pid
                c.execute(text(f"KILL {int(pid)}"))
        return int(pid)
    finally:
        admin.dispose()


@pytest.mark.parametrize("moment", ["inside a write transaction", "between two commits"])
def test_a_run_that_lost_its_lock_never_overlaps_the_next(server_url, want, moment,
                                                          monkeypatch):
    first = loaded(server_url)
    second = Engine(server_url, user="second")
    events: list[tuple[str, float]] = []  # (what, when): the order of the runs' commits

    def committed(conn) -> None:
        if conn.info.get("tc_write"):  # reads commit too, harmlessly
            events.append(("first commits", time.monotonic()))

    event.listen(first.store.engine, "commit", committed)
    real_finish_run = first.store.finish_run

    def finish_run(conn, run_id, status, *args, **kw):
        events.append((f"first logs {status}", time.monotonic()))
        return real_finish_run(conn, run_id, status, *args, **kw)

    monkeypatch.setattr(first.store, "finish_run", finish_run)
    real_plan = second._plan

    def plan(*args, **kw):  # past the lock and its wait for open write transactions
        events.append(("second plans", time.monotonic()))
        return real_plan(*args, **kw)

    monkeypatch.setattr(second, "_plan", plan)
    result: dict = {}

    def run_second():
        result["second"] = second.recalc(wait=30)  # incremental: what the first left

    thread = threading.Thread(target=run_second)
    hooked = []

    def strike() -> None:
        hooked.append(kill_lock_holder(server_url))
        thread.start()
        if moment == "between two commits":
            thread.join(120)  # the second run does all that is left, then the first goes on
            assert not thread.is_alive()
        else:
            # The second run has the lock, or is about to, but must wait for this open
            # write transaction of the first run to end before it plans anything.
            time.sleep(1.5)
            assert "second plans" not in [e for e, _ in events]

    real_write_diff = first.store.write_diff

    def write_diff(*args, **kw):
        if moment == "inside a write transaction" and not hooked:
            strike()
        return real_write_diff(*args, **kw)

    def progress(done, total, name):
        if moment == "between two commits" and not hooked:
            strike()

    monkeypatch.setattr(first.store, "write_diff", write_diff)
    with pytest.raises(LockLostError, match="recalculation lock was lost"):
        first.recalc(full=True, workers=2, chunk_entities=10, progress=progress)
    thread.join(120)
    assert hooked and "second" in result and result["second"].status == "ok"

    # No commit of the first run once the second has started, but its own failed log line.
    started = next(t for e, t in events if e == "second plans")
    late = [(e, t) for e, t in events if e.startswith("first") and t > started]
    assert [e for e, _ in late] in ([], ["first logs failed", "first commits"]), late
    runs = {r["run_by"]: r for r in first.runs()}
    assert runs["second"]["status"] == "ok"
    assert runs["first"]["status"] == "failed"
    assert "recalculation lock was lost" in runs["first"]["message"]
    # The second run finished exactly what was left: the records of a whole run.
    assert first.status()["stale"] == []
    assert snapshot(first) == want
    assert second.recalc(full=True).records_written == 0
    first.close()
    second.close()


def test_the_cli_says_one_line_and_the_next_run_finishes(server_url, want, monkeypatch):
    eng = loaded(server_url)
    real = Store.write_diff
    calls = [0]

    def write_diff(self, *args, **kw):
        calls[0] += 1
        if calls[0] == 3:  # some formulas are committed by now
            kill_lock_holder(server_url)
            time.sleep(0.3)
        return real(self, *args, **kw)

    monkeypatch.setattr(Store, "write_diff", write_diff)
    res = CliRunner().invoke(main, ["--db", server_url, "recalc", "--full", "--quiet",
                                    "--chunk-entities", "10"])
    out = res.output.strip().splitlines()
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and len(out) == 1, res.output
    assert out[0].startswith("error: the recalculation lock was lost")
    monkeypatch.undo()
    left = eng.status()["stale"]
    assert left  # the stopped run left work for the next one
    rep = eng.recalc()
    assert sorted(f.name for f in rep.formulas) == sorted(left)
    assert snapshot(eng) == want
    assert [r["status"] for r in eng.runs()] == ["ok", "failed"]
    eng.close()


def test_releasing_a_lock_whose_connection_died_is_quiet(server_url, capsys, caplog):
    eng = Engine(server_url)
    lock = eng.store.recalc_lock()
    lock.acquire()
    assert lock.holder == kill_lock_holder(server_url)
    time.sleep(0.3)
    lock.release()  # no error, no logged traceback
    captured = capsys.readouterr()
    assert captured.out == captured.err == "" and "Traceback" not in caplog.text
    again = eng.store.recalc_lock()
    again.acquire()  # the server freed it with the connection
    again.release()
    eng.close()


# -- the SQLite lock file (issue 11, defect 9) ------------------------------------------------


def test_the_sqlite_lock_file_is_removed_when_the_run_ends(tmp_path):
    from click.testing import CliRunner as Runner

    db = tmp_path / "sq.db"
    lock_file = tmp_path / "sq.db.recalc.lock"
    with Engine(f"sqlite:///{db}") as eng:
        eng.load_data(SAMPLE / "data.csv")
        eng.set_formula("gp", "revenue - cogs")
        lock = eng.store.recalc_lock()
        lock.acquire()
        assert lock_file.exists()
        lock.release()
        assert not lock_file.exists()
        assert eng.recalc().records_written > 0
        assert not lock_file.exists()
        lock_file.write_text("")  # left behind by a killed process: reused, then removed
        assert eng.recalc(full=True).status == "ok"
        assert not lock_file.exists()
    res = Runner().invoke(main, ["--db", f"sqlite:///{db}", "recalc", "--full", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir() if "lock" in p.name) == []


def test_a_lock_taken_on_a_removed_lock_file_does_not_count(tmp_path, monkeypatch):
    """The unlink race: B opens the lock file, A releases (and removes it), C creates a new
    one and locks it, then B's flock succeeds on the orphaned file. B must see that and
    find the lock busy (C holds it), not run alongside C."""
    import fcntl

    from tracecalc.errors import BusyError

    with Engine(f"sqlite:///{tmp_path / 'race.db'}") as eng:
        a, b, c = (eng.store.recalc_lock() for _ in range(3))
        a.acquire()
        real = fcntl.flock
        armed = [True]

        def flock(fd, op):
            if armed[0] and op & fcntl.LOCK_EX:  # B, between its open and its flock
                armed[0] = False
                a.release()
                c.acquire()
            return real(fd, op)

        monkeypatch.setattr(fcntl, "flock", flock)
        with pytest.raises(BusyError):
            b.acquire()
        assert not armed[0] and c._fd is not None and b._fd is None
        c.release()
        b.acquire()  # now free: B locks the file that is at the path
        assert os.path.exists(b.path)
        assert os.fstat(b._fd).st_ino == os.stat(b.path).st_ino
        b.release()
        assert not os.path.exists(b.path)


def test_taking_the_lock_waits_for_an_open_write_transaction(server_url):
    """The other half of the guarantee: a run that gets the lock waits for the write
    transactions still open (here one holding the catalog lock, as a run's write does);
    on MariaDB past its lock wait timeout it gives up as busy and lets go of the lock."""
    from tracecalc.errors import BusyError

    eng = loaded(server_url)
    if eng.store.dialect != "postgresql":
        event.listen(eng.store.engine, "connect", lambda dbapi, _: dbapi.cursor().execute(
            "SET SESSION innodb_lock_wait_timeout = 1"))
        eng.store.engine.dispose()
    other = Engine(server_url)
    with other.store.transaction() as conn:
        other.store.lock_catalog(conn)
        if eng.store.dialect == "postgresql":
            done: list = []
            thread = threading.Thread(target=lambda: done.append(eng.recalc()))
            thread.start()
            time.sleep(1.5)
            assert not done and thread.is_alive()
        else:
            with pytest.raises(BusyError, match="catalog stayed locked"):
                eng.recalc()
    if eng.store.dialect == "postgresql":
        thread.join(60)
        assert done and done[0].status == "ok"
    else:
        assert eng.recalc().status == "ok"  # the lock was let go
    assert eng.status()["stale"] == []
    other.close()
    eng.close()


def test_an_atomic_run_that_lost_its_lock_rolls_back_whole(server_url, want, monkeypatch):
    eng = loaded(server_url)
    real = eng.store.write_diff
    hooked = []

    def write_diff(*args, **kw):
        if not hooked:
            hooked.append(kill_lock_holder(server_url))
        return real(*args, **kw)

    monkeypatch.setattr(eng.store, "write_diff", write_diff)
    with pytest.raises(LockLostError):
        eng.recalc(full=True, atomic=True)
    monkeypatch.undo()
    assert hooked and eng.status()["records"] == 0  # nothing of it was committed
    assert eng.runs()[0]["status"] == "failed" and "lock was lost" in eng.runs()[0]["message"]
    assert eng.recalc().status == "ok" and snapshot(eng) == want
    eng.close()
