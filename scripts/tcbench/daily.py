"""The nightly batch at daily scale (``--daily``): a daily model (prices, volumes, quarterly
EPS with report dates; a realistic mix of formulas with ema, ts_corr, cs_rank and asof) over
a long history, and the steps of a night: load, cold full recalculation, one new day for
every entity, a late value for one entity 30 days back, a full recalculation where nothing
changed. Each next to the database's floor for the same rows; for each history length, so
the append step's growth with history shows (it should stay flat)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tracecalc.engine import Engine
from tracecalc.facts import facts_of

from .databases import Database
from .floor import floor
from .report import step

# (template, windows to draw n from); x, y: a daily item or an earlier daily formula
TEMPLATES = [
    ("ts_mean({x}, {n})", (5, 20, 60)), ("ema({x}, {n})", (12, 26)),
    ("diff({x}, 1)", (1,)), ("growth({x}, 5)", (5,)), ("ts_std({x}, {n})", (20,)),
    ("ts_max({x}, {n})", (20, 60)), ("ts_min({x}, {n})", (20, 60)), ("cs_rank({x})", (1,)),
    ("ts_corr({x}, {y}, {n})", (20,)), ("{x} / asof(eps)", (1,)), ("{x} - {y}", (1,)),
    ("{x} / {y}", (1,)), ("wilder({x}, {n})", (14,)),
]


def make_daily(n_entities: int, n_days: int, n_formulas: int, seed: int):
    """(prices and volumes, quarterly EPS with report dates, formulas, the next day)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2010-01-04", periods=n_days + 1)
    ents = np.array([f"E{i:05d}" for i in range(n_entities)])
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (len(days), n_entities)), axis=0))
    volume = rng.lognormal(10, 1, (len(days), n_entities)).round(0)
    frames = [pd.DataFrame({"item": item, "entity": np.tile(ents, len(days)),
                            "period": np.repeat(days.strftime("%Y-%m-%d"), n_entities),
                            "value": v.ravel().round(4)})
              for item, v in (("close", close), ("volume", volume))]
    daily = pd.concat(frames, ignore_index=True)
    quarters = pd.date_range(days[0] - pd.Timedelta(days=120), days[-1], freq="QE")
    q = np.repeat(quarters.to_numpy(), n_entities)
    known = q + rng.integers(20, 61, len(q)).astype("timedelta64[D]")
    eps = pd.DataFrame({"item": "eps", "entity": np.tile(ents, len(quarters)),
                        "period": pd.to_datetime(q).strftime("%Y-%m-%d"),
                        "known_at": pd.to_datetime(known).strftime("%Y-%m-%d"),
                        "value": rng.normal(2, 0.5, len(q)).round(4)})
    eps = eps[eps["known_at"] <= str(days[-2].date())]
    rng = np.random.default_rng(seed + 1)  # the same formulas at every history length
    names: list[str] = []
    formulas = []
    for i in range(n_formulas):
        pool = ["close", "volume"] + names[-15:]
        x, y = (str(v) for v in rng.choice(pool, 2, replace=False))
        template, windows = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        name = f"d{i}"
        formulas.append({"name": name, "expression": template.format(
            x=x, y=y, n=int(rng.choice(windows)))})
        names.append(name)
    last = str(days[-1].date())
    return daily[daily["period"] < last], daily[daily["period"] == last], eps, formulas


def lookback_rows(formulas: list[dict], n_entities: int) -> int:
    """Rows a run that appends one day must read at the least: each formula's inputs over
    its window before the new day (an ema or wilder at the root: its own last value)."""
    rows = 0
    for f in formulas:
        facts = facts_of(f["expression"], f["name"], "daily")
        resume = facts.resume
        window = resume[3] if resume else facts.window
        rows += n_entities * ((window or 0) + 1) * max(1, len(facts.compiled.inputs))
        rows += n_entities if resume else 0
    return rows


def daily_bench(args, results: dict) -> None:
    lengths = [int(x) for x in args.days.split(",")]
    db_kind = Database(args.db)
    db_kind.drop()
    print(f"tracecalc --daily on {db_kind.kind}: {args.formulas} formulas x "
          f"{args.entities:,} entities x {', '.join(f'{n:,}' for n in lengths)} business days",
          flush=True)
    results["daily"] = {}
    for n_days in lengths:
        results["daily"][n_days] = _one(args, n_days)
    if len(lengths) > 1:
        a, b = (results["daily"][n]["append_s"] for n in (lengths[0], lengths[-1]))
        print(f"\nappend one day: {lengths[-1]:,} days / {lengths[0]:,} days = {b / a:.2f} "
              "(target: at most 1.3)")
        results["daily"]["append_growth"] = b / a


def _one(args, n_days: int) -> dict:
    history, new_day, eps, formulas = make_daily(args.entities, n_days, args.formulas,
                                                 args.seed)
    db = Database(args.db)
    steps: list[dict] = []
    opts = {"workers": args.workers}
    print(f"\n{n_days:,} days: {len(history):,} data points, {len(eps):,} EPS reports",
          flush=True)
    try:
        eng = Engine(db.url, user="bench")
        step(steps, "load prices and volumes", lambda: eng.load_data(
            history, frequencies={"close": "daily", "volume": "daily"}), len(history))
        eng.load_data(eps, frequencies={"eps": "quarterly"})
        eng.set_formulas(formulas)
        db.settle()
        cold = step(steps, "tracecalc: cold full recalc", lambda: eng.recalc(
            full=True, **opts), lambda r: r.records_written)
        db.settle()
        step(steps, "load one new day (every entity)", lambda: eng.load_data(new_day),
             len(new_day))
        db.settle()
        app = step(steps, "tracecalc: recalc after one new day",
                   lambda: eng.recalc(**opts), lambda r: r.records_written)
        late_day = sorted(history["period"].unique())[-30]
        late = history[(history["entity"] == history["entity"].iloc[0])
                       & (history["period"] == late_day) & (history["item"] == "close")].copy()
        late["value"] = late["value"] * 1.01
        eng.load_data(late)
        db.settle()
        lv = step(steps, "tracecalc: recalc after a late value 30 days back",
                  lambda: eng.recalc(**opts), lambda r: r.records_written)
        db.settle()
        same = step(steps, "tracecalc: no-change full recalc",
                    lambda: eng.recalc(full=True, **opts), lambda r: r.records_written)
        log = eng.run_log(app.run_id)
        eng.close()
        db.settle()
        cold_floor = floor(db.url, db.kind, args.entities, n_days, cold.records_written,
                           read_back=False)["write_s"]
        reads = lookback_rows(formulas, args.entities)
        day_floor = floor(db.url, db.kind, args.entities, 1, app.records_written,
                          read_back=False)["write_s"]
        read_floor = floor(db.url, db.kind, args.entities, 64, reads)["read_s"]
    finally:
        db.drop()
    at = {s["step"]: s["seconds"] for s in steps}
    append_s = at["tracecalc: recalc after one new day"]
    late_s = at["tracecalc: recalc after a late value 30 days back"]
    floor_day = day_floor + read_floor
    first = {str(r["first_period"])[:10] for r in log if r["entities"]}
    read = sum(r["records_read"] for r in log)
    print(f"  {'floor: cold run records, bulk write':52} {cold_floor:8.2f} s   "
          f"cold / floor {at['tracecalc: cold full recalc'] / cold_floor:.2f}")
    print(f"  {'floor: the day written + its look-back read':52} {floor_day:8.2f} s   "
          f"({app.records_written:,} rows written, {reads:,} read)")
    print(f"  append / floor {append_s / floor_day:.2f} (target: at most 3); the run started "
          f"every formula at {', '.join(sorted(first))} and read {read:,} stored records")
    print(f"  late value: {late_s:.2f} s for {lv.records_written:,} records "
          "(target: under 0.5 s)")
    print(f"  no-change full: {same.records_written:,} written")
    return {"steps": steps, "append_s": append_s, "late_s": late_s, "floor_day_s": floor_day,
            "cold_floor_s": cold_floor, "append_vs_floor": append_s / floor_day}
