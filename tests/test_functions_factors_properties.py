"""Issue 14's functions on random data with NaN and ties, against two independent sides:

A. ``reference.py`` (the documented semantics, one record at a time): the kernels agree
   *bitwise*, ungrouped and group by group (each group of a period against the reference
   over that group's entities alone), since both follow the documented operation order;
B. pandas (rolling windows, group-bys) and numpy's least squares, written from the pinned
   semantics, at the tolerances named below.

Example counts are bounded: TRACECALC_PROPERTY_EXAMPLES (default 2000) / 10 per property.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import Elementary, Reference
from tracecalc.evaluator import compile_tree
from tracecalc.functions import KERNELS
from tracecalc.model import SIGNATURES
from tracecalc.parser import parse

N = np.nan
EXAMPLES = max(20, int(os.environ.get("TRACECALC_PROPERTY_EXAMPLES", "2000")) // 10)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _quiet(f):
    def call(*args: float) -> float:
        with np.errstate(all="ignore"):
            return float(f(*args))
    return call


# numpy's elementary functions (as in test_reference.py): scalar calls give the kernels' bits.
NUMPY = Elementary(exp=_quiet(np.exp), log=_quiet(np.log), pow=_quiet(np.power),
                   log1p=_quiet(np.log1p), tanh=_quiet(np.tanh))

# Repeated values make ties and flat windows; NaN is frequent; a few extremes reach G1.
POOL = (N,) * 4 + (0.0, 1.0, 2.0, 3.0, -1.0, 0.1, 0.3, -2.5, 7.0, 1e9, 1e-9, 1e200)

TIME_SERIES = [
    "ts_rank(a, {n})", "ts_argmax(a, {n})", "ts_argmin(a, {n})", "ts_quantile(a, {n}, {q})",
    "ts_slope(a, {n})", "ts_rsquare(a, {n})", "ts_resi(a, {n})", "ts_cov(a, b, {n})",
    "ts_product(a, {n})", "ts_skew(a, {n})", "ts_kurt(a, {n})", "decay_linear(a, {n})",
    "ts_count(a, {n})", "signed_power(a, {p})", "log1p(a)", "tanh(a)",
]
CROSS = ["cs_rank(a)", "cs_zscore(a)", "cs_demean(a)", "cs_scale(a, {s})",
         "cs_winsorize(a, {k})", "cs_quantile(a, {n})", "cs_resid(a, b)"]


@st.composite
def panels(draw, max_periods: int = 10, max_entities: int = 7):
    periods = draw(st.integers(1, max_periods))
    entities = draw(st.integers(1, max_entities))
    cell = st.sampled_from(POOL + tuple(draw(st.lists(
        st.floats(-100, 100, allow_nan=False), min_size=1, max_size=3))))
    rows = lambda: [draw(st.lists(cell, min_size=entities, max_size=entities))  # noqa: E731
                    for _ in range(periods)]
    return np.array(rows(), dtype=float), np.array(rows(), dtype=float)


LITERALS = st.fixed_dictionaries({
    "n": st.integers(1, 6), "q": st.sampled_from([0, 0.1, 0.25, 0.5, 0.7, 1]),
    "p": st.sampled_from([0, 0.5, 2, 3, -1, 1.5]), "s": st.sampled_from([1, 2.5, -1]),
    "k": st.sampled_from([0, 0.5, 1, 2.5])})


def reference_panel(text: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    data = {"a": a, "b": b}
    ref = Reference(lambda name, e, t: float(data[name][t, e]), a.shape[0], a.shape[1],
                    {"f": parse(text).tree}, NUMPY)
    return np.array(ref.panel("f"), dtype=float).reshape(a.shape)


def bitwise(got: np.ndarray, want: np.ndarray, text: str) -> None:
    # NaN == NaN and 0.0 == -0.0 (storage keeps 0.0); every other cell the same bits
    np.testing.assert_array_equal(got, want, err_msg=text)


# --- A: the reference --------------------------------------------------------------------------

@SETTINGS
@given(data=panels(), fn=st.sampled_from(TIME_SERIES + CROSS), lit=LITERALS)
def test_kernels_equal_the_reference_bitwise(data, fn, lit):
    a, b = data
    text = fn.format(**lit)
    got = compile_tree(parse(text).tree)(a, b) if "b" in text else compile_tree(
        parse(text).tree)(a)
    assert not np.isinf(got).any()
    bitwise(got, reference_panel(text, a, b), text)


@SETTINGS
@given(data=panels(max_entities=9), fn=st.sampled_from(CROSS), lit=LITERALS,
       codes=st.lists(st.integers(-1, 3), min_size=9, max_size=9))
def test_groups_equal_the_reference_group_by_group(data, fn, lit, codes):
    a, b = data
    codes = np.array(codes[: a.shape[1]], dtype=np.int64)
    text = fn.format(**lit)
    tree = parse(text).tree
    args = [a, b] if "b" in text else [a]
    spec = SIGNATURES[tree.func]
    literals = [float(v.value) if p.real else int(v.value)
                for p, v in zip(spec.params[len(args):], tree.args[len(args):], strict=True)]
    got = KERNELS[tree.func](*args, *literals, groups=codes)
    want = np.full(a.shape, N)
    for code in set(codes.tolist()) - {-1}:
        cols = np.flatnonzero(codes == code)
        sub = reference_panel(text, a[:, cols], b[:, cols])
        present = ~np.isnan(a[:, cols]) & (~np.isnan(b[:, cols]) if "b" in text else True)
        enough = present.sum(axis=1, keepdims=True) >= 2  # a group of fewer gives NaN
        want[:, cols] = np.where(enough, sub, N)
    bitwise(got, want, f"{text} groups={codes.tolist()}")


# --- B: pandas and numpy --------------------------------------------------------------------

def _random(seed: int, shape=(120, 6), ties: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 3, size=shape)
    if ties:
        x = np.round(x)  # many ties, a few flat windows
    x[rng.random(shape) < 0.05] = N
    return x


def _rolling(x: np.ndarray, n: int, how) -> np.ndarray:
    """pandas' rolling window with min_periods = n: NaN unless all n values are present,
    the documented window rule."""
    return np.column_stack([how(pd.Series(x[:, e]).rolling(n)) for e in range(x.shape[1])])


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 3, 10])
def test_order_statistics_match_pandas(seed, n):
    x = _random(seed)
    # ranks and positions are exact: compared bitwise
    bitwise(KERNELS["ts_rank"](x, n), _rolling(x, n, lambda r: r.rank(pct=True)), "ts_rank")
    for fn, arg in (("ts_argmax", np.argmax), ("ts_argmin", np.argmin)):
        want = _rolling(x, n, lambda r, arg=arg: r.apply(lambda w: arg(w) + 1.0, raw=True))
        bitwise(KERNELS[fn](x, n), want, fn)
    for q in (0.0, 0.3, 0.5, 1.0):  # the same interpolation, the same operation order
        bitwise(KERNELS["ts_quantile"](x, n, q), _rolling(x, n, lambda r, q=q: r.quantile(q)),
                "ts_quantile")


# pandas' rolling moments update running sums (with Kahan compensation) instead of summing
# deviations per window: 1e-9 relative, plus 1e-9 absolute for moments that cancel to ~0.
MOMENTS = {"rtol": 1e-9, "atol": 1e-9, "equal_nan": True}


@pytest.mark.parametrize("seed", [4, 5])
@pytest.mark.parametrize("n", [4, 5, 20])
def test_moments_match_pandas(seed, n):
    x, y = _random(seed), _random(seed + 100)
    np.testing.assert_allclose(KERNELS["ts_skew"](x, n), _rolling(x, n, lambda r: r.skew()),
                               **MOMENTS)
    np.testing.assert_allclose(KERNELS["ts_kurt"](x, n), _rolling(x, n, lambda r: r.kurt()),
                               **MOMENTS)
    cov = np.column_stack([pd.Series(x[:, e]).rolling(n).cov(pd.Series(y[:, e]))
                           for e in range(x.shape[1])])
    np.testing.assert_allclose(KERNELS["ts_cov"](x, y, n), cov, **MOMENTS)


@pytest.mark.parametrize("n", [2, 3, 12])
def test_least_squares_on_time_match_numpy_polyfit(n):
    x = _random(7, ties=False)
    t = np.arange(1.0, n + 1)

    def fit(w, what):
        slope, intercept = np.polyfit(t, w, 1)
        if what == "slope":
            return slope
        if what == "resi":
            return w[-1] - (intercept + slope * n)
        return np.corrcoef(t, w)[0, 1] ** 2

    # polyfit solves by SVD, another order of operations: 1e-9 relative, and 1e-9 absolute
    # for residuals near 0
    for fn, what in (("ts_slope", "slope"), ("ts_resi", "resi"), ("ts_rsquare", "r2")):
        want = _rolling(x, n, lambda r, what=what: r.apply(lambda w: fit(w, what), raw=True))
        np.testing.assert_allclose(KERNELS[fn](x, n), want, rtol=1e-9, atol=1e-9,
                                   equal_nan=True, err_msg=fn)


@pytest.mark.parametrize("n", [1, 4, 10])
def test_products_and_weighted_means_match_pandas(n):
    x = _random(8) / 10
    w = np.arange(1.0, n + 1)
    # np.dot and np.prod sum/multiply in their own order: 1e-12 relative
    np.testing.assert_allclose(
        KERNELS["decay_linear"](x, n),
        _rolling(x, n, lambda r: r.apply(lambda v: np.dot(w, v) / w.sum(), raw=True)),
        rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(KERNELS["ts_product"](x, n),
                               _rolling(x, n, lambda r: r.apply(np.prod, raw=True)),
                               rtol=1e-12, equal_nan=True)
    cond = np.where(np.isnan(x), N, (x > 1.0).astype(float))
    # a missing value is not true; a window with nothing present is NaN
    true = _rolling(np.where(cond == 1.0, 1.0, 0.0), n, lambda r: r.sum())
    seen = _rolling((~np.isnan(cond)).astype(float), n, lambda r: r.sum()) > 0
    bitwise(KERNELS["ts_count"](cond, n), np.where(seen, true, N), "ts_count")


def test_cross_sections_match_pandas_within_groups():
    x = _random(9, shape=(50, 12))
    y = _random(10, shape=(50, 12))
    codes = np.array([0, 1, 0, 2, 1, 0, -1, 2, 1, 1, 0, 3])  # group 3 has one member
    frame = pd.DataFrame(x.T)  # entities x periods
    key = pd.Series(codes)
    mask = pd.DataFrame(~np.isnan(x.T)).groupby(key).transform("sum").to_numpy().T >= 2
    mask &= (codes >= 0)[None, :]

    def grouped(how) -> np.ndarray:
        return np.where(mask, how(frame.groupby(key)).to_numpy().T, N)

    # the paper's indneutralize: within-group demeaning; 1e-12 relative (pandas' mean)
    demean = grouped(lambda g: frame - g.transform("mean"))
    np.testing.assert_allclose(KERNELS["cs_demean"](x, groups=codes), demean, rtol=1e-12,
                               atol=1e-12, equal_nan=True)
    bitwise(KERNELS["cs_rank"](x, groups=codes), grouped(lambda g: g.rank(pct=True)),
            "cs_rank")
    std = grouped(lambda g: g.transform(lambda c: c.std(ddof=0)))
    mean = grouped(lambda g: g.transform("mean"))
    with np.errstate(invalid="ignore"):  # a flat group: 0 / 0, NaN on both sides
        zscore = np.where(std > 0, (x - mean) / std, N)
    np.testing.assert_allclose(KERNELS["cs_zscore"](x, groups=codes), zscore,
                               rtol=1e-12, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(KERNELS["cs_winsorize"](x, 1.0, groups=codes),
                               np.clip(x, mean - std, mean + std), rtol=1e-12, equal_nan=True)
    absum = grouped(lambda g: frame.abs().groupby(key).transform("sum"))
    np.testing.assert_allclose(KERNELS["cs_scale"](x, 2.0, groups=codes), x / absum * 2,
                               rtol=1e-12, equal_nan=True)
    # cs_resid against numpy's least squares, period by period and group by group
    want = np.full(x.shape, N)
    for t in range(x.shape[0]):
        for code in (0, 1, 2):
            cols = np.flatnonzero((codes == code) & ~np.isnan(x[t]) & ~np.isnan(y[t]))
            if len(cols) >= 2 and np.ptp(x[t, cols]) > 0:
                design = np.column_stack([np.ones(len(cols)), x[t, cols]])
                beta = np.linalg.lstsq(design, y[t, cols], rcond=None)[0]
                want[t, cols] = y[t, cols] - design @ beta
    np.testing.assert_allclose(KERNELS["cs_resid"](y, x, groups=codes), want, rtol=1e-9,
                               atol=1e-9, equal_nan=True)
    assert math.isnan(KERNELS["cs_rank"](x, groups=codes)[0, 11])  # the lone member
