"""The point-in-time benchmark (``--pit``): daily prices, quarterly fundamentals published
20 to 60 days after each quarter with 5% of them restated later, and daily formulas that
read them through ``asof``; the cold full recalculation against the write floor."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import text

from tracecalc.engine import Engine

from .databases import Database
from .floor import floor
from .report import step
from .runs import empty_records

FUNDAMENTALS = ("eps", "bvps", "sales_ps")
FORMULAS = [
    ("pe", "close / asof(eps)"),
    ("earnings_yield", "asof(eps) / close"),
    ("pb", "close / asof(bvps)"),
    ("ps", "close / asof(sales_ps)"),
    ("pe_fresh", "close / asof(eps, 200)"),
    ("momentum_20", "close / lag(close, 20) - 1"),
    ("volatility_20", "ts_std(close / lag(close, 1) - 1, 20)"),
    ("value_score", "earnings_yield + 1 / pb"),
    ("eps_ttm", "ttm(eps)"),
    ("eps_growth", "growth(eps, 4)"),
    ("pe_ttm", "close / asof(eps_ttm)"),
    ("bvps_growth", "growth(bvps, 4)"),
]


def make_pit(n_entities: int, years: int, restated: float, seed: int):
    """(prices, fundamentals): business-day closes (a few holidays without data) and
    quarterly items with report dates and restatements."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2015-01-01", periods=261 * years)
    holidays = set(days[rng.choice(len(days), 3 * years, replace=False)])
    days = days[~days.isin(holidays)]
    ents = np.array([f"E{i:05d}" for i in range(n_entities)])
    steps = rng.normal(0, 0.02, (len(days), n_entities))
    close = 50 * np.exp(np.cumsum(steps, axis=0))
    prices = pd.DataFrame({"item": "close", "entity": np.tile(ents, len(days)),
                           "period": np.repeat(days.strftime("%Y-%m-%d"), n_entities),
                           "value": close.ravel().round(4)})
    quarters = pd.date_range(days[0] - pd.Timedelta(days=120), days[-1], freq="QE")
    q = np.repeat(quarters.to_numpy(), n_entities)
    e = np.tile(ents, len(quarters))
    parts = []
    for item in FUNDAMENTALS:
        lag = rng.integers(20, 61, len(q))
        values = rng.normal(2, 0.5, len(q)).round(4)
        first = pd.DataFrame({"item": item, "entity": e, "period": q,
                              "known_at": q + lag.astype("timedelta64[D]"), "value": values})
        again = first[rng.random(len(first)) < restated].copy()
        again["known_at"] += rng.integers(60, 200, len(again)).astype("timedelta64[D]")
        again["value"] = (again["value"] * rng.uniform(0.9, 1.1, len(again))).round(4)
        parts += [first, again]
    fund = pd.concat(parts, ignore_index=True)
    for c in ("period", "known_at"):
        fund[c] = pd.to_datetime(fund[c]).dt.strftime("%Y-%m-%d")
    return prices, fund, len(days)


def pit_bench(args, results: dict) -> None:
    prices, fund, n_days = make_pit(args.entities, args.years, 0.05, args.seed)
    db = Database(args.db)
    print(f"tracecalc --pit on {db.kind}: {args.entities:,} entities x {n_days:,} business "
          f"days, {len(fund):,} quarterly points with report dates "
          f"({(fund.duplicated(['item', 'entity', 'period'])).sum():,} restatements), "
          f"{len(FORMULAS)} formulas", flush=True)
    steps: list[dict] = []
    results.update({"db": db.kind, "pit": {"entities": args.entities, "days": n_days,
                                           "fundamentals": len(fund)}, "steps": steps})
    opts = {"workers": args.workers}
    try:
        eng = Engine(db.url, user="bench")
        step(steps, "load daily prices", lambda: eng.load_data(
            prices, frequencies={"close": "daily"}), len(prices))
        step(steps, "load fundamentals (known_at, restatements)", lambda: eng.load_data(
            fund, frequencies={i: "quarterly" for i in FUNDAMENTALS}), len(fund))
        eng.set_formulas([{"name": n, "expression": x} for n, x in FORMULAS])
        colds, floors, written = [], [], 0
        for k in range(args.repeat):
            if k:
                empty_records(eng)
            db.settle()
            rep = step(steps, "tracecalc: cold full recalc", lambda: eng.recalc(
                full=True, **opts), lambda r: r.records_written)
            colds.append(steps[-1]["seconds"])
            written = rep.records_written
            db.settle()
            fl = floor(db.url, db.kind, args.entities, n_days, written, read_back=False)
            floors.append(fl["write_s"])
            print(f"  {'floor: bulk write (raw driver)':46} {fl['write_s']:9.2f} s", flush=True)
        same = step(steps, "tracecalc: no-change full recalc",
                    lambda: eng.recalc(full=True, **opts), lambda r: r.records_written)
        late = fund[fund["entity"] == fund["entity"].iloc[0]].tail(1).copy()
        late["known_at"] = (pd.to_datetime(late["period"]) + pd.Timedelta(days=70)).dt.strftime(
            "%Y-%m-%d")
        late["value"] = late["value"] * 1.1
        eng.load_data(late)
        inc = step(steps, "tracecalc: one restatement, recalc",
                   lambda: eng.recalc(**opts), lambda r: r.records_written)
        with eng.store.engine.connect() as c:
            versions = dict(c.execute(text(
                "SELECT i.name, COUNT(*) FROM tc_data_versions v JOIN tc_items i "
                "ON i.id = v.item_id GROUP BY i.name")).all())
            record_versions = dict(c.execute(text(
                "SELECT f.name, COUNT(*) FROM tc_record_versions v JOIN tc_formulas f "
                "ON f.id = v.formula_id GROUP BY f.name")).all())
        eng.close()
    finally:
        db.drop()
    cold, fl = min(colds), min(floors)
    results["targets"] = {"cold_vs_floor": cold / fl, "cold_s": colds, "floor_s": floors,
                          "records": written, "versions": versions,
                          "record_versions": record_versions}
    print(f"\n{'step':46} {'seconds':>8}")
    print(f"{'cold full recalc (best of ' + str(len(colds)) + ')':46} {cold:8.2f}   "
          f"{written:,} records")
    print(f"{'floor: the same records, bulk-written':46} {fl:8.2f}")
    print(f"{'cold / floor':46} {cold / fl:8.2f}")
    print(f"{'no-change full recalc':46} {steps[-2]['seconds']:8.2f}   "
          f"{same.records_written:,} written")
    print(f"{'one restatement, incremental recalc':46} {steps[-1]['seconds']:8.2f}   "
          + ", ".join(f"{f.name} {f.entities}" for f in inc.formulas if f.entities)
          + " entities recomputed")
    print("stored versions per item: " + ", ".join(f"{k} {v:,}" for k, v in
                                                   sorted(versions.items())))
    print("stored versions per formula: " + ", ".join(
        f"{k} {v:,}" for k, v in sorted(record_versions.items())) + " (the daily asof "
        "formulas have none: each day's record is final)")
