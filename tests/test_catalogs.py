"""The Alpha158 catalog (sample_data/catalogs/alpha158.yaml) over the daily OHLCV sample.

Loaded as a user would (``tracecalc load-data`` / ``load-formulas`` on SQLite; ``Engine`` on
every database), recalculated, and checked against an independent pandas computation written
from Qlib's definitions (qlib/data/ops.py, qlib/contrib/data/loader.py): rolling windows
per entity on the weekday grid, compared after the warm-up (the longest window, 60, plus the
one-day lag of the difference features).
"""

from __future__ import annotations

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
