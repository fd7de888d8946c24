"""In-memory evaluation (issue 14 item 3): ``Engine.evaluate`` and ``tracecalc eval``,
checked against pandas references written from the documented semantics, against full
evaluations sliced to a window, and against what a recalculation stores; nothing written."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from conftest import make_cli
from test_asof import _eps, _prices
from test_asof import reference as asof_reference
from tracecalc import (
    DataError,
    FormulaError,
    FrequencyError,
    NotFoundError,
    UnknownReferenceError,
    UsageError,
    ValidationError,
)

ENTITIES = ["A", "B", "C", "D", "E"]
DAYS = [d for d in pd.bdate_range("2024-01-01", "2024-06-28")
        if d != pd.Timestamp("2024-03-29")]  # a holiday: on the calendar, without data

FORMULAS = {
    "ma": "ts_mean(close, 5)",
    "rel": "close / ma",
    "rk": "cs_rank(rel)",  # across entities, over a formula
    "rk2": "rk * 2",  # entity by entity, over a cross-section
    "sm": "ema(close, 3)",  # recursive: all of history
    "mom": "lag(ts_mean(close, 3), 2)",  # look-backs that add up
}


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i, e in enumerate(ENTITIES):
        for d in DAYS:
            if rng.random() < 0.04:
                continue  # a gap: NaN inside windows
            rows.append(("close", e, d.strftime("%Y-%m-%d"),
                         float(np.round(20 + 5 * i + rng.normal(0, 2), 4))))
    return pd.DataFrame(rows, columns=["item", "entity", "period", "value"])


def _load(eng, recalc: bool = False) -> pd.DataFrame:
    data = _data()
    eng.load_data(data, frequencies={"close": "daily"})
    eng.set_formulas(FORMULAS)
    if recalc:
        eng.recalc()
    return data


# -- the reference: pandas over the panel, from the documented semantics ----------------------

def _panel(data: pd.DataFrame) -> pd.DataFrame:
    """close as periods x entities on the weekday calendar (holidays: NaN rows)."""
    p = data.assign(period=pd.to_datetime(data["period"])).pivot(
        index="period", columns="entity", values="value")
    return p.reindex(pd.bdate_range(p.index.min(), p.index.max()))


def _ema(col: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib seed (the mean of the first n present values, at the n-th), then
    state = alpha * x + (1 - alpha) * state at present values, NaN at missing ones."""
    alpha, out = 2.0 / (n + 1), np.full(len(col), np.nan)
    acc, count, state = 0.0, 0, math.nan
    for t, x in enumerate(col):
        if math.isnan(x):
            continue
        if count < n:
            acc, count = acc + x, count + 1
            if count == n:
                state = out[t] = acc / n
            continue
        state = out[t] = alpha * x + (1 - alpha) * state
    return out


def _reference(close: pd.DataFrame) -> dict[str, pd.DataFrame]:
    ma = close.rolling(5).mean()  # NaN when any of the 5 is missing
    rel = close / ma
    rk = rel.rank(axis=1, pct=True, method="average")
    return {"ma": ma, "rel": rel, "rk": rk, "rk2": rk * 2,
            "sm": close.apply(lambda c: pd.Series(_ema(c.to_numpy(), 3), index=c.index)),
            "mom": close.rolling(3).mean().shift(2),
            "close / ts_mean(close, 20)": close / close.rolling(20).mean(),
            "cs_rank(close)": close.rank(axis=1, pct=True, method="average")}


def _tidy(got: pd.DataFrame, label: str) -> pd.Series:
    return got.set_index(["period", "entity"])[label].dropna().sort_index()


def _long(want: pd.DataFrame) -> pd.Series:
    s = want.stack().dropna()
    s.index = s.index.set_names(["period", "entity"])
    return s.sort_index()


def _close(got: pd.Series, want: pd.Series) -> None:
    assert len(got) and list(got.index) == list(want.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-12)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal frames: the same rows, every value the same bits (NaN equal to NaN)."""
    assert list(a.columns) == list(b.columns)
    assert a["period"].tolist() == b["period"].tolist()
    assert a["entity"].tolist() == b["entity"].tolist()
    for c in a.columns[2:]:
        assert np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True), c


def _counts(eng) -> dict[str, int]:
    with eng.store.transaction(write=False) as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                for t in ("tc_records", "tc_runs", "tc_digests", "tc_stale", "tc_record_versions")}


# -- values ------------------------------------------------------------------------------------

def test_values_match_pandas_and_nothing_is_written(engine):
    data = _load(engine)
    before, states = _counts(engine), dict(engine.status()["states"])
    exprs = [*FORMULAS, "close / ts_mean(close, 20)", "cs_rank(close)"]
    got = engine.evaluate(exprs)
    want = _reference(_panel(data))
    for label in exprs:
        _close(_tidy(got, label), _long(want[label]))
    # nothing written: no records, runs, digests or marks, the formulas as stale as before
    assert _counts(engine) == before and before["tc_records"] == 0
    assert engine.status()["states"] == states and set(states) == set(FORMULAS)
    # what a recalculation stores, bit for bit
    engine.recalc()
    for name in FORMULAS:
        rec = engine.records(name).set_index(["period", "entity"])["value"].sort_index()
        mine = _tidy(got, name)
        assert list(rec.index) == list(mine.index)
        assert np.array_equal(rec.to_numpy(), mine.to_numpy())


def test_a_stale_upstream_gives_the_answer_of_the_data_not_the_records(sqlite_engine):
    eng = sqlite_engine
    data = _load(eng, recalc=True)
    changed = data[data["entity"] == "B"].assign(value=lambda d: d["value"] + 3.0)
    eng.load_data(changed)  # B's prices change: ma, rel, rk, ... stale; no recalc
    assert eng.status()["stale"]
    new = pd.concat([data[data["entity"] != "B"], changed], ignore_index=True)
    want = _reference(_panel(new))
    got = eng.evaluate(["rel", "rk2"])
    _close(_tidy(got, "rel"), _long(want["rel"]))
    _close(_tidy(got, "rk2"), _long(want["rk2"]))
    with pytest.warns(Warning):
        old = eng.records("rel").set_index(["period", "entity"])["value"].sort_index()
    assert not np.allclose(old.loc[:, "B"].to_numpy(), _tidy(got, "rel").loc[:, "B"].to_numpy())


# -- entities and periods -------------------------------------------------------------------

WINDOWS = [(None, None, ["C"]), ("2024-03-01", "2024-03-28", None),
           ("2024-04-01", None, ["B", "E"]), (None, "2024-02-09", ["A"]),
           ("2024-03-29", "2024-04-02", ["D", "A"]), ("2024-06-28", None, None),
           ("2023-01-01", "2023-12-31", None)]


@pytest.mark.parametrize("start, end, entities", WINDOWS)
def test_a_window_equals_the_full_evaluation_sliced(sqlite_engine, start, end, entities):
    _load(sqlite_engine)
    exprs = [*FORMULAS, "ts_mean(ts_mean(close, 4), 6)", "ema(rel, 4) - lag(sm, 3)",
             "cs_zscore(ts_std(close, 10))", "coalesce(close, 0)"]
    full = sqlite_engine.evaluate(exprs)
    part = sqlite_engine.evaluate(exprs, entities=entities, start=start, end=end)
    keep = np.ones(len(full), bool)
    if entities:
        keep &= full["entity"].isin(entities).to_numpy()
    if start:
        keep &= (full["period"] >= start).to_numpy()
    if end:
        keep &= (full["period"] <= end).to_numpy()
    want = full[keep].reset_index(drop=True)
    _same(part, want)
    for expr in exprs:  # alone: its inputs read from its own look-back (no ema beside it)
        alone = sqlite_engine.evaluate([expr], entities=entities, start=start, end=end)
        _same(alone, want[["period", "entity", expr]].dropna().reset_index(drop=True))
    if start == "2023-01-01":
        assert len(part) == 0 and list(part.columns) == ["period", "entity", *exprs]


def test_entities_restrict_the_output_never_a_cross_section(sqlite_engine):
    data = _load(sqlite_engine)
    got = sqlite_engine.evaluate(["cs_rank(close)", "rk2"], entities="C")
    assert set(got["entity"]) == {"C"}
    want = _reference(_panel(data))
    _close(_tidy(got, "cs_rank(close)"), _long(want["cs_rank(close)"][["C"]]))
    _close(_tidy(got, "rk2"), _long(want["rk2"][["C"]]))
    assert got["cs_rank(close)"].nunique() > 3  # not C ranked alone (1 everywhere)
    # one read per item and entity set, shared by every expression
    reads = []
    real = sqlite_engine.store.read_item

    def counting(conn, item_id, entity_ids=None, since=None):
        reads.append((item_id, None if entity_ids is None else tuple(entity_ids)))
        return real(conn, item_id, entity_ids, since)

    sqlite_engine.store.read_item = counting
    sqlite_engine.evaluate(["close * 2", "ts_mean(close, 3)", "rel", "sm", "rk"], entities="A")
    assert len(reads) == 1 and len(reads[0][1]) == len(ENTITIES)  # rk ranks every entity
    reads.clear()
    sqlite_engine.evaluate(["close * 2", "rel", "sm"], entities="A")
    assert len(reads) == 1 and len(reads[0][1]) == 1


def test_a_window_reads_only_its_look_back_on_every_database(engine):
    _load(engine)
    exprs = ["ts_mean(close, 5) - lag(close, 3)", "rel", "cs_rank(close)"]
    full = engine.evaluate(exprs)
    seen = []
    real = engine.store.read_item

    def spying(conn, item_id, entity_ids=None, since=None):
        seen.append(since)
        return real(conn, item_id, entity_ids, since)

    engine.store.read_item = spying
    part = engine.evaluate(exprs, entities=["B", "D"], start="2024-04-10", end="2024-05-10")
    # ma (5 days) inside rel: 4 weekdays before the start; lag 3: 3 (2024-04-04 .. 04-09)
    assert [str(s) for s in seen] == ["2024-04-04"]
    keep = (full["entity"].isin(["B", "D"]) & (full["period"] >= "2024-04-10")
            & (full["period"] <= "2024-05-10"))
    _same(part, full[keep].reset_index(drop=True))


# -- frequencies and asof --------------------------------------------------------------------

def _load_asof(eng):
    prices, eps = _prices(), _eps()
    eng.load_data(prices, frequencies={"close": "daily"})
    eng.load_data(eps, frequencies={"eps": "quarterly"})
    eng.set_formulas({"ttm_eps": "ttm(eps)", "pe": "close / asof(eps)",
                      "pe_ttm": "close / asof(ttm_eps)", "eps2": "eps * 2"})
    return prices, eps


def test_asof_of_an_item_and_of_a_formula_with_versions(engine):
    prices, eps = _load_asof(engine)
    got = engine.evaluate(["close / asof(eps)", "pe", "1 / asof(eps, 120) * close",
                           "pe_ttm"])
    got = got.set_index(["entity", "period"]).sort_index()
    for label, age in [("close / asof(eps)", 0), ("pe", 0), ("1 / asof(eps, 120) * close", 120)]:
        want = asof_reference(prices, eps, age)
        mine = got[label].dropna()
        assert list(mine.index) == list(want.index)
        np.testing.assert_allclose(mine.to_numpy(), want.to_numpy(), rtol=1e-12, atol=0)
    engine.recalc()  # asof of a point-in-time formula: as the run computes its versions
    rec = engine.records("pe_ttm").set_index(["entity", "period"])["value"].sort_index()
    assert np.array_equal(got["pe_ttm"].dropna().to_numpy(), rec.to_numpy())
    # a window: the quarters before it still count
    part = engine.evaluate(["pe_ttm", "pe"], entities=["B"], start="2024-05-01",
                           end="2024-08-30").set_index(["entity", "period"])
    assert len(part) > 50
    full = got.loc[part.index, ["pe_ttm", "pe"]]
    assert np.array_equal(part.to_numpy(), full.to_numpy(), equal_nan=True)


def test_frequencies_as_for_a_saved_formula_and_mixed_outputs_join(sqlite_engine):
    eng = sqlite_engine
    _load_asof(eng)
    for expr in ["close / eps", "eps / asof(close)", "1 + 2"]:
        with pytest.raises(FrequencyError) as saved:
            eng.set_formula("x", expr)
        with pytest.raises(FrequencyError) as evaluated:
            eng.evaluate(expr)
        assert str(saved.value) == f"formula 'x': {evaluated.value}"
    eps = _eps()
    latest = eps[(eps["entity"] == "A") & (eps["period"] == "2024-03-31")]["value"].iloc[-1]
    # 2024-03-31 is a Sunday: a quarterly row of its own, joined on (period, entity)
    got = eng.evaluate({"p": "close", "q": "eps2"}, entities="A", start="2024-03-28",
                       end="2024-03-31")
    assert got.attrs["frequencies"] == {"p": "daily", "q": "quarterly"}
    assert got["period"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-28", "2024-03-29",
                                                               "2024-03-31"]
    assert got["q"].iloc[-1] == latest * 2 and np.isnan(got["p"].iloc[-1])
    # a quarter end on a weekday shares its row with the day
    got = eng.evaluate(["close", "eps2"], entities="A", start="2023-06-29", end="2023-06-30")
    assert got["period"].dt.strftime("%Y-%m-%d").tolist() == ["2023-06-29", "2023-06-30"]
    assert not got.iloc[1][["close", "eps2"]].isna().any()


# -- errors and shape ----------------------------------------------------------------------

def test_bad_expressions_give_the_errors_of_check(sqlite_engine):
    eng = sqlite_engine
    _load(eng)
    with pytest.raises(UnknownReferenceError, match=r"unknown reference 'clsoe'\. Did you "
                       r"mean 'close'\?") as e:
        eng.evaluate("rel + clsoe")
    assert e.value.col == 6 and e.value.possibilities == ["close"]
    for bad in ["rel +", "ts_mean(close, n)", "rel.x", "ts_mena(close, 3)"]:
        problems = eng.check_formula("x", bad).problems
        with pytest.raises(FormulaError) as err:
            eng.evaluate([bad])
        assert problems[0].message == f"formula 'x': {err.value}"
    with pytest.raises(ValidationError, match="evaluation failed with 2 problems; nothing "
                       "was evaluated") as many:
        eng.evaluate(["rel", "rel +", "clsoe"])
    assert [p.name for p in many.value.problems] == ["rel +", "clsoe"]
    with pytest.raises(NotFoundError, match=r"no entity named 'AA'\. Did you mean 'A'\?"):
        eng.evaluate("rel", entities=["B", "AA"])
    with pytest.raises(DataError, match="bad start"):
        eng.evaluate("rel", start="2024-02-30")
    with pytest.raises(UsageError, match="is after end"):
        eng.evaluate("rel", start="2024-03-01", end="2024-02-01")
    for bad in [[], 3, {"period": "rel"}, [None]]:
        with pytest.raises(UsageError):
            eng.evaluate(bad)
    with pytest.raises(UsageError, match="one code or several"):
        eng.evaluate("rel", entities=7)


def test_the_frame(sqlite_engine):
    _load(sqlite_engine)
    got = sqlite_engine.evaluate({"m": "ma", "r": "rk"}, entities=["E", "B"],
                                 start="2024-01-05", end="2024-01-10")
    assert list(got.columns) == ["period", "entity", "m", "r"]
    assert str(got["period"].dtype) == "datetime64[s]"
    assert got["m"].dtype == np.float64 and got["r"].dtype == np.float64
    keys = list(zip(got["period"], got["entity"]))
    assert keys == sorted(keys) and set(got["entity"]) == {"B", "E"}
    assert not got[["m", "r"]].isna().all(axis=1).any()  # a row only where a value is
    assert got.attrs["frequencies"] == {"m": "daily", "r": "daily"}
    none = sqlite_engine.evaluate(["ma", "rk"], entities=[])
    assert len(none) == 0 and list(none.columns) == ["period", "entity", "ma", "rk"]
    assert list(sqlite_engine.evaluate(["rel", "rel"]).columns) == ["period", "entity", "rel"]


# -- the command --------------------------------------------------------------------------

def test_the_eval_command(tmp_path):
    cli = make_cli(f"sqlite:///{tmp_path / 'eval.db'}")
    data = _data()
    (tmp_path / "d.csv").write_text(data.to_csv(index=False))
    cli("load-data", str(tmp_path / "d.csv"), "-f", "close=daily")
    cli("set", "ma", "ts_mean(close, 5)")
    res = cli("eval", "ma", "-close", "--entity", "A", "-e", "B", "--start", "2024-01-08",
              "--end", "2024-01-09")
    lines = res.stdout.splitlines()
    assert lines[1].split() == ["period", "entity", "ma", "-close"]
    close = _panel(data)
    ma = close.rolling(5).mean()
    rows = [ln.split() for ln in lines[3:7]]
    assert [r[:2] for r in rows] == [["2024-01-08", "A"], ["2024-01-08", "B"],
                                     ["2024-01-09", "A"], ["2024-01-09", "B"]]
    for r in rows:
        day, e = pd.Timestamp(r[0]), r[1]
        assert float(r[2]) == pytest.approx(ma.loc[day, e], rel=1e-7)
        assert float(r[3]) == -close.loc[day, e]
    assert lines[-1] == "4 rows (daily); nothing was written"
    csv = cli("eval", "ma", "--entity", "C", "--end", "2024-01-10", "--csv").stdout
    want = ma.loc[:"2024-01-10", "C"].dropna()
    assert csv.splitlines()[0] == "period,entity,ma"
    assert [float(x.split(",")[2]) for x in csv.splitlines()[1:]] == pytest.approx(
        want.tolist(), rel=1e-12)
    err = cli("eval", "ma / clsoe", code=1).stderr
    assert err.startswith("error: unknown reference 'clsoe'. Did you mean 'close'?")
    assert "nothing was written" not in cli("eval", "ma + 1", "--csv").stdout
    known = cli("eval", "ma", "--entity", "A", "--as-of", "2024-01-09", "--csv").stdout
    assert known.splitlines()[-1].startswith("2024-01-09,A,")  # nothing after the date


# -- the sample catalog: every function the language has, against a recalculation ------------

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from conftest import SAMPLE
    from tracecalc.engine import Engine
    from tracecalc.storage.files import read_formulas

    eng = Engine(f"sqlite:///{tmp_path_factory.mktemp('sample') / 's.db'}", user="tester")
    eng.load_entities(SAMPLE / "entities.csv")
    eng.load_data(SAMPLE / "data.csv")
    eng.load_data(SAMPLE / "restatements.csv")  # quarterly items with versions
    eng.load_data(SAMPLE / "prices.csv", frequencies={"px": "daily"})
    eng.load_data(SAMPLE / "eps_reports.csv", frequencies={"eps_reported": "quarterly"})
    eng.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    eng.set_formulas(read_formulas(SAMPLE / "daily_formulas.csv"))
    eng.recalc()
    names = list(eng.formulas(canonical=False)["name"])
    yield eng, names, eng.evaluate(names)
    eng.close()


def test_every_sample_formula_equals_its_records(sample):
    eng, names, full = sample
    assert len(names) > 90
    for name in names:
        rec = eng.records(name).set_index(["period", "entity"])["value"].sort_index()
        mine = _tidy(full, name)
        assert list(rec.index) == list(mine.index), name
        assert np.array_equal(rec.to_numpy(), mine.to_numpy()), name


@settings(max_examples=int(os.environ.get("TRACECALC_EVAL_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_window_of_the_sample_catalog_equals_the_full_one_sliced(sample, data):
    eng, names, full = sample
    codes = sorted(set(full["entity"]))
    days = sorted(set(full["period"]))
    picked = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=6, unique=True))
    entities = data.draw(st.none() | st.lists(st.sampled_from(codes), min_size=1,
                                              max_size=4, unique=True))
    start = data.draw(st.none() | st.sampled_from(days))
    end = data.draw(st.none() | st.sampled_from(days))
    if start is not None and end is not None and start > end:
        start, end = end, start
    part = eng.evaluate(picked, entities=entities, start=start, end=end)
    want = full[["period", "entity", *picked]]
    keep = ~want[picked].isna().all(axis=1).to_numpy()
    if entities is not None:
        keep &= want["entity"].isin(entities).to_numpy()
    if start is not None:
        keep &= (want["period"] >= start).to_numpy()
    if end is not None:
        keep &= (want["period"] <= end).to_numpy()
    _same(part, want[keep].reset_index(drop=True))


def _eps_known_by(eps: pd.DataFrame, day: str) -> pd.DataFrame:
    """Each quarter's latest version known by ``day`` (a missing one: absent), from the
    rule: an empty known_at is the period."""
    e = eps.assign(known_at=eps["known_at"].where(eps["known_at"] != "", eps["period"]))
    e = e[e["known_at"] <= day].sort_values("known_at", kind="stable")
    return e.groupby(["entity", "period"]).tail(1).dropna(subset=["value"])


@pytest.mark.parametrize("day", ["2023-05-20", "2024-01-20", "2024-03-05", "2024-08-01"])
def test_as_of_a_date(sqlite_engine, day):
    eng = sqlite_engine
    prices, eps = _load_asof(eng)
    eng.recalc()
    got = eng.evaluate(["eps", "ttm_eps", "eps2", "pe", "cs_rank(eps)"], as_of=day)
    assert got["period"].max() <= pd.Timestamp(day)  # nothing after it is known then
    known = _eps_known_by(eps, day).assign(period=lambda d: pd.to_datetime(d["period"]))
    panel = known.pivot(index="period", columns="entity", values="value")
    _close(_tidy(got, "eps"), _long(panel))
    _close(_tidy(got, "eps2"), _long(panel * 2))
    _close(_tidy(got, "cs_rank(eps)"), _long(panel.rank(axis=1, pct=True)))
    want = asof_reference(prices, eps)
    want = want[want.index.get_level_values(1) <= pd.Timestamp(day)].swaplevel().sort_index()
    _close(_tidy(got, "pe"), want)
    for name in ["ttm_eps", "pe"]:  # as the as-of view of the records
        rec = eng.records(name, as_of=day).set_index(["period", "entity"])["value"]
        mine = _tidy(got, name)
        assert list(rec.sort_index().index) == list(mine.index)
        assert np.array_equal(rec.sort_index().to_numpy(), mine.to_numpy())


def test_asof_of_a_formula_without_versions(sqlite_engine):
    eng = sqlite_engine
    prices = _prices()
    quarters = pd.date_range("2022-12-31", "2024-09-30", freq="QE").strftime("%Y-%m-%d")
    rev = pd.DataFrame([("rev", e, q, float(i + 10 * j)) for i, e in enumerate("ABC")
                        for j, q in enumerate(quarters)],
                       columns=["item", "entity", "period", "value"])
    eng.load_data(prices, frequencies={"close": "daily"})
    eng.load_data(rev, frequencies={"rev": "quarterly"})
    eng.set_formulas({"rev2": "rev * 2", "ratio": "close / asof(rev2)"})
    got = eng.evaluate(["ratio", "close / (asof(rev) * 2)"], start="2023-03-01")
    assert len(got) > 1000
    assert np.array_equal(got["ratio"].to_numpy(), got["close / (asof(rev) * 2)"].to_numpy(),
                          equal_nan=True)
    eng.recalc()
    rec = eng.records("ratio", start="2023-03-01").set_index(["period", "entity"])["value"]
    assert np.array_equal(rec.sort_index().to_numpy(), _tidy(got, "ratio").to_numpy())
    # on each day, the latest quarter ended by then (a value known at its period), times 2
    day = got[(got["entity"] == "B") & (got["period"] == "2023-05-15")]
    close = prices[(prices["entity"] == "B") & (prices["period"] == "2023-05-15")]["value"]
    assert day["ratio"].iloc[0] == close.iloc[0] / (2 * (1 + 10 * 1))  # 2023-03-31's value


@pytest.mark.parametrize("ids_in_code_order", [True, False])
@pytest.mark.parametrize("a_gap", [False, True])
def test_the_frame_builder_against_pandas(monkeypatch, ids_in_code_order, a_gap):
    # tidy_frame directly: rows by period then entity code, a row where any column has a
    # value, columns its own copies; with ids in code order it needs no sort at all
    from tracecalc.storage import frames

    codes = np.array([None, "AA", "BB", "CC"], dtype=object)  # id -> code (0 unused)
    if not ids_in_code_order:
        codes = np.array([None, "CC", "AA", "BB"], dtype=object)
    ids = np.array([1, 2, 3])
    cal = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[D]")
    x = np.arange(9, dtype=float).reshape(3, 3)
    y = x * 10 + 0.5
    if a_gap:
        x[1, 2] = y[1, 2] = np.nan  # no row for that cell
        y[0, 0] = np.nan  # x has one: the row stays
    ref = pd.DataFrame({"period": np.repeat(cal, 3).astype("datetime64[s]"),
                        "entity": np.tile(codes[ids], 3), "x": x.ravel(), "y": y.ravel()})
    ref = ref.dropna(subset=["x", "y"], how="all").sort_values(["period", "entity"])
    if ids_in_code_order:
        def no_sort(*a, **k):
            raise AssertionError("sorted rows that were in order")
        monkeypatch.setattr(frames.np, "lexsort", no_sort)
    got = frames.tidy_frame(codes, ids, {"x": (cal, x), "y": (cal, y)},
                            {"x": "daily", "y": "daily"})
    monkeypatch.undo()
    pd.testing.assert_frame_equal(got, ref.reset_index(drop=True))
    assert not np.shares_memory(got["x"].to_numpy(), x)
    assert not np.shares_memory(got["x"].to_numpy(), got["y"].to_numpy())
