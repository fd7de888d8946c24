"""Downsampling (issue 13, item 3): quarterly_last(close) and friends aggregate a finer
series per period of a coarser calendar, checked against pandas written from the documented
rule (complete periods only; over the present values; count 0 where none is present)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracecalc import FormulaError, FrequencyError

# 2023-12-31 is a Sunday: the daily data ending Friday 2023-12-29 completes Q4 2023, and the
# data ends on 2024-05-17, inside Q2 2024, which is not complete.
DAYS = [d for d in pd.bdate_range("2023-01-03", "2024-05-17")
        if d not in (pd.Timestamp("2023-07-04"), pd.Timestamp("2023-12-25"))]
ENTITIES = ["A", "B", "C"]
HOWS = ["last", "sum", "mean", "min", "max", "count"]


def _prices() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for i, e in enumerate(ENTITIES):
        for d in DAYS:
            if e == "B" and d.month == 5 and d.year == 2023:  # a month without data
                continue
            if e == "C" and d >= pd.Timestamp("2023-09-18") and d.year == 2023 and d.month == 9:
                continue  # the last days of a quarter missing: last is an earlier day's
            rows.append(("close", e, d.strftime("%Y-%m-%d"),
                         float(np.round(50 + 10 * i + rng.normal(0, 3), 4))))
    return pd.DataFrame(rows, columns=["item", "entity", "period", "value"])


def reference(prices: pd.DataFrame, freq: str, how: str) -> pd.Series:
    """Per entity and complete period: how over the present values of its days."""
    rule = {"monthly": "ME", "quarterly": "QE", "annual": "YE", "weekly": "W-FRI"}[freq]
    last_day = pd.Timestamp(DAYS[-1])
    out = {}
    for e, g in prices.groupby("entity"):
        s = g.set_index(pd.to_datetime(g["period"]))["value"].sort_index()
        for end, v in s.groupby(pd.Grouper(freq=rule)):
            # complete: the calendar reaches the period's last weekday
            if pd.offsets.BDay().rollback(end) > last_day:
                continue
            v = v.dropna()
            got = {"last": v.iloc[-1] if len(v) else np.nan, "sum": v.sum() if len(v)
                   else np.nan, "mean": v.mean() if len(v) else np.nan,
                   "min": v.min() if len(v) else np.nan, "max": v.max() if len(v) else np.nan,
                   "count": float(len(v))}[how]
            out[(e, str(end.date()))] = got
    # every period of the calendar has a value for count (0 where no day had a value)
    return pd.Series(out).dropna()


def _got(engine, name: str) -> pd.Series:
    r = engine.records(name)
    return pd.Series(r["value"].to_numpy(),
                     index=pd.MultiIndex.from_arrays(
                         [r["entity"], pd.to_datetime(r["period"]).dt.strftime("%Y-%m-%d")])
                     ).sort_index()


def _same(got: pd.Series, want: pd.Series) -> None:
    want = want.sort_index()
    assert list(got.index) == list(want.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=0)


def test_each_aggregate_against_pandas(engine):
    prices = _prices()
    engine.load_data(prices)
    names = {}
    for freq in ("monthly", "quarterly"):
        for how in HOWS:
            names[f"{freq[0]}_{how}"] = (freq, how)
            engine.set_formula(f"{freq[0]}_{how}", f"{freq}_{how}(close)")
    engine.set_formula("w_last", "weekly_last(close)")
    engine.recalc()
    for name, (freq, how) in names.items():
        _same(_got(engine, name), reference(prices, freq, how))
    _same(_got(engine, "w_last"), reference(prices, "weekly", "last"))
    assert engine.formula("q_last").frequency == "quarterly"
    quarters = sorted(set(_got(engine, "q_last").index.get_level_values(1)))
    assert [str(q) for q in quarters] == ["2023-03-31", "2023-06-30", "2023-09-30",
                                          "2023-12-31", "2024-03-31"]
    # B had no day in May 2023: count 0, the others have no value
    assert _got(engine, "m_count")[("B", "2023-05-31")] == 0.0
    assert ("B", "2023-05-31") not in _got(engine, "m_last").index


def test_a_coarse_formula_reads_both_and_an_incremental_run_equals_a_full_one(engine):
    prices = _prices()
    early = prices[prices["period"] < "2024-01-01"]
    engine.load_data(early)
    eps = pd.DataFrame([("eps", e, q, 1.0 + i) for i, e in enumerate(ENTITIES)
                        for q in ("2023-03-31", "2023-06-30", "2023-09-30", "2023-12-31")],
                       columns=["item", "entity", "period", "value"])
    engine.load_data(eps)
    engine.set_formula("ret", "growth(close)")  # daily, computed in the same run
    engine.set_formula("q_ret", "quarterly_sum(ret)")
    engine.set_formula("pe_q", "quarterly_last(close) / eps")
    engine.set_formula("pe_growth", "growth(pe_q)")
    engine.recalc()
    want = reference(prices[prices["period"] < "2024-01-01"], "quarterly", "last")
    want = want / pd.Series({(e, q): 1.0 + i for i, e in enumerate(ENTITIES)
                             for q in want.index.get_level_values(1)}).reindex(want.index)
    _same(_got(engine, "pe_q"), want)
    # the rest of the days arrive: Q1 2024 becomes complete, eps has no Q1 2024 value yet
    engine.load_data(prices[prices["period"] >= "2024-01-01"])
    engine.recalc()
    incremental = {n: _got(engine, n) for n in ("ret", "q_ret", "pe_q", "pe_growth")}
    assert ("A", "2024-03-31") in incremental["q_ret"].index
    engine.recalc(full=True)
    for n, got in incremental.items():
        pd.testing.assert_series_equal(got, _got(engine, n))
    # growth steps along the weekday calendar: a holiday or a missing day has no base
    grid = pd.bdate_range(DAYS[0], DAYS[-1]).strftime("%Y-%m-%d")
    wide = prices.pivot(index="period", columns="entity", values="value").reindex(grid)
    rets = (wide / wide.shift(1) - 1).rename_axis(index="period").stack()
    rets = rets.rename("value").reset_index()
    _same(incremental["q_ret"], reference(rets, "quarterly", "sum"))


def test_the_coarse_calendar_follows_the_finer_data_and_shrinks_with_it(engine):
    engine.load_data(_prices())
    engine.set_formula("q_max", "quarterly_max(close)")
    engine.recalc()
    assert str(max(_got(engine, "q_max").index.get_level_values(1))) == "2024-03-31"
    engine.delete_data("close", period=[d.strftime("%Y-%m-%d") for d in DAYS
                                        if d >= pd.Timestamp("2024-03-29")])
    engine.recalc()
    # the daily data now ends 2024-03-28, so Q1 2024 is no longer complete
    assert str(max(_got(engine, "q_max").index.get_level_values(1))) == "2023-12-31"


def test_conversions_are_checked_at_save(engine):
    engine.load_data(_prices())
    engine.load_data(pd.DataFrame([("eps", "A", "2023-03-31", 1.0)],
                                  columns=["item", "entity", "period", "value"]),
                     frequencies={"eps": "quarterly"})
    with pytest.raises(FrequencyError, match=r"quarterly_last\(eps\) aggregates a finer item "
                                             r"into quarterly periods, but eps is quarterly"):
        engine.set_formula("bad", "quarterly_last(eps)")
    with pytest.raises(FrequencyError, match=r"mixes frequencies \(monthly_last\(close\) is "
                                             r"monthly, quarterly_last\(close\) is quarterly\)"):
        engine.set_formula("bad", "monthly_last(close) / quarterly_last(close)")
    with pytest.raises(FrequencyError, match=r"mixes frequencies \(close is daily, "
                                             r"quarterly_mean\(close\) is quarterly\)"):
        engine.set_formula("bad", "close / quarterly_mean(close)")
    with pytest.raises(FormulaError, match=r"quarterly_sum\(x\) takes the name of a data item "
                                           r"or formula"):
        engine.set_formula("bad", "quarterly_sum(close * 2)")
    assert engine.set_formula("ok", "quarterly_last(close) / eps").created


def test_explain_shows_the_days_behind_a_quarter(engine):
    prices = _prices()
    engine.load_data(prices)
    engine.set_formula("q_mean", "quarterly_mean(close)")
    engine.recalc()
    tree = engine.explain("q_mean", "C", "2023-09-30")["tree"]
    days = tree["window"][0]["values"]
    assert tree["text"] == "quarterly_mean(close)"
    assert days[0][0] == "2023-07-03" and days[-1][0] == "2023-09-29"
    mine = prices[(prices["entity"] == "C") & (prices["period"] >= "2023-07-01")
                  & (prices["period"] <= "2023-09-30")]
    assert [v for _, v in days if v is not None] == mine["value"].tolist()
    assert tree["value"] == pytest.approx(mine["value"].mean(), rel=1e-12)


def test_a_database_without_the_coarser_periods_gets_them_when_a_formula_needs_them(
        sqlite_engine):
    """A database loaded before the downsampling functions has no quarterly calendar from
    its daily data; saving the first formula that needs one fills it in."""
    prices = _prices()
    sqlite_engine.load_data(prices)
    with sqlite_engine.store.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM tc_periods WHERE frequency <> 'daily'")
    sqlite_engine.set_formula("q_last", "quarterly_last(close)")
    sqlite_engine.recalc()
    _same(_got(sqlite_engine, "q_last"), reference(prices, "quarterly", "last"))
