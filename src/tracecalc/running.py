"""A recalculation from the engine's side: take the lock, plan, drive the plan, log the run.

``Engine.recalc`` calls ``recalc``; the plan comes from ``Engine._plan`` (``planning.plan``),
the driving from ``recalc.run_plan`` (or ``cluster.run`` on Dask). A run that fails logs
why; an atomic run that fails rolls back whole and logs the failure in a transaction of its
own.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import time
from collections.abc import Callable

from tracecalc.errors import TracecalcError
from tracecalc.model import RunReport
from tracecalc.recalc import RunOptions, run_plan
from tracecalc.storage import Store
from tracecalc.work import RunIO, run_transaction

Progress = Callable[[int, int, str], None]


def default_user() -> str:
    """Who makes changes: TRACECALC_USER, else the login name."""
    try:
        return os.environ.get("TRACECALC_USER") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def default_workers() -> int:
    """Evaluation threads: TRACECALC_WORKERS, else the number of cores (at most 4)."""
    env = os.environ.get("TRACECALC_WORKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


def default_chunk_entities() -> int | None:
    """Entities per chunk: TRACECALC_CHUNK_ENTITIES, else None (sized by periods)."""
    env = os.environ.get("TRACECALC_CHUNK_ENTITIES", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def recalc(eng, full: bool, progress: Progress | None, workers: int | None, wait: float,
           atomic: bool, dask, chunk_entities: int | None, verify: bool) -> RunReport:
    """``Engine.recalc``: what is stale (everything with ``full``), in dependency order.

    Stale formulas are recomputed for their stale entities; pending ones (downstream)
    only for the entities where an input actually changed in this run. Each entity's
    new values are digested and compared with the stored digest; only where they differ
    are the stored records read and compared cell by cell, and only the cells that
    differ are written (early cutoff), so a full run over unchanged data reads digests
    and writes nothing. Independent formulas are evaluated at the same time on
    ``workers`` threads (default: ``TRACECALC_WORKERS`` or the number of cores, at most
    4) while one thread writes finished ones.

    Memory stays bounded as entities grow: the entities are processed in chunks of
    ``chunk_entities`` (default ``TRACECALC_CHUNK_ENTITIES``, else about 400,000 cells
    per chunk); formulas with a cross-sectional function run over every entity at once.

    With ``dask`` (a scheduler address such as ``"tcp://host:8786"``, or a
    ``distributed.Client``), the entities are partitioned across the Dask cluster: each
    task evaluates the stale formulas for its partition and writes its records directly
    to PostgreSQL or MariaDB (with SQLite, the workers read the database file and this
    process writes). Cross-sectional formulas run here over every entity. Needs the
    ``dask`` extra.

    One recalculation runs at a time per database: a second one waits up to ``wait``
    seconds for the lock, then raises ``BusyError``. Each formula's changes, its fresh
    state, its dependants' stale marks and its line of the run log are committed
    together, so a run killed at any moment leaves consistent data and the remaining
    work stale (the next run finishes it and logs the killed run as interrupted). With
    ``atomic`` the whole run is one transaction instead: readers see all of it or
    nothing. Formulas saved or marked stale during a run stay stale for the next one.

    With ``verify`` the stored digests are not trusted: every recomputed entity's new
    values are compared with its stored records cell by cell, what differs is
    rewritten, and every digest that does not match the new values is rewritten too
    (records and digests changed outside tracecalc, or left by a damaged database,
    are repaired). Records and digests of formulas, entities or periods that no longer
    exist are deleted first. It reads every stored record of what it recomputes (of
    everything with ``full``), so it costs about as much as a first run's reads; see
    ``verify`` and docs/operations.md. The run log's kind is ``full-verify`` (or
    ``verify`` for an incremental run).

    The lock lives on a database connection of its own. If that connection dies
    mid-run (``pg_terminate_backend``, ``KILL``, an idle timeout), the run notices at
    its next commit, which it rolls back: every commit first checks, under the catalog
    lock, that the run still holds its lock, and a run that takes the lock waits for
    the commits still open (see ``tracecalc.storage.locks``). So two runs never write
    at the same time; the stopped run's remaining work stays stale for the next one.

    ``progress(done, total, name)`` is called once the run is planned (``0, total,
    ""``), then after each formula.
    """
    if dask is not None and atomic:
        raise TracecalcError("an atomic run cannot be spread over a Dask cluster")
    with eng.store.recalc_lock() as lock:
        lock.acquire(wait)
        options = RunOptions(
            workers=workers or default_workers(),
            chunk_entities=chunk_entities or default_chunk_entities(),
            # a second connection may read while the writer writes (not in one shared
            # transaction, nor in an in-memory SQLite database: one connection)
            concurrent_reads=not atomic and eng.store.shareable,
            verify=verify, dask=dask,
            lock_holder=lock.holder,  # every commit of the run checks the lock is ours
            atomic=atomic)
        if not atomic:
            return _run(eng, full, progress, options)
        try:
            with eng.store.transaction() as shared:
                return _run(eng, full, progress, options, shared)
        except TracecalcError as e:  # rolled back, run log included: log the failure
            with contextlib.suppress(Exception), eng.store.transaction() as conn:
                rid = eng.store.start_run(conn, run_kind(full, verify), eng.user)
                eng.store.finish_run(conn, rid, "failed", 0, 0, 0,
                                      f"atomic run rolled back: {e}")
            raise


def _run(eng, full: bool, progress: Progress | None, options: RunOptions,
         shared=None) -> RunReport:
    """One run under the lock; ``shared``: the connection of an atomic run's one
    transaction."""
    t0 = time.perf_counter()
    kind, verify, holder = run_kind(full, options.verify), options.verify, options.lock_holder
    with run_transaction(eng.store, shared) as conn:
        # The catalog lock and the proof the run holds its lock come first: a stopped run
        # still writing its failure's line is then wholly before this plan or after it.
        eng.store.lock_for_run(conn, holder)
        plan = eng._plan(conn, full, kind, holder, verify)
        strays = eng.store.delete_strays(conn) if verify else 0
    report = RunReport(run_id=plan.run_id, kind=kind, verify=verify,
                       strays_removed=strays)
    if progress is not None:  # planned: the count of formulas is known now
        progress(0, len(plan.order), "")
    try:
        session = RunIO(plan, eng.store, shared)
        if options.dask is not None:
            from tracecalc import cluster

            done = cluster.run(plan, session, options, progress)
        else:
            done = run_plan(plan.tasks(), plan.universe, session, options,
                            periods=plan.periods, progress=progress)
        report.formulas, report.io_seconds = done.stats, done.io_seconds
        report.status = "ok"
        _finish(eng.store, report, t0, None, shared, holder)
    except BaseException as e:
        report.status = "failed"
        # The run's own log line says why, even after a lost lock (it is no data; the
        # next run would mark it interrupted). Best effort: the error itself matters more.
        with contextlib.suppress(Exception):
            _finish(eng.store, report, t0, f"{type(e).__name__}: {e}", shared, None)
        if isinstance(e, (TracecalcError, KeyboardInterrupt)):
            raise
        raise TracecalcError(f"recalculation failed: {type(e).__name__}: "
                             f"{' '.join(str(e).split())}") from e
    return report

def _finish(store: Store, report: RunReport, t0: float, message: str | None, shared,
            holder: int | None) -> None:
    report.seconds = time.perf_counter() - t0
    with run_transaction(store, shared) as conn:
        if message is None:  # an "ok" is a commit of the run like any other
            store.lock_for_run(conn, holder)
        else:  # a failure's line (no data): after the catalog lock too, so a run that took
            store.lock_catalog(conn)  # over sees it whole, before or after its own plan
        store.finish_run(conn, report.run_id, report.status, report.formulas_computed,
                         report.records_written, report.records_unchanged, message)


def run_kind(full: bool, verify: bool) -> str:
    """The run log's kind of a run."""
    return ("full" if full else "incremental") if not verify else (
        "full-verify" if full else "verify")
