"""The Alpha158 catalog (sample_data/catalogs/alpha158.yaml) over the daily OHLCV sample.

Loaded as a user would (``tracecalc load-data`` / ``load-formulas`` on SQLite; ``Engine`` on
every database), recalculated, and checked against an independent pandas computation written
from Qlib's definitions (qlib/data/ops.py, qlib/contrib/data/loader.py): rolling windows
per entity on the weekday grid, compared after the warm-up (the longest window, 60, plus the
one-day lag of the difference features).

The Alpha101 catalog (sample_data/catalogs/alpha101.yaml) likewise: the whole catalog
recalculated through the CLI on SQLite (20 entities) and with ``Engine`` on every database
(5 entities), 16 alphas checked against pandas written from the paper's definitions
(Kakushadze 2016), every day compared, warm-ups and missing values included.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE

CATALOG = SAMPLE / "catalogs" / "alpha158.yaml"
OHLCV = SAMPLE / "ohlcv.csv"
DAILY = {k: "daily" for k in ("open", "high", "low", "close", "volume", "vwap")}
WARM_UP = 61  # rows of each entity before every feature is defined
ENTITIES = ("ARVN", "BXTL", "CDMR")  # the database matrix runs on three entities


def _bars(entities=None) -> pd.DataFrame:
    df = pd.read_csv(OHLCV, parse_dates=["period"])
    if entities is not None:
        df = df[df["entity"].isin(entities)]
    return df


def _rolling_apply(s: pd.Series, n: int, f) -> pd.Series:
    return s.rolling(n).apply(f, raw=True)


def _slope(y: np.ndarray) -> float:
    return np.polyfit(np.arange(1, len(y) + 1), y, 1)[0]


def _rsquare(y: np.ndarray) -> float:
    return np.corrcoef(np.arange(1, len(y) + 1), y)[0, 1] ** 2


def _resi(y: np.ndarray) -> float:
    t = np.arange(1, len(y) + 1)
    b, a = np.polyfit(t, y, 1)
    return y[-1] - (a + b * t[-1])


def qlib_reference(bars: pd.DataFrame) -> pd.DataFrame:
    """Qlib's definitions, one entity at a time: Std ddof=1, Rank = rolling rank in pct
    (Qlib's current ops.py), IdxMax/IdxMin = argmax/argmin + 1, Greater = max."""
    out = []
    wide = bars.pivot_table(index=["entity", "period"], columns="item", values="value")
    for code, g in wide.groupby(level="entity"):
        g = g.droplevel("entity").sort_index()
        o, h, lo, c, v, w = (g[k] for k in ("open", "high", "low", "close", "volume", "vwap"))
        dc = c - c.shift(1)
        wv = (c / c.shift(1) - 1).abs() * v
        f = pd.DataFrame(index=g.index)
        f["KMID"] = (c - o) / o
        f["KLEN"] = (h - lo) / o
        f["KSFT2"] = (2 * c - h - lo) / (h - lo + 1e-12)
        f["KUP"] = (h - np.maximum(o, c)) / o
        f["VWAP0"] = w / c
        f["ROC5"] = c.shift(5) / c
        f["MA30"] = c.rolling(30).mean() / c
        f["STD20"] = c.rolling(20).std() / c
        f["BETA10"] = _rolling_apply(c, 10, _slope) / c
        f["RSQR20"] = _rolling_apply(c, 20, _rsquare)
        f["RESI5"] = _rolling_apply(c, 5, _resi) / c
        f["MAX60"] = h.rolling(60).max() / c
        f["QTLU10"] = c.rolling(10).quantile(0.8) / c
        f["QTLD20"] = c.rolling(20).quantile(0.2) / c
        f["RANK5"] = c.rolling(5).rank(pct=True)
        f["RSV10"] = (c - lo.rolling(10).min()) / (h.rolling(10).max() - lo.rolling(10).min()
                                                   + 1e-12)
        imax = _rolling_apply(h, 10, lambda x: np.argmax(x) + 1)
        imin = _rolling_apply(lo, 10, lambda x: np.argmin(x) + 1)
        f["IMXD10"] = (imax - imin) / 10
        f["CORR20"] = c.rolling(20).corr(np.log(v + 1))
        f["CORD10"] = (c / c.shift(1)).rolling(10).corr(np.log(v / v.shift(1) + 1))
        f["CNTP5"] = (c > c.shift(1)).astype(float).rolling(5).mean()
        up, down = (c > c.shift(1)).astype(float), (c < c.shift(1)).astype(float)
        f["CNTD20"] = up.rolling(20).mean() - down.rolling(20).mean()
        f["SUMP10"] = dc.clip(lower=0).rolling(10).sum() / (dc.abs().rolling(10).sum() + 1e-12)
        dv = v - v.shift(1)
        f["VSUMD30"] = ((dv.clip(lower=0).rolling(30).sum()
                         - (-dv).clip(lower=0).rolling(30).sum())
                        / (dv.abs().rolling(30).sum() + 1e-12))
        f["VSTD5"] = v.rolling(5).std() / (v + 1e-12)
        f["WVMA20"] = wv.rolling(20).std() / (wv.rolling(20).mean() + 1e-12)
        f = f.iloc[WARM_UP:]
        f["entity"] = code
        out.append(f.reset_index())
    return pd.concat(out).melt(id_vars=["entity", "period"], var_name="formula")


def _check(eng, bars: pd.DataFrame) -> None:
    names = set(eng.formulas(canonical=False)["name"])
    assert len(names) == 158
    status = eng.status()
    assert status["stale"] == []
    ref = qlib_reference(bars)
    features = sorted(set(ref["formula"]))
    assert len(features) >= 14 and set(features) <= names
    got = eng.export(features)
    got["period"] = pd.to_datetime(got["period"])
    both = ref.merge(got, on=["formula", "entity", "period"], how="left",
                     suffixes=("_ref", "_tc"))
    assert len(both) == len(features) * bars["entity"].nunique() * (300 - WARM_UP)
    assert both["value_ref"].notna().all()
    assert both["value_tc"].notna().all(), both[both["value_tc"].isna()].head()
    for name, g in both.groupby("formula"):
        np.testing.assert_allclose(g["value_tc"], g["value_ref"], rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_alpha158_has_158_named_features():
    from tracecalc.storage.files import read_formulas

    rows = read_formulas(CATALOG)
    assert len(rows) == 158
    names = [r["name"] for r in rows]
    assert names[:13] == ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT",
                          "KSFT2", "OPEN0", "HIGH0", "LOW0", "VWAP0"]
    ops = ["ROC", "MA", "STD", "BETA", "RSQR", "RESI", "MAX", "MIN", "QTLU", "QTLD", "RANK",
           "RSV", "IMAX", "IMIN", "IMXD", "CORR", "CORD", "CNTP", "CNTN", "CNTD", "SUMP",
           "SUMN", "SUMD", "VMA", "VSTD", "WVMA", "VSUMP", "VSUMN", "VSUMD"]
    assert names[13:] == [f"{op}{d}" for op in ops for d in (5, 10, 20, 30, 60)]


def test_alpha158_through_the_cli_on_sqlite(cli, tmp_path):
    from tracecalc.engine import Engine

    cli("load-data", str(OHLCV))
    res = cli("load-formulas", str(CATALOG))
    assert "158 formulas (158 new" in res.output
    cli("recalc")
    eng = Engine(cli.db, user="tester")
    try:
        assert all(eng.item(k).frequency == "daily" for k in DAILY)
        _check(eng, _bars())
        # every feature has a value for every entity and day after the warm-up
        allv = eng.export(sorted(eng.formulas(canonical=False)["name"]))
        allv = allv[pd.to_datetime(allv["period"]) >= _bars()["period"].sort_values()
                    .unique()[WARM_UP]]
        counts = allv.dropna(subset=["value"]).groupby("formula").size()
        assert len(counts) == 158 and (counts == 20 * (300 - WARM_UP)).all(), \
            counts[counts != 20 * (300 - WARM_UP)]
    finally:
        eng.close()


def test_alpha158_on_every_database(engine):
    from tracecalc.storage.files import read_formulas

    bars = _bars(ENTITIES)
    engine.load_data(bars.assign(period=bars["period"].dt.strftime("%Y-%m-%d")),
                     frequencies=DAILY)
    engine.set_formulas(read_formulas(CATALOG))
    engine.recalc()
    _check(engine, bars)


@pytest.mark.parametrize("name", ["CNTP5", "CNTN60"])
def test_counts_are_shares_of_days(sqlite_engine, name):
    # a comparison is 1.0 or 0.0, so ts_mean over it is a share of days in [0, 1]
    from tracecalc.storage.files import read_formulas

    bars = _bars(ENTITIES[:1])
    sqlite_engine.load_data(bars.assign(period=bars["period"].dt.strftime("%Y-%m-%d")),
                            frequencies=DAILY)
    sqlite_engine.set_formulas([r for r in read_formulas(CATALOG) if r["name"] == name])
    sqlite_engine.recalc()
    v = sqlite_engine.records(name)["value"]
    n = int(name[4:])
    assert len(v) == 300 - n
    assert np.allclose(v * n, np.round(v * n)) and v.between(0, 1).all()


# --------------------------------------------------------------------------------------------
# The 101 Formulaic Alphas (sample_data/catalogs/alpha101.yaml)
#
# The reference below is written from the paper's definitions (Kakushadze 2016, Appendix A)
# on wide frames (period x entity), with the conventions docs/formula-language.md pins:
# rank = cross-sectional percentile rank (ties averaged); ts_rank = pandas' rolling rank in
# pct; ts_argmax = numpy's argmax + 1 (1 = the window's oldest day); decay_linear weights
# d, d-1, ..., 1 from today back, normalised; correlation missing over a constant window;
# x ? a : b missing where x is; NaN in, NaN out (G2); non-integer windows floored; adv{d}
# the mean dollar volume. Window sums, deviation sums, decay_linear and product run oldest
# first, as the language adds them, so that values that are equal in exact arithmetic
# (a covariance of a constant window, 0) rank the same on both sides.

ALPHA101 = SAMPLE / "catalogs" / "alpha101.yaml"


def _rank(x):
    return x.rank(axis=1, pct=True)


def _fold(x, d, step):
    """out = x[t-d+1]; out = step(out, x[t-d+1+j], j) for j = 1 .. d-1: oldest first."""
    a = x.to_numpy()
    n = len(a)
    out = np.full(a.shape, np.nan)
    if d <= n:
        acc = step(None, a[: n - d + 1], 0)
        for j in range(1, d):
            acc = step(acc, a[j : n - d + 1 + j], j)
        out[d - 1 :] = acc
    return pd.DataFrame(out, index=x.index, columns=x.columns)


def _sum(x, d):
    """Window sum added oldest first (docs/formula-language.md: Time series)."""
    return _fold(x, d, lambda acc, v, j: v if acc is None else acc + v)


def _dev_sum(x, y, d):
    """sum((x_i - mx) * (y_i - my)) over the window, oldest first, means = sum / d."""
    mx, my = (_sum(x, d) / d).to_numpy(), (_sum(y, d) / d).to_numpy()
    a, b = x.to_numpy(), y.to_numpy()
    out = np.full(a.shape, np.nan)
    for t0 in range(d):  # window position t0 = 0 is the oldest
        lo, hi = t0, len(a) - d + 1 + t0
        p = (a[lo:hi] - mx[d - 1 :]) * (b[lo:hi] - my[d - 1 :])
        out[d - 1 :] = p if t0 == 0 else out[d - 1 :] + p
    return pd.DataFrame(out, index=x.index, columns=x.columns)


def _stddev(x, d):
    return np.sqrt(_dev_sum(x, x, d) / (d - 1))


def _cov(x, y, d):
    return _dev_sum(x, y, d) / (d - 1)


def _corr(x, y, d):
    """Pearson correlation; missing where either side is constant over the window."""
    const = ((x.rolling(d).max() == x.rolling(d).min())
             | (y.rolling(d).max() == y.rolling(d).min()))
    return (_dev_sum(x, y, d) / np.sqrt(_dev_sum(x, x, d) * _dev_sum(y, y, d))).mask(const)


def _ts_rank(x, d):
    return x.rolling(d).rank(pct=True)


def _windows(x, d):
    """Each day's last d values (period x entity x d, oldest first); NaN rows before d."""
    from numpy.lib.stride_tricks import sliding_window_view

    a = np.vstack([np.full((d - 1, x.shape[1]), np.nan), x.to_numpy()])
    return sliding_window_view(a, d, axis=0)


def _arg(x, d, f):
    w = _windows(x, d)
    pos = f(np.where(np.isnan(w), 0.0, w), axis=-1) + 1.0  # 1 = the window's oldest day
    return pd.DataFrame(np.where(np.isnan(w).any(axis=-1), np.nan, pos), index=x.index,
                        columns=x.columns)


def _ts_argmax(x, d):
    return _arg(x, d, np.argmax)  # numpy's argmax: the first of equal largest values


def _ts_argmin(x, d):
    return _arg(x, d, np.argmin)


def _decay_linear(x, d):
    """sum(i * x_i) / (d (d + 1) / 2), i = 1 for the oldest to d for today, oldest first."""
    s = _fold(x, d, lambda acc, v, j: 1 * v if acc is None else acc + (j + 1) * v)
    return s / (d * (d + 1) / 2)


def _product(x, d):
    return _fold(x, d, lambda acc, v, j: v if acc is None else acc * v)


def _scale(x):
    return x.div(x.abs().sum(axis=1), axis=0)


def _pow(x, a):
    """x ** a, missing where either is (numpy's 1 ** nan is 1; the language's G2 says NaN)."""
    out = x ** a
    return out.mask(x.isna() | a.isna()) if isinstance(a, pd.DataFrame) else out


def _signedpower(x, a):
    return np.sign(x) * _pow(np.abs(x), a)


def _when(c, a, b):
    """The paper's c ? a : b, missing where c is."""
    out = pd.DataFrame(np.where(c.fillna(0.0).to_numpy() != 0, a, b), index=c.index,
                       columns=c.columns)
    return out.mask(c.isna())


def _cmp(op, a, b):
    """a < b (and the like) as 1.0 / 0.0, missing where either side is."""
    a = a if isinstance(a, pd.DataFrame) else pd.DataFrame(a, index=b.index, columns=b.columns)
    b = b if isinstance(b, pd.DataFrame) else pd.DataFrame(b, index=a.index, columns=a.columns)
    return op(a, b).astype(float).mask(a.isna() | b.isna())


def alpha101_reference(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Some of the alphas straight from the paper, each a (period x entity) frame."""
    import operator as op

    wide = {k: g.pivot(index="period", columns="entity", values="value").sort_index()
            for k, g in bars.groupby("item")}
    o, h, lo, c, v, vwap = (wide[k] for k in ("open", "high", "low", "close", "volume", "vwap"))
    returns = c / c.shift(1) - 1

    def adv(d):
        return _sum(c * v, d) / d

    stddev, s = _stddev, _sum

    a = {}
    a["alpha001"] = _rank(_ts_argmax(_signedpower(
        _when(_cmp(op.lt, returns, 0), stddev(returns, 20), c), 2.0), 5)) - 0.5
    a["alpha004"] = -1 * _ts_rank(_rank(lo), 9)
    a["alpha013"] = -1 * _rank(_cov(_rank(c), _rank(v), 5))
    m8, sd8, m2, rv = s(c, 8) / 8, stddev(c, 8), s(c, 2) / 2, v / adv(20)
    a["alpha021"] = _when(_cmp(op.lt, m8 + sd8, m2), -1.0,
                          _when(_cmp(op.lt, m2, m8 - sd8), 1.0,
                                _when(_cmp(op.ge, rv, 1), 1.0, -1.0)))
    a["alpha028"] = _scale(_corr(adv(20), lo, 5) + (h + lo) / 2 - c)
    inner = _rank(_rank(-1 * _rank((c - 1).diff(5))))
    a["alpha029"] = (_product(_rank(_rank(_scale(np.log(s(inner.rolling(2).min(), 1))))), 1)
                     .rolling(5).min() + _ts_rank((-1 * returns).shift(6), 5))
    a["alpha039"] = ((-1 * _rank(c.diff(7) * (1 - _rank(_decay_linear(v / adv(20), 9)))))
                     * (1 + _rank(s(returns, 250))))
    trend = (c.shift(20) - c.shift(10)) / 10 - (c.shift(10) - c) / 10
    a["alpha046"] = _when(_cmp(op.lt, 0.25, trend), -1.0,
                          _when(_cmp(op.lt, trend, 0), 1.0, -1 * (c - c.shift(1))))
    a["alpha057"] = -1 * ((c - vwap) / _decay_linear(_rank(_ts_argmax(c, 30)), 2))
    a["alpha060"] = -1 * (2 * _scale(_rank((((c - lo) - (h - c)) / (h - lo)) * v))
                          - _scale(_rank(_ts_argmax(c, 10))))
    a["alpha071"] = np.maximum(
        _ts_rank(_decay_linear(_corr(_ts_rank(c, 3), _ts_rank(adv(180), 12), 18), 4), 15),
        _ts_rank(_decay_linear(_rank((lo + o) - (vwap + vwap)) ** 2, 16), 4))
    a["alpha081"] = -1 * _cmp(
        op.lt, _rank(np.log(_product(_rank(_rank(_corr(vwap, s(adv(10), 49), 8)) ** 4), 14))),
        _rank(_corr(_rank(vwap), _rank(v), 5)))
    a["alpha084"] = _signedpower(_ts_rank(vwap - vwap.rolling(15).max(), 20), c.diff(4))
    a["alpha085"] = _pow(_rank(_corr(h * 0.876703 + c * (1 - 0.876703), adv(30), 9)),
                         _rank(_corr(_ts_rank((h + lo) / 2, 3), _ts_rank(v, 10), 7)))
    a["alpha098"] = (_rank(_decay_linear(_corr(vwap, s(adv(5), 26), 4), 7))
                     - _rank(_decay_linear(_ts_rank(_ts_argmin(
                         _corr(_rank(o), _rank(adv(15)), 20), 8), 6), 8)))
    a["alpha101"] = (c - o) / ((h - lo) + 0.001)
    return a


def _check_alpha101(eng, bars: pd.DataFrame) -> None:
    ref = alpha101_reference(bars)
    got = eng.export(sorted(ref))
    got["period"] = pd.to_datetime(got["period"])
    for name, want in ref.items():
        want = want.replace([np.inf, -np.inf], np.nan)  # the language's G1
        have = (got[got["formula"] == name].pivot(index="period", columns="entity",
                                                  values="value")
                .reindex(index=want.index, columns=want.columns))
        # every day, warm-up included: both are missing until their windows fill
        assert want.notna().to_numpy().sum() >= 50, name  # not (nearly) all missing
        np.testing.assert_array_equal(have.isna().to_numpy(), want.isna().to_numpy(),
                                      err_msg=name)
        np.testing.assert_allclose(have.to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_alpha101_catalog_lists_every_alpha_once():
    from tracecalc.storage.files import read_formulas

    here = [r["name"] for r in read_formulas(ALPHA101)]
    industry = [r["name"] for r in read_formulas(SAMPLE / "catalogs" / "alpha101_industry.yaml")]
    helpers = ["returns"] + [f"adv{d}" for d in (5, 10, 15, 20, 30, 40, 50, 60, 81, 120, 150,
                                                  180)]
    assert here[:13] == helpers
    alphas = here[13:] + industry
    assert len(alphas) == 100 and sorted(alphas) == [f"alpha{n:03d}" for n in range(1, 102)
                                                     if n != 56]
    assert len(industry) == 18
    assert all("by=" in r["expression"] for r in read_formulas(SAMPLE / "catalogs"
                                                               / "alpha101_industry.yaml"))
    # the header lists what is not here, and why
    header = ALPHA101.read_text().split("formulas:")[0]
    assert "Alpha#56" in header and "48, 58, 59, 63" in header


def test_alpha101_through_the_cli_on_sqlite(cli):
    from tracecalc.engine import Engine

    cli("load-data", str(OHLCV))
    res = cli("load-formulas", str(ALPHA101))
    assert "95 formulas (95 new" in res.output
    cli("recalc")
    eng = Engine(cli.db, user="tester")
    try:
        assert eng.status()["stale"] == []
        _check_alpha101(eng, _bars())
        # every alpha has values but Alpha#96: both its correlations are over 3 days of
        # ranks (of vwap and volume among 20 stocks; of a 4-day ts_rank of the smooth adv60),
        # often constant over 3 days, so missing, and its decay_linear and ts_rank need 11
        # and 25 days of them in a row
        with eng.store.transaction(write=False) as conn:  # cheaper than export of all
            counts = {r.name: len(eng.store.read_records(conn, r.id)[2])
                      for r in eng.store.formula_rows(conn)}
        assert len(counts) == 95 and sum(counts.values()) == eng.status()["records"]
        assert [name for name, n in counts.items() if n == 0] == ["alpha096"]
    finally:
        eng.close()


def test_alpha101_on_every_database(engine):
    # the whole catalog on five entities (cross-sections of five), checked as on SQLite
    from tracecalc.storage.files import read_formulas

    bars = _bars(("ARVN", "BXTL", "CDMR", "DLQS", "EVRA"))
    engine.load_data(bars.assign(period=bars["period"].dt.strftime("%Y-%m-%d")),
                     frequencies=DAILY)
    engine.set_formulas(read_formulas(ALPHA101))
    engine.recalc()
    assert engine.status()["stale"] == []
    _check_alpha101(engine, bars)


def test_alpha101_industry_alphas_load_and_match_the_paper(sqlite_engine):
    # catalogs/alpha101_industry.yaml groups by the attributes of ohlcv_entities.csv (the
    # paper's indneutralize(x, IndClass.g) is cs_demean(x, by=g)) and reads the helpers of
    # alpha101.yaml; every alpha loads and computes, two are checked against pandas
    from tracecalc.storage.files import read_formulas

    industry = read_formulas(SAMPLE / "catalogs" / "alpha101_industry.yaml")
    for r in industry:
        groups = re.findall(r", by=(\w+)\)", r["expression"])
        assert groups and set(groups) <= {"sector", "industry", "subindustry"}, r["name"]
    eng = sqlite_engine
    eng.load_entities(SAMPLE / "ohlcv_entities.csv")
    eng.load_data(OHLCV)
    eng.set_formulas(read_formulas(ALPHA101))
    eng.set_formulas(industry)
    eng.recalc()
    assert eng.status()["stale"] == []
    counts = {r["name"]: len(eng.records(r["name"])) for r in industry}
    assert min(counts.values()) > 500, counts

    bars = _bars()
    wide = {k: g.pivot(index="period", columns="entity", values="value").sort_index()
            for k, g in bars.groupby("item")}
    c, v, vwap = wide["close"], wide["volume"], wide["vwap"]
    attrs = pd.read_csv(SAMPLE / "ohlcv_entities.csv").set_index("code")

    def indneutralize(x, g):  # x less its group's mean each day (every group has 2 or more)
        return x - x.T.groupby(attrs[g]).transform("mean").T

    adv50 = _sum(c * v, 50) / 50
    ref = {
        "alpha058": -1 * _ts_rank(_decay_linear(_corr(indneutralize(vwap, "sector"), v, 3), 7),
                                  5),
        "alpha070": np.exp(_ts_rank(_corr(indneutralize(c, "industry"), adv50, 17), 17)
                           * np.log(_rank(vwap - vwap.shift(1)))) * -1,
    }
    got = eng.export(sorted(ref))
    got["period"] = pd.to_datetime(got["period"])
    for name, want in ref.items():
        have = (got[got["formula"] == name].pivot(index="period", columns="entity",
                                                  values="value")
                .reindex(index=want.index, columns=want.columns))
        assert want.notna().to_numpy().sum() >= 1000, name
        np.testing.assert_array_equal(have.isna().to_numpy(), want.isna().to_numpy(),
                                      err_msg=name)
        np.testing.assert_allclose(have.to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
