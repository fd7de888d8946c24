"""Scale-out on a Dask cluster (``dask.distributed``): entity partitions as tasks.

The plan is cut into stages at its cross-sectional formulas (``recalc.stages``). For each
stage, this process (the client) first runs the stage's cross-sectional formulas over every
entity, exactly as a local run does; then every worker gets one partition of the entities
and evaluates all of the stage's other formulas for it, reading its inputs from the
database. Against PostgreSQL and MariaDB the workers write their records and digests
directly (their own connections, the same per-formula transactions as a local run); against
SQLite they hand their results back and the client writes, since SQLite has one writer.
Once a stage's partitions are done, the client marks its formulas fresh and logs them.

A worker needs tracecalc installed and the database reachable at the URL the engine uses
(for SQLite: the same file path). See docs/scale-out.md.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np

from tracecalc.errors import TracecalcError
from tracecalc.model import FormulaRunStats
from tracecalc.recalc import NONE, Runner, chunks, forget_unused, merge_stats, stages
from tracecalc.storage import Store
from tracecalc.work import Plan, Session

CONNECT_TIMEOUT = "10s"
WORKER_TIMEOUT = 60  # seconds to wait for a first worker
_STORES: dict[str, Store] = {}  # one store (connection pool) per database per worker process


def _store(url: str) -> Store:
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = Store(url, create=False)
    return store


def _partitions(client, plan_future, session: Session, names: list[str],
                parts: list[np.ndarray], changed: dict[str, np.ndarray],
                merged: dict[str, FormulaRunStats], direct: bool) -> None:
    """One stage's entity-wise formulas, one task per partition; updates ``changed`` and
    ``merged`` with what the partitions report."""
    import distributed

    futures = [client.submit(run_partition, plan_future, names, part,
                             {n: v[np.isin(v, part)] for n, v in changed.items()},
                             direct, pure=False)
               for part in parts]
    found: dict[str, list[np.ndarray]] = {n: [] for n in names}
    try:
        for fut in futures:
            stats, ch, results = fut.result()
            with session.group():  # SQLite: the client is the one writer
                for name, outcome in results:
                    session.write(FormulaRunStats(name), outcome, False)
            for st in stats:
                merged[st.name] = merge_stats(merged.get(st.name), st)
            for name, ids in ch.items():
                found[name].append(ids)
    except BaseException as e:
        # No partition may still be writing once this run fails and lets go of its lock:
        # wait for the running ones (each commits or rolls back its own transactions).
        distributed.wait(futures)
        if isinstance(e, (TracecalcError, KeyboardInterrupt)):
            raise
        raise TracecalcError(f"a Dask worker failed: {type(e).__name__}: {e}") from e
    for name in names:
        changed[name] = np.unique(np.concatenate(found[name])) if found[name] else NONE


def run_partition(plan: Plan, names: list[str], ids: np.ndarray,
                  changed: dict[str, np.ndarray], direct: bool, threads: int = 1):
    """Runs on a worker: the formulas ``names`` (one stage, no cross-sectional formula)
    over the entities ``ids``. Returns (stats, changed entities per formula, results the
    client must write: empty when ``direct``)."""
    session = Session(plan, _store(plan.url))
    results: list = []

    def keep(stats, outcome, final) -> None:
        results.append((stats.name, outcome))

    runner = Runner([t.within(ids) for t in plan.tasks(names)], ids, session.read,
                    session.write if direct else keep, threads, digests=session.digests,
                    changed=changed, final=False, concurrent_reads=direct,
                    group=session.group if direct else nullcontext)
    stats = runner.run()
    return stats, runner.changed, results


def run(plan: Plan, session: Session, address, chunk_entities: int | None,
        progress: Callable[[int, int, str], None] | None = None) -> list[FormulaRunStats]:
    """The plan on the cluster at ``address`` (or through a ``distributed.Client``)."""
    try:
        from distributed import Client
    except ImportError:
        raise TracecalcError("scale-out needs Dask: pip install 'tracecalc[dask]'") from None
    store = session.store
    if not store.shareable:
        raise TracecalcError("an in-memory SQLite database cannot be shared with a Dask "
                             "cluster; use a database file, PostgreSQL or MariaDB")
    if not plan.order:
        return []
    own_client = not isinstance(address, Client)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT) if own_client else address
    except Exception as e:
        raise TracecalcError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        return _run(plan, session, client, chunk_entities, progress)
    finally:
        if own_client:
            client.close()


def _run(plan: Plan, session: Session, client, chunk_entities, progress):
    direct = session.store.dialect != "sqlite"
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except Exception:
        raise TracecalcError(f"the Dask cluster has no workers (waited {WORKER_TIMEOUT} s)"
                             ) from None
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    per_worker = -(-len(plan.universe) // n_workers) or 1  # one partition per worker
    parts = chunks(plan.universe, min(chunk_entities or per_worker, per_worker))
    merged: dict[str, FormulaRunStats] = {}
    changed: dict[str, np.ndarray] = {}
    done = [0]

    def finished(name: str) -> None:
        done[0] += 1
        if progress:
            progress(done[0], len(plan.order), name)

    [plan_future] = client.scatter([plan], broadcast=True)
    cut = stages(plan.tasks())
    for k, stage in enumerate(cut):
        across = [t for t in stage if t.cross_sectional]
        if across:  # every entity at once, here (a gather of their inputs)
            runner = Runner(across, plan.universe, session.read, session.write, 1,
                            digests=session.digests, changed=changed, finished=finished,
                            concurrent_reads=True, group=session.group)
            for st in runner.run():
                merged[st.name] = st
            changed.update(runner.changed)
        names = [t.name for t in stage if not t.cross_sectional]
        if names:
            _partitions(client, plan_future, session, names, parts, changed, merged, direct)
            for name in names:
                session.finish(merged[name])
                finished(name)
        forget_unused(changed, cut[k + 1:])
    return [merged[n] for n in plan.order]
