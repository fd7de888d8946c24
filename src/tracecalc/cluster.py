"""Scale-out on a Dask cluster (``dask.distributed``): entity partitions as tasks.

The plan runs through the stage loop of a local run (``recalc.run_stages``): it is cut into
stages at its cross-sectional formulas, and for each stage this process (the client) first
runs the stage's cross-sectional formulas over every entity, exactly as a local run does;
then every worker gets one partition of the entities
and evaluates all of the stage's other formulas for it, reading its inputs from the
database. Against PostgreSQL and MariaDB the workers write their records and digests
directly (their own connections, the same per-formula transactions as a local run); against
SQLite they hand their results back and the client writes, since SQLite has one writer.
Once a stage's partitions are done, the client marks its formulas fresh and logs them.

A worker needs tracecalc installed and the database reachable at the URL the engine uses
(for SQLite: the same file path). See docs/scale-out.md.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from tracecalc.errors import TracecalcError
from tracecalc.model import FormulaRunStats
from tracecalc.recalc import Here, PlanRun, Progress, RunOptions, Tally, chunks, run_stages
from tracecalc.runner import Runner
from tracecalc.storage import Store
from tracecalc.work import RunIO, RunPlan

CONNECT_TIMEOUT = "10s"
WORKER_TIMEOUT = 60  # seconds to wait for a first worker
_STORES: dict[str, Store] = {}  # one store (connection pool) per database per worker process


def _store(url: str) -> Store:
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = Store(url, create=False)
    return store


def _partitions(client, plan_future, session: RunIO, names: list[str],
                parts: list[np.ndarray], tally: Tally, direct: bool) -> None:
    """One stage's entity-wise formulas, one task per partition; adds what the partitions
    report to ``tally``."""
    import distributed

    futures = [client.submit(run_partition, plan_future, names, part, tally.within(part),
                             direct, first=tally.first, pure=False)
               for part in parts]
    try:
        for fut in futures:
            stats, ch, results, first = fut.result()
            with session.group():  # SQLite: the client is the one writer
                for name, outcome in results:
                    session.write(FormulaRunStats(name), outcome, False)
            tally.add(stats, ch, first=first)
    except BaseException as e:
        # No partition may still be writing once this run fails and lets go of its lock:
        # wait for the running ones (each commits or rolls back its own transactions).
        distributed.wait(futures)
        if isinstance(e, (TracecalcError, KeyboardInterrupt)):
            raise
        raise TracecalcError(f"a Dask worker failed: {type(e).__name__}: {e}") from e


def run_partition(plan: RunPlan, names: list[str], ids: np.ndarray,
                  changed: dict[str, np.ndarray], direct: bool, threads: int = 1,
                  first: dict | None = None):
    """Runs on a worker: the formulas ``names`` (one stage, no cross-sectional formula)
    over the entities ``ids``. Returns (stats, changed entities per formula, results the
    client must write: empty when ``direct``, the first period each changed)."""
    session = RunIO(plan, _store(plan.url))
    results: list = []

    def keep(stats, outcome, final) -> None:
        results.append((stats.name, outcome))

    runner = Runner([t.within(ids) for t in plan.tasks(names)], ids, session.read,
                    session.write if direct else keep, threads, digests=session.digests,
                    changed=changed, final=False, concurrent_reads=direct,
                    group=session.group if direct else nullcontext, versions=session.versions,
                    stored_versions=session.stored_versions, calendar=session.calendar,
                    downsample=session.downsample, inline=session.inline, first=first)
    stats = runner.run()
    return stats, runner.changed, results, runner.first


def run(plan: RunPlan, session: RunIO, options: RunOptions,
        progress: Progress | None = None) -> PlanRun:
    """The plan on the cluster at ``options.dask`` (an address or a ``distributed.Client``)."""
    try:
        from distributed import Client
    except ImportError:
        raise TracecalcError("scale-out needs Dask: pip install 'tracecalc[dask]'") from None
    store = session.store
    if not store.shareable:
        raise TracecalcError("an in-memory SQLite database cannot be shared with a Dask "
                             "cluster; use a database file, PostgreSQL or MariaDB")
    if store.dialect == "duckdb":  # the workers are processes: DuckDB admits one per file
        raise TracecalcError("a DuckDB database opens in one process at a time, so Dask "
                             "workers cannot read it; use SQLite, PostgreSQL or MariaDB "
                             "with --dask")
    if not plan.order:
        return PlanRun([], 0.0)
    address = options.dask
    own_client = not isinstance(address, Client)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT) if own_client else address
    except Exception as e:
        raise TracecalcError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        return _run(plan, session, client, options.chunk_entities, progress)
    finally:
        if own_client:
            client.close()


def _run(plan: RunPlan, session: RunIO, client, chunk_entities: int | None,
         progress: Progress | None) -> PlanRun:
    direct = session.store.dialect != "sqlite"
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except Exception:
        raise TracecalcError(f"the Dask cluster has no workers (waited {WORKER_TIMEOUT} s)"
                             ) from None
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    per_worker = -(-len(plan.universe) // n_workers) or 1  # one partition per worker
    parts = chunks(plan.universe, min(chunk_entities or per_worker, per_worker))
    tally = Tally(len(plan.order), progress)
    [plan_future] = client.scatter([plan], broadcast=True)

    def by_partition(local) -> None:
        names = [t.name for t in local]
        _partitions(client, plan_future, session, names, parts, tally, direct)
        for name in names:
            session.finish(tally.stats[name])
            tally.finished(name)

    # cross-sectional formulas here, over every entity at once (a gather of their inputs)
    run_stages(plan.tasks(), plan.universe, tally, Here(session, 1, True), by_partition)
    return tally.result(plan.order)
