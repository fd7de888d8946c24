"""Recalculation runs and the per-formula run log."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from tracecalc.storage.columns import _date, _utc, now
from tracecalc.storage.schema import run_formulas, runs


class RunsMixin:
    """Runs and the run log (``Store``)."""

    def mark_interrupted_runs(self, conn: Connection) -> int:
        """Runs still 'running' while we hold the recalculation lock died on the way."""
        res = conn.execute(update(runs).where(runs.c.status == "running").values(
            status="interrupted", message="the process stopped before the run finished"))
        return res.rowcount

    def start_run(self, conn: Connection, kind: str, user: str) -> int:
        res = conn.execute(insert(runs).values(kind=kind, started_at=now(), status="running",
                                               formulas_computed=0, records_written=0,
                                               run_by=user))
        return int(res.inserted_primary_key[0])

    def finish_run(self, conn: Connection, run_id: int, status: str, computed: int,
                   written: int, unchanged: int, message: str | None = None) -> None:
        conn.execute(update(runs).where(runs.c.id == run_id).values(
            finished_at=now(), status=status, formulas_computed=computed,
            records_written=written, records_unchanged=unchanged, message=message))

    def log_formula_run(self, conn: Connection, run_id: int, version: int, stats) -> None:
        conn.execute(insert(run_formulas).values(
            run_id=run_id, formula_name=stats.name, version=version, entities=stats.entities,
            records_written=stats.records_written, records_unchanged=stats.records_unchanged,
            seconds=stats.seconds, records_read=stats.records_read,
            first_period=None if stats.first_period is None else _date(stats.first_period)))

    def run_formulas(self, conn: Connection, run_id: int) -> list[dict]:
        q = select(run_formulas).where(run_formulas.c.run_id == run_id)
        return [dict(r._mapping) for r in conn.execute(q)]

    def runs(self, conn: Connection, limit: int = 20) -> list[dict]:
        q = select(runs).order_by(runs.c.id.desc()).limit(limit)
        return [_utc(r, "started_at", "finished_at") for r in conn.execute(q)]
