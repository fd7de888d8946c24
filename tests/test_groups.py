"""Groups: every cross-sectional function takes ``by=ATTRIBUTE``, an entity attribute loaded
with ``load-entities`` (docs/formula-language.md, "Groups"). The parser, the compiled formula
against an independent pandas group-by written from the documented semantics, and the whole
path on SQLite, PostgreSQL and MariaDB: save, recalculate, change an attribute, recalculate
incrementally, evaluate, explain."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE
from tracecalc.errors import ArityError, DataError, UnknownAttributeError, ValidationError
from tracecalc.evaluator import interpret
from tracecalc.facts import facts_of
from tracecalc.functions import group_codes
from tracecalc.parser import canonical_form, parse, to_text

N = math.nan

# --- the language ---------------------------------------------------------------------------


def test_by_parses_on_every_cross_sectional_function_and_prints_back():
    for text in ("cs_rank(pe, by=sector)", "cs_zscore(roe, by=industry)",
                 "cs_demean(ret, by=sector)", "cs_scale(x, 2, by=country)",
                 "cs_winsorize(x, 3, by=sector)", "cs_quantile(x, 5, by=sector)",
                 "cs_resid(y, x, by=industry)"):
        tree = parse(text).tree
        assert tree.by == text.split("by=")[1][:-1] and to_text(tree) == text
    f = facts_of("cs_zscore(cs_demean(x, by=industry), by=sector) + cs_rank(x)")
    assert f.attributes == ("sector", "industry") and f.references == ("x",)
    assert f.cross_sectional and f.lookback == {"x": 0}
    # keyword order does not matter; the text prints the canonical way
    assert to_text(parse("cs_scale(by=sector, x=x, a=2)").tree) == "cs_scale(x, 2, by=sector)"


def test_grouping_is_part_of_the_canonical_form():
    forms = {canonical_form(parse(t).tree) for t in (
        "cs_rank(x)", "cs_rank(x, by=sector)", "cs_rank(x, by=industry)")}
    assert len(forms) == 3
    assert canonical_form(parse("cs_rank(x + y, by=sector)").tree) == \
        canonical_form(parse("cs_rank(y + x, by=sector)").tree)


@pytest.mark.parametrize(("text", "message"), [
    ("ts_mean(x, 5, by=sector)", "ts_mean(x, n) has no parameter 'by' (by=ATTRIBUTE groups "
                                 "the cross-sectional functions, cs_*)"),
    ("abs(x, by=sector)", "has no parameter 'by'"),
    ("min(x, y, by=sector)", "has no parameter 'by'"),
    ("cs_rank(x, by=1)", "takes the name of an entity attribute"),
    ("cs_rank(x, by=sector.name)", "takes the name of an entity attribute"),
    ("cs_rank(x, by=cs_rank(x))", "takes the name of an entity attribute"),
    ("cs_rank(x, by=a, by=b)", "got 'by' twice"),
])
def test_by_is_refused_where_it_means_nothing(text, message):
    with pytest.raises(ArityError) as e:
        parse(text, "f")
    assert message in str(e.value)


# --- the compiled formula against pandas ----------------------------------------------------

# 10 entities: industries a (4), b (3), c (1: a singleton) and two without one
INDUSTRY = ["a", "b", "a", None, "b", "c", "a", "b", None, "a"]


def _panel(seed: int, periods: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, (periods, len(INDUSTRY))).round(2)
    x[rng.random(x.shape) < 0.15] = N
    x[3, [1, 4]] = N  # group b has one present value there: NaN for it
    x[5, [0, 2, 6, 9]] = 1.5  # group a flat there
    return x


def _long(x: np.ndarray, **more: np.ndarray) -> pd.DataFrame:
    t, e = np.meshgrid(np.arange(x.shape[0]), np.arange(x.shape[1]), indexing="ij")
    df = pd.DataFrame({"t": t.ravel(), "e": e.ravel(), "x": x.ravel(),
                       "g": np.array(INDUSTRY, dtype=object)[e.ravel()]})
    for k, v in more.items():
        df[k] = v.ravel()
    return df


def _back(df: pd.DataFrame, col: str, shape) -> np.ndarray:
    out = np.full(shape, N)
    out[df["t"], df["e"]] = df[col]
    return out


def reference(fn: str, x: np.ndarray, *args, y: np.ndarray | None = None) -> np.ndarray:
    """The documented semantics with pandas: per period and industry, over the present
    values; a group with fewer than 2 present values, or an entity without an industry,
    gives NaN."""
    df = _long(x) if y is None else _long(x, y=y)
    if y is not None:  # cs_resid(y, x): the pairs with both present
        df.loc[df["y"].isna() | df["x"].isna(), ["x", "y"]] = N
    df = df[df["g"].notna()].copy()
    key = [df["t"], df["g"]]
    g = df.groupby(key)["x"]
    n, mean = g.transform("count"), g.transform("mean")
    std = g.transform(lambda v: v.std(ddof=0))
    flat = g.transform("max") == g.transform("min")
    if fn == "cs_demean":
        df["r"] = df["x"] - mean
    elif fn == "cs_rank":
        df["r"] = g.rank(method="average") / n
    elif fn == "cs_quantile":
        df["r"] = np.ceil(args[0] * g.rank(method="average") / n)
    elif fn == "cs_zscore":
        df["r"] = ((df["x"] - mean) / std).where(~flat & (std > 0))
    elif fn == "cs_scale":
        df["r"] = df["x"] / df["x"].abs().groupby(key).transform("sum") * args[0]
    elif fn == "cs_winsorize":
        df["r"] = df["x"].clip(mean - args[0] * std, mean + args[0] * std).where(~flat,
                                                                               df["x"])
    elif fn == "cs_resid":
        dx = df["x"] - mean
        dy = df["y"] - df.groupby(key)["y"].transform("mean")
        b = (dx * dy).groupby(key).transform("sum") / (dx * dx).groupby(key).transform("sum")
        df["r"] = (dy - b * dx).where(~flat)
    df.loc[n < 2, "r"] = N
    return _back(df, "r", x.shape)


@pytest.mark.parametrize(("text", "fn", "args"), [
    ("cs_demean(x, by=industry)", "cs_demean", ()),
    ("cs_rank(x, by=industry)", "cs_rank", ()),
    ("cs_quantile(x, 3, by=industry)", "cs_quantile", (3,)),
    ("cs_zscore(x, by=industry)", "cs_zscore", ()),
    ("cs_scale(x, 2, by=industry)", "cs_scale", (2,)),
    ("cs_winsorize(x, 1, by=industry)", "cs_winsorize", (1,)),
    ("cs_resid(y, x, by=industry)", "cs_resid", ()),
])
def test_grouped_formulas_equal_a_pandas_group_by(text, fn, args):
    x, y = _panel(1), _panel(2)
    f = facts_of(text, "f")
    groups = {"industry": group_codes(INDUSTRY)}
    panels = {"x": x, "y": y}
    got = f.compiled(*(panels[r] for r in f.compiled.inputs), groups=groups)
    want = reference(fn, x, *args, y=y if fn == "cs_resid" else None)
    assert np.isnan(got[:, [3, 8]]).all() and np.isnan(got[:, 5]).all()  # none; singleton
    assert (~np.isnan(want)).sum() > 150  # the comparison covers real values
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    # the tree walked through the kernels (explain) gives the same bits
    np.testing.assert_array_equal(interpret(f.tree, panels, x, groups), got)


def test_group_codes_follow_the_values_and_missing_is_none():
    assert group_codes(["b", "a", None, "b", "c"]).tolist() == [1, 0, -1, 1, 2]
    assert group_codes([None, None]).tolist() == [-1, -1]
    with pytest.raises(ValueError, match="group codes of 'industry'"):
        facts_of("cs_rank(x, by=industry)").compiled(_panel(1))


# --- the engine, on every database ----------------------------------------------------------

CODES = [f"E{i}" for i in range(len(INDUSTRY))]
DAYS = pd.bdate_range("2024-01-01", periods=12).strftime("%Y-%m-%d").tolist()


def _entities(industry=INDUSTRY) -> pd.DataFrame:
    return pd.DataFrame({"code": CODES, "name": [c.lower() for c in CODES],
                         "sector": ["s1" if i < 5 else "s2" for i in range(len(CODES))],
                         "industry": [v or "" for v in industry]})


def _data() -> pd.DataFrame:
    x = _panel(3, len(DAYS))
    return pd.DataFrame([{"item": "x", "entity": c, "period": d, "value": x[t, e]}
                         for t, d in enumerate(DAYS) for e, c in enumerate(CODES)
                         if not np.isnan(x[t, e])]), x


def _stored(eng, name: str) -> np.ndarray:
    r = eng.records(name)
    out = np.full((len(DAYS), len(CODES)), N)
    out[[DAYS.index(str(p)[:10]) for p in r["period"]],
        [CODES.index(e) for e in r["entity"]]] = r["value"]
    return out


def test_demean_by_industry_end_to_end(engine):
    data, x = _data()
    engine.load_entities(_entities())
    engine.load_data(data)
    got = engine.entities()
    assert list(got.columns) == ["code", "name", "sector", "industry"]
    assert [None if pd.isna(v) else v for v in got["industry"]] == INDUSTRY
    engine.set_formulas([{"name": "dm", "expression": "cs_demean(x, by=industry)"},
                         {"name": "dm2", "expression": "dm * 2"},
                         {"name": "other", "expression": "cs_rank(x, by=sector)"}])
    engine.recalc()
    np.testing.assert_allclose(_stored(engine, "dm"), reference("cs_demean", x), rtol=1e-12,
                               atol=1e-12, equal_nan=True)

    # E3 joins b, E5 moves from c (a singleton) to a
    moved = list(INDUSTRY)
    moved[3], moved[5] = "b", "a"
    assert engine.load_entities(_entities(moved)) == len(CODES)
    status = engine.status()
    assert status["states"] == {"dm": "stale", "dm2": "pending"}  # not "other": by sector
    rep = engine.recalc()
    assert {f.name for f in rep.formulas} == {"dm", "dm2"}
    INDUSTRY_BEFORE = list(INDUSTRY)
    try:
        INDUSTRY[:] = moved  # the reference groups by the new industries
        want = reference("cs_demean", x)
    finally:
        INDUSTRY[:] = INDUSTRY_BEFORE
    incremental = {n: _stored(engine, n) for n in ("dm", "dm2", "other")}
    np.testing.assert_allclose(incremental["dm"], want, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert not np.isnan(incremental["dm"][:, [3, 5]]).all()
    # a recalculation from scratch agrees with the incremental one, bit for bit
    full = engine.recalc(full=True)
    assert full.records_written == 0 and full.records_unchanged > 0
    for n, panel in incremental.items():
        np.testing.assert_array_equal(_stored(engine, n), panel)
    np.testing.assert_array_equal(incremental["dm2"], incremental["dm"] * 2)

    # the same file again changes nothing and marks nothing
    engine.load_entities(_entities(moved))
    assert engine.status()["stale"] == []
    # in memory, the same values (every entity's groups, even when one entity is asked)
    ev = engine.evaluate({"v": "cs_demean(x, by=industry)"}, entities="E5")
    stored = engine.records("dm", entities="E5")
    assert ev["v"].tolist() == stored["value"].tolist() and len(stored) >= 10
    assert ev["period"].tolist() == stored["period"].tolist()
    # explain walks the same kernels over every entity's groups
    t = int(np.flatnonzero(~np.isnan(incremental["dm"][:, 5]))[-1])
    got = engine.explain("dm", "E5", DAYS[t])
    assert got["tree"]["value"] == got["stored"] == incremental["dm"][t, 5]
    assert got["tree"]["text"] == "cs_demean(x, by=industry)"


def test_an_entity_losing_its_attribute_gets_nan(engine):
    data, x = _data()
    engine.load_entities(_entities())
    engine.load_data(data)
    engine.set_formula("rk", "cs_rank(x, by=industry)")
    engine.recalc()
    assert not np.isnan(_stored(engine, "rk")[:, 0]).all()
    # only the columns a file has are set: an empty cell removes the value
    engine.load_entities(pd.DataFrame({"code": ["E0"], "industry": [""]}))
    assert engine.entities().set_index("code").loc["E0", "name"] == "e0"
    assert engine.status()["states"]["rk"] == "stale"
    engine.recalc()
    assert np.isnan(_stored(engine, "rk")[:, 0]).all()


def test_an_unknown_attribute_is_refused_at_save(engine):
    engine.load_entities(_entities())
    engine.load_data(_data()[0])
    with pytest.raises(UnknownAttributeError) as e:
        engine.set_formula("bad", "cs_demean(x, by=industy)")
    msg = str(e.value)
    assert msg == ("formula 'bad': unknown entity attribute 'industy' in by=industy at "
                   "column 14; the known attributes (columns loaded with load-entities) are "
                   "industry, sector. Did you mean 'industry'?")
    assert "\n" not in msg  # one line
    assert engine.status()["formulas"] == 0
    # in a batch, every problem is listed and nothing is saved
    with pytest.raises(ValidationError) as e:
        engine.set_formulas([{"name": "a", "expression": "cs_rank(x, by=country)"},
                             {"name": "b", "expression": "cs_rank(x, by=sector)"},
                             {"name": "c", "expression": "cs_rank(cs_demean(x, by=sector), "
                                                         "by=sector_)"}])
    assert [p.name for p in e.value.problems] == ["a", "c"]
    assert "unknown entity attribute 'country'" in str(e.value)
    assert "'sector_' in by=sector_ at column 34" in str(e.value)
    assert engine.status()["formulas"] == 0
    with pytest.raises(UnknownAttributeError, match="by=sectr at column 12"):
        engine.evaluate("cs_rank(x, by=sectr)")
    # sector is always known (a column of its own), with no entity having one
    engine.set_formula("ok", "cs_rank(x, by=sector)")


def test_entity_files_name_their_attributes_as_formulas_name_things(engine):
    with pytest.raises(DataError, match="column 'gics sector' is not an attribute name"):
        engine.load_entities(pd.DataFrame({"code": ["A"], "gics sector": ["x"]}))
    with pytest.raises(DataError, match="expected a 'code' column"):
        engine.load_entities(pd.DataFrame({"industry": ["x"]}))
    assert engine.entities().empty


def test_the_ohlcv_sample_has_entities_with_industries():
    ents = pd.read_csv(SAMPLE / "ohlcv_entities.csv")
    bars = pd.read_csv(SAMPLE / "ohlcv.csv", usecols=["entity"])
    assert list(ents.columns) == ["code", "name", "sector", "industry", "subindustry"]
    assert sorted(ents["code"]) == sorted(bars["entity"].unique())
    for g in ("sector", "industry", "subindustry"):  # no group of one
        assert ents.groupby(g).size().min() >= 2, g
    # each subindustry inside one industry, each industry inside one sector
    assert ents.groupby("subindustry")["industry"].nunique().max() == 1
    assert ents.groupby("industry")["sector"].nunique().max() == 1


def test_the_cli_groups_the_ohlcv_sample_by_industry(cli):
    cli("load-entities", str(SAMPLE / "ohlcv_entities.csv"))
    cli("load-data", str(SAMPLE / "ohlcv.csv"))
    cli("set", "ret", "close / lag(close, 1) - 1")
    cli("set", "ind_ret", "cs_demean(ret, by=industry)")
    res = cli("set", "bad", "cs_demean(ret, by=industri)", code=1)
    assert res.stderr.strip().splitlines() == [
        "error: formula 'bad': unknown entity attribute 'industri' in by=industri at column "
        "16; the known attributes (columns loaded with load-entities) are industry, sector, "
        "subindustry. Did you mean 'industry' or 'subindustry'?"]
    cli("recalc")
    # against pandas: each day's return less its industry's mean
    bars = pd.read_csv(SAMPLE / "ohlcv.csv")
    close = bars[bars["item"] == "close"].pivot(index="period", columns="entity",
                                                values="value")
    ret = close / close.shift(1) - 1
    industry = pd.read_csv(SAMPLE / "ohlcv_entities.csv").set_index("code")["industry"]
    want = ret - ret.T.groupby(industry).transform("mean").T
    got = pd.read_csv(pd.io.common.StringIO(cli("export", "ind_ret").stdout))
    got = got.pivot(index="period", columns="entity", values="value")
    assert got.shape == (299, 20)
    np.testing.assert_allclose(got.to_numpy(), want.iloc[1:][got.columns].to_numpy(),
                               rtol=1e-9, atol=1e-15)
