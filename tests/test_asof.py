"""asof (issue 13, item 3): a daily formula reads a quarterly item as it was known on each
day, checked against a reference written in pandas from the documented rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracecalc import DataError, FormulaError, FrequencyError

DAYS = [d for d in pd.bdate_range("2023-01-02", "2024-12-31")
        if d not in (pd.Timestamp("2023-07-04"), pd.Timestamp("2023-12-25"),
                     pd.Timestamp("2024-07-04"))]  # holidays: no data, still on the calendar
QUARTERS = pd.date_range("2022-12-31", "2024-09-30", freq="QE")
ENTITIES = ["A", "B", "C"]


def _prices() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = [("close", e, d.strftime("%Y-%m-%d"), float(np.round(50 + 10 * i + rng.normal(), 4)))
            for i, e in enumerate(ENTITIES) for d in DAYS]
    return pd.DataFrame(rows, columns=["item", "entity", "period", "value"])


def _eps() -> pd.DataFrame:
    """First reports 20 to 60 days after each quarter end; C skips 2023-06-30; a few
    restatements later (one to missing), and one first report loaded without known_at."""
    rng = np.random.default_rng(11)
    rows = []
    for e in ENTITIES:
        for q in QUARTERS:
            if (e, q) == ("C", pd.Timestamp("2023-06-30")):
                continue
            lag = int(rng.integers(20, 61))
            known = "" if (e, q) == ("B", pd.Timestamp("2022-12-31")) else \
                (q + pd.Timedelta(days=lag)).strftime("%Y-%m-%d")
            rows.append(("eps", e, q.strftime("%Y-%m-%d"), known,
                         float(np.round(rng.normal(1, 0.3), 4))))
    rows += [("eps", "A", "2023-09-30", "2024-01-15", 0.5),   # restated
             ("eps", "A", "2023-09-30", "2024-03-01", 0.55),  # restated again
             ("eps", "B", "2024-03-31", "2024-06-20", np.nan),  # withdrawn: missing since
             ("eps", "C", "2024-06-30", "2024-10-01", 2.0)]
    return pd.DataFrame(rows, columns=["item", "entity", "period", "known_at", "value"])


def reference(prices: pd.DataFrame, eps: pd.DataFrame, max_age: int = 0) -> pd.Series:
    """close / asof(eps): on each day, the latest quarter with a value known by then, at
    its latest version known by then (missing if that version is), from the rule."""
    ev = eps.assign(period=pd.to_datetime(eps["period"]),
                    known_at=pd.to_datetime(eps["known_at"].replace("", np.nan)))
    ev["known_at"] = ev["known_at"].fillna(ev["period"])
    out = {}
    for r in prices.itertuples():
        day = pd.Timestamp(r.period)
        known = ev[(ev["entity"] == r.entity) & (ev["known_at"] <= day)]
        if known.empty:
            continue
        latest = known[known["period"] == known["period"].max()]
        v = latest.sort_values("known_at")["value"].iloc[-1]
        if max_age and (day - latest["period"].iloc[0]).days > max_age:
            v = np.nan
        value = r.value / v
        if not np.isnan(value):
            out[(r.entity, day)] = value
    return pd.Series(out).sort_index()


def _load(engine):
    prices, eps = _prices(), _eps()
    engine.load_data(prices, frequencies={"close": "daily"})
    engine.load_data(eps, frequencies={"eps": "quarterly"})
    engine.set_formulas([{"name": "pe", "expression": "close / asof(eps)"},
                         {"name": "pe_fresh", "expression": "close / asof(eps, 120)"},
                         {"name": "ey", "expression": "1 / pe"}])
    engine.recalc()
    return prices, eps


def _got(engine, name: str) -> pd.Series:
    return engine.records(name).set_index(["entity", "period"])["value"].sort_index()


def _same(got: pd.Series, want: pd.Series) -> None:
    assert list(got.index) == list(want.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=0)


def test_asof_reads_each_quarter_as_known_on_each_day(engine):
    prices, eps = _load(engine)
    _same(_got(engine, "pe"), reference(prices, eps))
    _same(_got(engine, "pe_fresh"), reference(prices, eps, max_age=120))
    _same(_got(engine, "ey"), 1 / reference(prices, eps))
    info = engine.formula("pe")
    assert info.frequency == "daily" and info.references == ("close", "eps")
    pe = _got(engine, "pe")
    # A's 2023-09-30 quarter: first report, then two restatements, each from its own day on
    # (A's 2023-12-31 report comes later than both: until then Q3 is the latest known)
    a = pe.loc["A"]
    close = prices[prices["entity"] == "A"].set_index(pd.to_datetime(
        prices.loc[prices["entity"] == "A", "period"]))["value"]
    assert a[pd.Timestamp("2024-01-16")] == close[pd.Timestamp("2024-01-16")] / 0.5
    # B's withdrawn 2024-03-31 value: missing from 2024-06-20 on, never the older quarter,
    # until B's 2024-06-30 report is known
    b = pe.loc["B"]
    assert pd.Timestamp("2024-06-20") not in b.index
    # the holidays are on the calendar, without a price: no record there
    assert pd.Timestamp("2023-07-04") not in a.index
    assert engine.explain("pe", "A", "2024-01-16")["tree"]["children"][1]["value"] == 0.5


def test_a_restatement_recomputes_only_its_entity_and_equals_a_full_run(engine):
    prices, eps = _load(engine)
    late = pd.DataFrame({"item": "eps", "entity": ["B"], "period": ["2024-09-30"],
                         "known_at": ["2024-12-02"], "value": [9.0]})
    res = engine.load_data(late)
    assert set(res.marked_stale) == {"pe", "pe_fresh", "ey"}
    run = engine.recalc()
    assert {f.name: f.entities for f in run.formulas} == {"pe": 1, "pe_fresh": 1, "ey": 1}
    log = {r["formula_name"]: r for r in engine.run_log(run.run_id)}
    assert log["pe"]["entities"] == 1
    _same(_got(engine, "pe"), reference(prices, pd.concat([eps, late], ignore_index=True)))
    before = _got(engine, "pe").loc["B"]
    assert (before[before.index >= "2024-12-02"] == prices.set_index(["entity", "period"])
            .loc["B", "value"].loc["2024-12-02":].to_numpy() / 9.0).all()
    assert engine.recalc(full=True).records_written == 0


def test_mixing_frequencies_names_the_fix_and_asof_is_checked(engine):
    _load(engine)
    with pytest.raises(FrequencyError, match=r"mixes frequencies \(close is daily, eps is "
                       r"quarterly\); to read the coarser ones as known on each daily date, "
                       r"wrap them: asof\(eps\)"):
        engine.set_formula("raw", "close / eps")
    with pytest.raises(FrequencyError, match=r"asof\(close\) reads a coarser item into a finer "
                       "formula, but close is daily and the formula is daily"):
        engine.set_formula("odd", "close / asof(close)")
    engine.set_formula("eps_rank", "cs_rank(eps)")
    engine.set_formula("eps_rank2", "eps_rank * 2")
    with pytest.raises(FrequencyError, match=r"asof\(eps_rank2\): eps_rank2 works across "
                       "entities \\(or reads a formula that does\\)"):
        engine.set_formula("pe_rank", "close / asof(eps_rank2)")
    with pytest.raises(FormulaError, match=r"takes the name of a data item or formula, as in "
                       r"asof\(eps\); save an expression as a formula first"):
        engine.set_formula("pe_ttm", "close / asof(ttm(eps))")
    engine.set_formula("eps_daily", "asof(eps)")  # only converted inputs: daily
    assert engine.formula("eps_daily").frequency == "daily"


def test_an_edit_cannot_make_what_asof_reads_cross_sectional(engine):
    """Else the daily formula would read latest-only values from their periods on: numbers
    before they were published."""
    _load(engine)
    engine.set_formula("eps2", "eps * 2")
    engine.set_formula("eps4", "eps2 * 2")
    engine.set_formula("pe4", "close / asof(eps4)")
    engine.recalc()
    before = _got(engine, "pe4")
    with pytest.raises(FrequencyError, match=r"formula 'eps2': pe4 reads asof\(eps4\), which "
                       r"would then work across entities \(or read a formula that does\); .*"
                       r"change pe4 in the same batch"):
        engine.set_formula("eps2", "cs_rank(eps)")
    assert engine.formula("eps2").expression == "eps * 2"
    assert engine.status()["stale"] == []
    # in one batch with the reader changed too, it is fine
    engine.set_formulas([{"name": "eps2", "expression": "cs_rank(eps)"},
                         {"name": "pe4", "expression": "close * 2"}])
    engine.recalc()
    p = _prices()
    want = pd.Series(p["value"].to_numpy() * 2, index=pd.MultiIndex.from_arrays(
        [p["entity"], pd.to_datetime(p["period"])], names=["entity", "period"])).sort_index()
    got = _got(engine, "pe4")
    got.index = got.index.set_levels(pd.to_datetime(got.index.levels[1]), level=1)
    assert len(before) and not before.equals(got)
    _same(got, want)


def test_the_view_known_on_a_date(engine):
    prices, eps = _load(engine)
    day = pd.Timestamp("2024-02-20")
    got = engine.records("eps", as_of="2024-02-20").set_index(["entity", "period"])["value"]
    ev = eps.assign(known_at=pd.to_datetime(eps["known_at"].replace("", np.nan)).fillna(
        pd.to_datetime(eps["period"])), period=pd.to_datetime(eps["period"]))
    known = ev[ev["known_at"] <= day].sort_values("known_at").groupby(
        ["entity", "period"])["value"].agg(lambda s: s.iloc[-1]).dropna()
    _same(got.sort_index(), known.sort_index())
    assert got[("A", pd.Timestamp("2023-09-30"))] == 0.5  # the first restatement, not 0.55
    # a daily formula reads only what each day knew: its view is its records up to then
    pe = engine.records("pe", as_of=day)
    assert pe["period"].max() <= day
    _same(pe.set_index(["entity", "period"])["value"].sort_index(),
          _got(engine, "pe")[lambda s: s.index.get_level_values(1) <= day])
    # a cross-sectional formula over restated data keeps only its latest values: refused
    engine.set_formula("eps_rank", "cs_rank(eps)")
    with pytest.raises(DataError, match=r"records of 'eps_rank' as of 2024-02-20: eps_rank "
                       r"works across entities over eps, which has report dates"):
        engine.records("eps_rank", as_of=day)


# -- point-in-time records of formulas (issue 13, item 4) ----------------------------------

def pit_reference(eps: pd.DataFrame, days, fn=lambda s: s.rolling(4).sum()):
    """From the rule, by brute force: for each date, each entity's quarters at the versions
    known by then, and the formula (ttm) over them; a quarter's value is known from the
    first date it is not missing; ``asof`` takes the latest known quarter, at its value as
    of the date. Returns ({(entity, day): asof value}, {day: {(entity, quarter): value}})."""
    ev = eps.assign(period=pd.to_datetime(eps["period"]),
                    known_at=pd.to_datetime(eps["known_at"].replace("", np.nan)))
    ev["known_at"] = ev["known_at"].fillna(ev["period"])
    cal = pd.date_range(ev["period"].min(), ev["period"].max(), freq="QE")
    events = sorted(set(ev["known_at"]) | set(cal))
    asof, views, known = {}, {}, {e: set() for e in ENTITIES}
    view = None
    pos = 0
    for day in sorted(set(days) | set(events)):
        if pos < len(events) and events[pos] <= day:
            while pos < len(events) and events[pos] <= day:
                pos += 1
            seen = ev[ev["known_at"] <= day].sort_values("known_at")
            latest = seen.groupby(["entity", "period"])["value"].agg(lambda s: s.iloc[-1])
            panel = latest.unstack(0).reindex(index=cal, columns=ENTITIES)
            view = panel.apply(fn)
            view = view[view.index <= day]
            for e in ENTITIES:
                known[e] |= set(view.index[view[e].notna()])
        views[day] = view
        if day in days:
            for e in ENTITIES:
                if known[e]:
                    q = max(known[e])
                    asof[(e, day)] = view.loc[q, e]
    return asof, views


def test_asof_of_a_formula_uses_its_versions_known_each_day(engine):
    prices, eps = _prices(), _eps()
    engine.load_data(prices, frequencies={"close": "daily"})
    engine.load_data(eps, frequencies={"eps": "quarterly"})
    engine.set_formulas([{"name": "ttm_eps", "expression": "ttm(eps)"},
                         {"name": "pe", "expression": "close / asof(ttm_eps)"}])
    engine.recalc()
    days = [pd.Timestamp(d) for d in sorted(prices["period"].unique())]
    asof, views = pit_reference(eps, days)
    px = prices.assign(period=pd.to_datetime(prices["period"])).set_index(
        ["entity", "period"])["value"]
    want = pd.Series({k: px[k] / v for k, v in asof.items() if not np.isnan(px[k] / v)})
    _same(_got(engine, "pe"), want.sort_index())
    # the quarterly formula's view on a date: its quarters as computed from what was known
    for day in ("2023-05-15", "2024-01-20", "2024-03-05", "2024-12-31"):
        got = engine.records("ttm_eps", as_of=day).set_index(["entity", "period"])["value"]
        view = views[max(d for d in views if d <= pd.Timestamp(day))]
        ref = view.stack().dropna().swaplevel().sort_index()
        _same(got.sort_index(), ref)
    # explain shows the inputs as known then, and the value known then
    for day in ("2024-01-20", "2024-03-05"):  # before and after A's Q4 report
        ex = engine.explain("ttm_eps", "A", "2023-12-31", as_of=day)
        want = views[max(d for d in views if d <= pd.Timestamp(day))].loc[
            pd.Timestamp("2023-12-31"), "A"]
        assert ex["stored"] == (None if np.isnan(want) else pytest.approx(want, rel=1e-12))
        assert ex["tree"]["value"] == ex["stored"]
    latest = engine.explain("ttm_eps", "A", "2023-12-31")
    assert latest["tree"]["value"] == latest["stored"]
    assert engine.explain("pe", "A", "2024-01-16")["tree"]["children"][1]["kind"] == "function"
    # an incremental run after a restatement equals a full one, for the formula's versions
    late = pd.DataFrame({"item": "eps", "entity": ["C"], "period": ["2024-03-31"],
                         "known_at": ["2024-11-20"], "value": [0.1]})
    engine.load_data(late)
    run = engine.recalc()
    assert {f.name: f.entities for f in run.formulas} == {"ttm_eps": 1, "pe": 1}
    eps2 = pd.concat([eps, late], ignore_index=True)
    asof, _ = pit_reference(eps2, days)
    want = pd.Series({k: px[k] / v for k, v in asof.items() if not np.isnan(px[k] / v)})
    _same(_got(engine, "pe"), want.sort_index())
    before = engine.export(as_of="2024-12-31")
    assert engine.recalc(full=True).records_written == 0
    pd.testing.assert_frame_equal(engine.export(as_of="2024-12-31"), before)
