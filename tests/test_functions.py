"""Golden tests for the kernels: hand-checked literals for every function and its edges."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tracecalc
from panels import N, _no_warnings, col, panel, same  # noqa: F401
from tracecalc import functions as F
from tracecalc.functions import KERNELS
from tracecalc.model import SIGNATURES

INF = np.inf


# --- the table and the module ---------------------------------------------------------------

def test_one_kernel_per_signature():
    assert set(KERNELS) == set(SIGNATURES)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_literal_defaults_match_model(name):
    spec = SIGNATURES[name]
    params = list(inspect.signature(KERNELS[name]).parameters.values())
    # Cross-sectional kernels also take the keyword-only groups (no formula parameter).
    keyword_only = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    params = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    if spec.kind == "cross_sectional":
        assert [(p.name, p.default) for p in keyword_only] == [("groups", None)]
    else:
        assert keyword_only == []
    if spec.variadic:
        assert params[-1].kind is inspect.Parameter.VAR_POSITIONAL
        return
    assert len(params) == len(spec.params)
    for p, sp in zip(params, spec.params, strict=True):
        expected = inspect.Parameter.empty if sp.default is None else sp.default
        assert p.default == expected, (name, sp.name)


def test_imports_numpy_only():
    src = Path(tracecalc.__file__).resolve().parents[1]
    code = (
        "import sys, tracecalc.functions; "
        "bad = [m for m in ('pandas', 'sqlalchemy', 'tracecalc.parser', 'tracecalc.graph') "
        "if m in sys.modules]; print(bad)"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "[]"


def _args_for(name: str, x: np.ndarray, y: np.ndarray) -> tuple:
    spec = SIGNATURES[name]
    if spec.variadic:
        return (x, y, x * 2)
    args = []
    for i, p in enumerate(spec.params):
        if p.literal:
            # 2, or the nearest bound (ts_quantile's q is at most 1)
            args.append(p.default if p.default is not None else min(max(2, p.lo), p.hi))
        else:
            args.append(x if i % 2 == 0 else y)
    return tuple(args)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_pure_new_float64_and_finite(name):
    x = panel([[1e300, -2, N, 0], [3, 1e300, 0, -1], [-5, 0, 7, 1e-300], [2, 2, 2, N]])
    y = panel([[0, 1e300, 1, -1e300], [N, 2, -1, 0], [1e-300, 4, 0, 3], [0, 2, 5, 1]])
    x0, y0 = x.copy(), y.copy()
    r = KERNELS[name](*_args_for(name, x, y))
    assert isinstance(r, np.ndarray) and r.dtype == np.float64 and r.shape == x.shape
    assert not np.isinf(r).any()
    assert not np.shares_memory(r, x) and not np.shares_memory(r, y)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("name", sorted(n for n, s in SIGNATURES.items()
                                        if s.kind in ("timeseries", "cross_sectional")))
def test_series_functions_need_a_panel(name):
    with pytest.raises(ValueError, match="panel"):
        KERNELS[name](*_args_for(name, np.ones(4), np.ones(4)))


def test_literal_params_are_checked():
    x = col(1, 2, 3)
    with pytest.raises(ValueError):
        KERNELS["lag"](x, 0)
    with pytest.raises(ValueError):
        KERNELS["round"](x, 16)
    with pytest.raises(TypeError):
        KERNELS["ts_sum"](x, 2.0)
    with pytest.raises(TypeError):
        KERNELS["ts_std"](x, 2, True)


# --- operators ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        (F.truediv, [1, 0, -1, N, 6, 1], [0, 0, 0, 2, 3, N], [N, N, N, N, 2, N]),
        (F.truediv, [1e300], [1e-300], [N]),  # overflow
        (F.mul, [1e300, 2, N], [1e300, 3, 0], [N, 6, N]),
        (F.add, [1.7e308, 1, N], [1.7e308, 2, 1], [N, 3, N]),
        (F.sub, [-1.7e308, 5, 0], [1.7e308, 7, N], [N, -2, N]),
        (F.power, [2, -2, 4, -8, 0, 10, N, 1, 0], [3, 3, 0.5, 1 / 3, -1, 400, 0, N, 0],
         [8, -8, 2, N, N, N, N, N, 1]),
    ],
)
def test_arithmetic(op, a, b, expected):
    same(op(np.array(a, float), np.array(b, float)), expected)


def test_neg_and_scalars():
    same(F.neg(np.array([1, -2, N])), [-1, 2, N])
    same(F.truediv(1.0, 0.0), N)
    same(F.add(np.array([1.0, 2.0]), 1.0), [2, 3])


def test_finite():
    same(F.finite(np.array([1, INF, -INF, N])), [1, N, N, N])
    same(F.finite(float("inf")), N)
    same(F.finite(2.5), 2.5)


_CA = [1, 2, 3, N, 1, N]
_CB = [2, 2, 2, 1, N, N]


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (F.lt, [1, 0, 0, N, N, N]),
        (F.le, [1, 1, 0, N, N, N]),
        (F.gt, [0, 0, 1, N, N, N]),
        (F.ge, [0, 1, 1, N, N, N]),
        (F.eq, [0, 1, 0, N, N, N]),
        (F.ne, [1, 0, 1, N, N, N]),
    ],
)
def test_comparisons(op, expected):
    same(op(np.array(_CA, float), np.array(_CB, float)), expected)


# true (any non-zero, here 1, -3 and 0.5), false (0), unknown (NaN): all nine pairs
_KA = [1, 1, 1, 0, 0, 0, N, N, N]
_KB = [-3, 0, N, 0.5, 0, N, 1, 0, N]


def test_kleene_and():
    same(F.and_(np.array(_KA), np.array(_KB)), [1, 0, N, 0, 0, 0, N, 0, N])


def test_kleene_or():
    same(F.or_(np.array(_KA), np.array(_KB)), [1, 1, 1, 1, 0, N, 1, N, N])


def test_kleene_not():
    same(F.not_(np.array([1, -3, 0, N])), [0, 0, 1, N])


# --- element-wise ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "x", "expected"),
    [
        ("abs", [-2, 0, 3, N], [2, 0, 3, N]),
        ("sign", [-2, 0, 3, N, -0.0], [-1, 0, 1, N, 0]),
        ("log", [1, 0, -1, N], [0, N, N, N]),
        ("exp", [0, 1000, -1000, N], [1, N, 0, N]),
        ("sqrt", [4, 2.25, 0, -1, N], [2, 1.5, 0, N, N]),
        ("isnull", [N, 0, 1, -5], [1, 0, 0, 0]),
    ],
)
def test_unary(name, x, expected):
    same(KERNELS[name](col(*x)), col(*expected))


@pytest.mark.parametrize(
    ("x", "d", "expected"),
    [
        (0.5, 0, 1), (-0.5, 0, -1), (2.5, 0, 3), (-2.5, 0, -3), (1.4999, 0, 1), (0.0, 0, 0),
        (1234, -2, 1200), (1250, -2, 1300), (-1250, -2, -1300), (1249, -2, 1200),
        (123.456, 1, 123.5), (0.125, 2, 0.13), (-0.125, 2, -0.13),
        # binary floating point: 1.005 is 1.00499999999999989..., and 1.005*100 stays below
        # 100.5, so it rounds down; 2.675*100 rounds up to exactly 267.5, so it rounds up.
        (1.005, 2, 1.0), (2.675, 2, 2.68),
        (N, 0, N),
        # at 2**52 and beyond every float is an integer: returned unchanged, never overflowed
        (4503599627370497.0, 0, 4503599627370497.0), (1e300, 15, 1e300),
    ],
)
def test_round_half_away_from_zero(x, d, expected):
    same(KERNELS["round"](col(x), d), col(expected))


def test_round_default_digits():
    same(KERNELS["round"](col(1.5, -1.5)), col(2, -2))


def test_min_max():
    a, b, c = col(1, 5, N, 2), col(3, 2, 1, 2), col(0, 9, 0, N)
    same(KERNELS["min"](a, b), col(1, 2, N, 2))
    same(KERNELS["max"](a, b), col(3, 5, N, 2))
    same(KERNELS["min"](a, b, c), col(0, 2, N, N))
    same(KERNELS["max"](a, b, c), col(3, 9, N, N))
    same(KERNELS["max"](a, 0.0), col(1, 5, N, 2))


def test_clip():
    x = col(-5, 5, 15, N, 5, 5)
    lo = col(0, 0, 0, 0, N, 0)
    hi = col(10, 10, 10, 10, 10, N)
    same(KERNELS["clip"](x, lo, hi), col(0, 5, 10, N, N, N))
    same(KERNELS["clip"](col(-1, 0.5, 2), 0.0, 1.0), col(0, 0.5, 1))


def test_if():
    c = col(1, 0, N, -3, 1, 0)
    a = col(10, N, 10, 7, 10, 10)
    b = col(N, 20, 20, 8, 20, N)
    # the branch not taken may be NaN without leaking; a NaN condition gives NaN
    same(KERNELS["if_"](c, a, b), col(10, 20, N, 7, 10, N))
    same(KERNELS["if_"](c, 1.0, 2.0), col(1, 2, N, 1, 1, 2))


# --- missing data ---------------------------------------------------------------------------

def test_coalesce():
    a, b, c = col(N, 1, N, N), col(2, 3, N, N), col(4, 5, 6, N)
    same(KERNELS["coalesce"](a, b, c), col(2, 1, 6, N))
    same(KERNELS["coalesce"](a, 0.0), col(0, 1, 0, 0))


def test_div():
    a = col(6, 1, 0, N, 1, 1e300, -4)
    b = col(3, 0, 0, 1, N, 1e-300, 2)
    same(KERNELS["div"](a, b, 0.0), col(2, 0, 0, 0, 0, 0, -2))
    same(KERNELS["div"](a, b, N), col(2, N, N, N, N, N, -2))
    same(KERNELS["div"](a, b, col(9, 8, 7, 6, 5, 4, 3)), col(2, 8, 7, 6, 5, 4, -2))


def test_ffill():
    x = panel([[1, N], [N, N], [N, 3], [N, N], [5, N], [N, N]])
    same(KERNELS["ffill"](x, 2), [[1, N], [1, N], [1, 3], [N, 3], [5, 3], [5, N]])
    same(KERNELS["ffill"](x, 1), [[1, N], [1, N], [N, 3], [N, 3], [5, N], [5, N]])
    same(KERNELS["ffill"](col(N, N), 5), col(N, N))


# --- time series ----------------------------------------------------------------------------

def test_lag():
    x = col(1, 2, 3, 4)
    same(KERNELS["lag"](x), col(N, 1, 2, 3))
    same(KERNELS["lag"](x, 2), col(N, N, 1, 2))
    same(KERNELS["lag"](x, 4), col(N, N, N, N))
    same(KERNELS["lag"](x, 9), col(N, N, N, N))


def test_diff():
    x = col(1, 4, N, 10, 12)
    same(KERNELS["diff"](x), col(N, 3, N, N, 2))
    same(KERNELS["diff"](x, 2), col(N, N, N, 6, N))
    same(KERNELS["diff"](x, 5), col(N, N, N, N, N))


def test_growth():
    x = col(100, 150, 0, 5, -10, -5, N, 4, 8)
    # base 0 and negative bases give NaN; a zero numerator is fine (-1)
    same(KERNELS["growth"](x), col(N, 0.5, -1, N, -3, N, N, N, 1))
    same(KERNELS["growth"](col(2, 3, 4), 2), col(N, N, 1))


_TS = panel([[1, 10], [2, N], [3, 30], [4, 40], [5, 50], [6, 60]])


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("ts_sum", 3, [[N, N], [N, N], [6, N], [9, N], [12, 120], [15, 150]]),
        ("ts_mean", 3, [[N, N], [N, N], [2, N], [3, N], [4, 40], [5, 50]]),
        ("ts_min", 3, [[N, N], [N, N], [1, N], [2, N], [3, 30], [4, 40]]),
        ("ts_max", 3, [[N, N], [N, N], [3, N], [4, N], [5, 50], [6, 60]]),
        ("ts_sum", 1, _TS),
        ("ts_max", 6, [[N, N]] * 5 + [[6, N]]),
        ("ts_sum", 7, [[N, N]] * 6),
        ("ts_mean", 7, [[N, N]] * 6),
        ("ts_min", 7, [[N, N]] * 6),
    ],
)
def test_window_functions(name, n, expected):
    same(KERNELS[name](_TS, n), expected)


def test_ts_sum_adds_oldest_first():
    # (0.1 + 0.2) + 0.3 == 0.6000000000000001 while 0.1 + (0.2 + 0.3) == 0.6
    same(KERNELS["ts_sum"](col(0.1, 0.2, 0.3), 3), col(N, N, 0.6000000000000001))
    # (1 + 1e16) loses the 1 before -1e16 cancels the rest
    same(KERNELS["ts_sum"](col(1, 1e16, -1e16), 3), col(N, N, 0))


def test_ts_std():
    x = col(1, 3, 5, 7, N, 4, 4, 4)
    same(KERNELS["ts_std"](x, 3), col(N, N, 2, 2, N, N, N, 0))
    same(KERNELS["ts_std"](x, 3, 1), col(N, N, 2, 2, N, N, N, 0))
    r = KERNELS["ts_std"](x, 3, 0)
    np.testing.assert_allclose(r, col(N, N, math.sqrt(8 / 3), math.sqrt(8 / 3), N, N, N, 0),
                               rtol=1e-15, equal_nan=True)
    same(KERNELS["ts_std"](col(2, 4, 4, 4, 5, 5, 7, 9), 8, 0), col(*[N] * 7, 2))
    same(KERNELS["ts_std"](x, 1, 1), col(*[N] * 8))  # n - ddof == 0
    same(KERNELS["ts_std"](x, 1, 0), col(0, 0, 0, 0, N, 0, 0, 0))
    same(KERNELS["ts_std"](x, 9), col(*[N] * 8))


def test_ts_corr():
    x = col(1, 2, 3, 4, 5)
    same(KERNELS["ts_corr"](x, col(2, 4, 6, 8, 10), 3), col(N, N, 1, 1, 1))
    same(KERNELS["ts_corr"](x, col(3, 2, 1, 0, -1), 3), col(N, N, -1, -1, -1))
    # means 2 and 2; cov = 1, vx = vy = 2, so 1 / sqrt(4)
    same(KERNELS["ts_corr"](col(1, 2, 3), col(1, 3, 2), 3), col(N, N, 0.5))
    # last window: dy = (-1/3, -1/3, 2/3), cov = 1, vx = 2, vy = 2/3, so sqrt(3)/2
    np.testing.assert_allclose(KERNELS["ts_corr"](x, col(7, 7, 7, 7, 8), 3),
                               col(N, N, N, N, math.sqrt(3) / 2), rtol=1e-14, equal_nan=True)
    same(KERNELS["ts_corr"](x, 5.0, 3), col(N, N, N, N, N))  # vy == 0
    # a constant window whose rounded mean leaves vy ~1e-33 is still flat
    same(KERNELS["ts_corr"](x, col(0.1, 0.1, 0.1, 0.1, 0.1), 3), col(N, N, N, N, N))
    same(KERNELS["ts_corr"](x, col(1, N, 3, 4, 5), 3), col(N, N, N, N, 1))
    same(KERNELS["ts_corr"](x, x, 6), col(N, N, N, N, N))


def test_ema_seed_and_gaps():
    # alpha = 2/(3+1) = 0.5; seed (2+4+6)/3 = 4; NaN input gives NaN and keeps the state
    same(KERNELS["ema"](col(2, 4, 6, 8, N, 12), 3), col(N, N, 4, 6, N, 9))
    # the first n valid values need not be consecutive
    same(KERNELS["ema"](col(2, N, 4, 6, 8), 3), col(N, N, N, 4, 6))
    same(KERNELS["ema"](col(1, N, 2), 3), col(N, N, N))  # never n valid values
    same(KERNELS["ema"](col(1, N, 3), 1), col(1, N, 3))  # alpha 1
    same(KERNELS["ema"](col(1, 2), 5), col(N, N))


def test_wilder_per_entity_seeds():
    # alpha = 1/2; entity 0 seeds at t=1, entity 1 (two leading NaN) at t=3
    x = panel([[2, N], [4, N], [N, 1], [10, 3], [2, 5], [N, 7]])
    same(KERNELS["wilder"](x, 2), [[N, N], [3, N], [N, N], [6.5, 2], [4.25, 3.5], [N, 5.25]])


def _scalar_smooth(values, n, alpha):
    out, seen, total, state = [], 0, 0.0, None
    for v in values:
        if math.isnan(v):
            out.append(math.nan)
        elif state is None:
            seen += 1
            total = v if seen == 1 else total + v
            if seen == n:
                state = total / n
            out.append(math.nan if state is None else state)
        else:
            state = alpha * v + (1 - alpha) * state
            out.append(state)
    return out


def test_ema_matches_scalar_order_bitwise():
    rng = np.random.default_rng(7)
    x = rng.normal(100, 5, size=(30, 3))
    x[rng.random(x.shape) < 0.2] = N
    for kernel, alpha in (("ema", 2 / 11), ("wilder", 1 / 10)):
        got = KERNELS[kernel](x, 10)
        for e in range(x.shape[1]):
            same(got[:, e], _scalar_smooth(x[:, e].tolist(), 10, alpha))


def test_ttm_and_avg_balance():
    same(KERNELS["ttm"](col(1, 2, 3, 4, 5)), col(N, N, N, 10, 14))
    same(KERNELS["ttm"](col(1, 2, N, 4, 5)), col(N, N, N, N, N))
    x = col(100, 200, N, 400)
    same(KERNELS["avg_balance"](x), col(N, 150, N, N))
    same(KERNELS["avg_balance"](x, 2), col(N, N, N, 300))
    same(KERNELS["avg_balance"](x, 4), col(N, N, N, N))


# Wilder's 14-day RSI against a TA-Lib-style loop (StockCharts' example closes, extended)
_CLOSE = [
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61,
    46.28, 46.28, 46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45, 45.78, 45.35,
    44.03, 44.18, 44.22, 44.57, 43.42, 42.66, 43.13, 43.50, 44.02, 43.88, 44.61, 45.01, 44.70,
    45.12,
]


def _talib_rsi(close, n=14):
    out = [math.nan] * len(close)
    ch = [close[i] - close[i - 1] for i in range(1, len(close))]
    gain = [max(c, 0.0) for c in ch]
    loss = [max(-c, 0.0) for c in ch]
    ag, al = sum(gain[:n]) / n, sum(loss[:n]) / n
    out[n] = 100 * ag / (ag + al)
    for i in range(n, len(ch)):
        ag = (ag * (n - 1) + gain[i]) / n
        al = (al * (n - 1) + loss[i]) / n
        out[i + 1] = 100 * ag / (ag + al)
    return out


def test_rsi_matches_talib_convention():
    late = [N] * 5 + _CLOSE[5:]  # an entity listed five periods later seeds five later
    close = panel(list(zip(_CLOSE, late, strict=True)))
    d = KERNELS["diff"](close)
    up = KERNELS["wilder"](KERNELS["max"](d, 0.0), 14)
    down = KERNELS["wilder"](KERNELS["max"](F.neg(d), 0.0), 14)
    rsi = F.sub(100.0, F.truediv(100.0, F.add(1.0, F.truediv(up, down))))
    expected = np.column_stack([_talib_rsi(_CLOSE), [N] * 5 + _talib_rsi(_CLOSE[5:])])
    np.testing.assert_allclose(rsi, expected, rtol=1e-12, equal_nan=True)
    assert np.isnan(rsi[:14, 0]).all() and not np.isnan(rsi[14:, 0]).any()
    assert round(float(rsi[14, 0]), 2) == 70.46  # StockCharts' worked example (70.53 there
    # comes from rounding the averages to two decimals first)


# --- cross-sectional ------------------------------------------------------------------------

def test_cs_rank():
    x = panel([
        [10, 20, 20, N, 5],
        [N, N, N, N, N],
        [N, 3, N, N, N],
        [7, 7, 7, N, N],
        [0.0, -0.0, 1, N, N],
        [4, 3, 2, 1, 0],
    ])
    same(KERNELS["cs_rank"](x), [
        [0.5, 0.875, 0.875, N, 0.25],
        [N, N, N, N, N],
        [N, 1, N, N, N],
        [2 / 3, 2 / 3, 2 / 3, N, N],
        [0.5, 0.5, 1, N, N],
        [1, 0.8, 0.6, 0.4, 0.2],
    ])


def test_cs_zscore():
    x = panel([
        [1, 3, N, N, N, N, N, N],
        [2, 4, 4, 4, 5, 5, 7, 9],
        [5, N, N, N, N, N, N, N],
        [3, 3, 3, N, N, N, N, N],
        [N, N, N, N, N, N, N, N],
        # (0.1 + 0.1 + 0.1) / 3 != 0.1, yet equal values have no spread: NaN, not -1
        [0.1, 0.1, 0.1, N, N, N, N, N],
    ])
    same(KERNELS["cs_zscore"](x), [
        [-1, 1, N, N, N, N, N, N],
        [-1.5, -0.5, -0.5, -0.5, 0, 0, 1, 2],
        [N] * 8,
        [N] * 8,
        [N] * 8,
        [N] * 8,
    ])


def test_cs_demean():
    x = panel([[1, 2, N, 6], [N, N, N, N], [N, 5, N, N]])
    same(KERNELS["cs_demean"](x), [[-2, -1, N, 3], [N, N, N, N], [N, 0, N, N]])


def test_cross_sectional_is_per_period():
    x = panel([[1, 2], [30, 10]])
    same(KERNELS["cs_rank"](x), [[0.5, 1], [1, 0.5]])
    same(KERNELS["cs_demean"](x), [[-0.5, 0.5], [10, -10]])
