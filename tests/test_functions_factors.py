"""Golden tests for issue 14's functions: hand-checked literals with NaN and warm-up edges,
the real-number literals in the parser, look-backs, canonical forms and explain.

Expected values are exact where the arithmetic is (``same``: bitwise); where a value is
written as a Python expression, the expression follows the documented operation order, so
it is still compared bitwise. The only tolerances are named where they are used.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from panels import N, _no_warnings, col, panel, same  # noqa: F401
from tracecalc.errors import ArityError
from tracecalc.evaluator import compile_tree, interpret
from tracecalc.explain import explain_tree
from tracecalc.facts import facts_of
from tracecalc.functions import KERNELS
from tracecalc.parser import parse

# --- real-number literals -------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("ts_quantile(x, 5, 1.5)", "ts_quantile(x, n, q): 'q' must be from 0 to 1, got 1.5"),
    ("ts_quantile(x, 5, -0.1)", "'q' must be from 0 to 1, got -0.1"),
    ("ts_quantile(x, 5, q)", "'q' must be a number written out, from 0 to 1"),
    ("ts_quantile(x, 5, 0.5 * 1)", "'q' must be a number written out"),
    ("ts_quantile(x, 5)", "exactly 3 arguments, got 2"),
    ("ts_quantile(x, 2.5, 0.5)", "'n' must be a whole number"),
    ("signed_power(x, 17)", "signed_power(x, a): 'a' must be from -16 to 16, got 17"),
    ("signed_power(x, -16.5)", "got -16.5"),
    ("cs_winsorize(x, -1)", "cs_winsorize(x, k): 'k' must be from 0 to 100, got -1"),
    ("cs_scale(x, 1e16)", "'a' must be from -1e+15 to 1e+15, got 1e+16"),
    ("cs_scale(x, a=10**20)", "must be a number written out"),
    ("cs_quantile(x, 2.5)", "'q' must be a whole number written out, from 1 to 10000"),
    ("cs_quantile(x, 0)", "from 1 to 10000, got 0"),
])
def test_literal_errors_name_function_parameter_and_bounds(text, message):
    with pytest.raises(ArityError) as e:
        parse(text, "f")
    assert message in str(e.value)


@pytest.mark.parametrize(("text", "args"), [
    ("ts_quantile(x, 5, 0.25)", (5.0, 0.25)),
    ("ts_quantile(x, 5, q=1)", (5.0, 1.0)),
    ("ts_quantile(x, q=0, n=3)", (3.0, 0.0)),
    ("signed_power(x, -0.5)", (-0.5,)),
    ("signed_power(x, +2)", (2.0,)),
    ("cs_scale(x)", (1.0,)),
    ("cs_scale(x, a=2.5)", (2.5,)),
    ("cs_winsorize(x, 3)", (3.0,)),
])
def test_real_literals_parse_to_numbers(text, args):
    tree = parse(text).tree
    assert tuple(a.value for a in tree.args[1:]) == args


def test_kernels_check_real_literals():
    with pytest.raises(ValueError, match=r"q=1.5 is outside \[0, 1\]"):
        KERNELS["ts_quantile"](col(1, 2), 2, 1.5)
    with pytest.raises(TypeError):
        KERNELS["ts_quantile"](col(1, 2), 2, "0.5")
    with pytest.raises(TypeError):
        KERNELS["signed_power"](col(1, 2), True)
    with pytest.raises(ValueError):
        KERNELS["cs_winsorize"](col(1, 2), math.nan)
    with pytest.raises(TypeError):  # n stays an integer
        KERNELS["ts_rank"](col(1, 2), 2.0)


def test_lookbacks_count_windows_but_not_real_literals():
    assert facts_of("ts_quantile(x, 5, 0.75)").lookback == {"x": 4}
    assert facts_of("ts_rank(x, 10) + decay_linear(lag(y, 2), 3)").lookback == {"x": 9, "y": 4}
    assert facts_of("ts_cov(x, ts_slope(y, 4), 5)").lookback == {"x": 4, "y": 7}
    assert facts_of("cs_scale(x, 2.5) + cs_resid(y, signed_power(x, 0.5))").lookback == {
        "x": 0, "y": 0}
    f = facts_of("ts_count(x > 0, 20)")
    assert f.along_time and not f.spontaneous
    assert facts_of("cs_winsorize(x, 2)").cross_sectional


def test_canonical_forms_of_real_literals():
    assert (facts_of("ts_quantile(x, 10, 0.50)").canonical
            == facts_of("ts_quantile(x, q=0.5, n=10)").canonical
            == "ts_quantile(x, 10, 1/2)")
    assert facts_of("cs_scale(x)").canonical == facts_of("cs_scale(x, 1)").canonical
    assert facts_of("signed_power(x, 2)").canonical != facts_of("signed_power(x, 3)").canonical


def test_compiled_and_interpreted_trees_pass_real_literals():
    x = panel([[1, 4], [3, 2], [2, 8], [5, 6]])
    for text in ("ts_quantile(x, 3, 0.25)", "signed_power(x, 0.5) + cs_scale(x, 2)",
                 "cs_winsorize(x, 0.5) - ts_rank(x, 2)"):
        tree = parse(text).tree
        got = compile_tree(tree)(x)
        np.testing.assert_array_equal(got, interpret(tree, {"x": x}, x))
    same(compile_tree(parse("ts_quantile(x, 3, 0.25)").tree)(x),
         [[N, N], [N, N], [1.5, 3], [2.5, 4]])


def test_explain_shows_the_window_of_a_new_function():
    x = col(1, 3, 2, 4)
    calendar = np.array(["2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31"],
                        dtype="datetime64[D]")
    out = explain_tree(parse("ts_quantile(x, 3, 0.5)").tree, {"x": x}, calendar, 3, 0, {"x"})
    assert out["value"] == 3.0
    assert [v for _, v in out["window"][0]["values"]] == [3.0, 2.0, 4.0]
    assert [c["text"] for c in out["children"]] == ["x"]  # literals are not children


# --- time series ----------------------------------------------------------------------------

def test_ts_rank():
    x = col(3, 1, 2, 2, N, 5, 4, 4)
    # [3,1,2]: one below, one tie (itself) -> 2/3; [1,2,2]: (1 + 3/2)/3; [5,4,4]: 1.5/3
    same(KERNELS["ts_rank"](x, 3), col(N, N, 2 / 3, 2.5 / 3, N, N, N, 0.5))
    same(KERNELS["ts_rank"](x, 1), col(1, 1, 1, 1, N, 1, 1, 1))
    same(KERNELS["ts_rank"](col(1, 2, 3, 4), 4), col(N, N, N, 1))
    same(KERNELS["ts_rank"](col(4, 3, 2, 1), 4), col(N, N, N, 0.25))
    same(KERNELS["ts_rank"](x, 9), col(*[N] * 8))


def test_ts_argmax_argmin_count_from_the_oldest_and_keep_the_first():
    x = col(1, 3, 3, 2, N, 0, 0, 1)
    same(KERNELS["ts_argmax"](x, 3), col(N, N, 2, 1, N, N, N, 3))
    same(KERNELS["ts_argmin"](x, 3), col(N, N, 1, 3, N, N, N, 1))
    same(KERNELS["ts_argmax"](x, 1), col(1, 1, 1, 1, N, 1, 1, 1))
    same(KERNELS["ts_argmin"](col(5, 5, 5), 3), col(N, N, 1))
    same(KERNELS["ts_argmax"](x, 9), col(*[N] * 8))


def test_ts_quantile_interpolates_linearly():
    x = col(4, 1, 3, 2, N, 10, 11, 12, 13)
    # sorted [1, 2, 3, 4]: h = 3q
    same(KERNELS["ts_quantile"](x, 4, 0.5), col(N, N, N, 2.5, N, N, N, N, 11.5))
    same(KERNELS["ts_quantile"](x, 4, 0.25), col(N, N, N, 1.75, N, N, N, N, 10.75))
    same(KERNELS["ts_quantile"](x, 4, 0), col(N, N, N, 1, N, N, N, N, 10))
    same(KERNELS["ts_quantile"](x, 4, 1), col(N, N, N, 4, N, N, N, N, 13))
    same(KERNELS["ts_quantile"](x, 1, 0.3), x)
    same(KERNELS["ts_quantile"](col(1e308, -1e308), 2, 0.5), col(N, N))  # overflow (G1)
    same(KERNELS["ts_quantile"](x, 10, 0.5), col(*[N] * 9))


def test_ts_quantile_sorts_in_blocks(monkeypatch):
    from tracecalc.functions import order

    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(40, 7)).astype(float)
    whole = KERNELS["ts_quantile"](x, 6, 0.3)
    monkeypatch.setattr(order, "_SORT_BLOCK", 50)  # one period of windows per block
    np.testing.assert_array_equal(KERNELS["ts_quantile"](x, 6, 0.3), whole)


# 1, 3, 2, 4, 6, 5: every window of 3 has a whole mean; then a gap and a flat window
_LINE = col(1, 3, 2, 4, 6, 5, N, 7, 7, 7)


def test_ts_slope_rsquare_resi():
    # [1,3,2]: m 2, d (-1, 1, 0), c (-1, 0, 1): Sxy 1, Sxx 2, Stt 2 -> slope 0.5,
    # R2 1/4, residual (2 - 2) - 0.5 * 1; [3,2,4]: Sxy 1, Sxx 2, residual 1 - 0.5;
    # [2,4,6]: a straight line, slope 2, R2 1, residual 0; [4,6,5] as the first.
    same(KERNELS["ts_slope"](_LINE, 3), col(N, N, 0.5, 0.5, 2, 0.5, N, N, N, 0))
    same(KERNELS["ts_rsquare"](_LINE, 3), col(N, N, 0.25, 0.25, 1, 0.25, N, N, N, N))
    same(KERNELS["ts_resi"](_LINE, 3), col(N, N, -0.5, 0.5, 0, -0.5, N, N, N, 0))
    # n = 2: the line through two points; n = 1: no line
    same(KERNELS["ts_slope"](col(1, 3), 2), col(N, 2))
    same(KERNELS["ts_rsquare"](col(1, 3), 2), col(N, 1))
    same(KERNELS["ts_resi"](col(1, 3), 2), col(N, 0))
    for fn in ("ts_slope", "ts_rsquare", "ts_resi"):
        same(KERNELS[fn](_LINE, 1), col(*[N] * 10))
        same(KERNELS[fn](_LINE, 11), col(*[N] * 10))
    # a flat window whose rounded mean is not its value: still slope 0, residual 0
    same(KERNELS["ts_slope"](col(0.1, 0.1, 0.1), 3), col(N, N, 0))
    same(KERNELS["ts_resi"](col(0.1, 0.1, 0.1), 3), col(N, N, 0))


def test_ts_cov():
    x, y = col(1, 2, 3, 4, N, 6), col(2, 4, 6, 8, 10, 12)
    same(KERNELS["ts_cov"](x, y, 3), col(N, N, 2, 2, N, N))  # dx (-1,0,1), dy (-2,0,2): 4/2
    same(KERNELS["ts_cov"](col(1, 3, 5), col(1, 3, 5), 3), col(N, N, 4))  # a variance
    same(KERNELS["ts_cov"](x, 5.0, 2), col(N, 0, 0, 0, N, N))
    same(KERNELS["ts_cov"](x, y, 1), col(*[N] * 6))
    same(KERNELS["ts_cov"](col(1e200, -1e200), col(1e200, -1e200), 2), col(N, N))


def test_ts_product():
    x = col(1, 2, 3, 4, N, 5, 1e200, 1e200)
    same(KERNELS["ts_product"](x, 2), col(N, 2, 6, 12, N, N, 5 * 1e200, N))  # overflow: NaN
    same(KERNELS["ts_product"](x, 3), col(N, N, 6, 24, N, N, N, N))
    same(KERNELS["ts_product"](col(-2, 0, 3), 2), col(N, 0, 0))


def test_ts_skew_and_kurt():
    # [1, 2, 3, 10]: m 4, d (-3, -2, -1, 6): sums of d**2, d**3, d**4 are 50, 180, 1394
    x = col(1, 2, 3, 10, N, 5, 5, 5, 5)
    m2, m3, m4 = 50 / 4, 180 / 4, 1394 / 4
    skew = (math.sqrt(4 * 3) / 2) * (m3 / (m2 * math.sqrt(m2)))
    kurt = (3 / (2 * 1)) * (5 * (m4 / (m2 * m2)) - 3 * 3)
    same(KERNELS["ts_skew"](x, 4), col(N, N, N, skew, N, N, N, N, N))
    same(KERNELS["ts_kurt"](x, 4), col(N, N, N, kurt, N, N, N, N, N))
    same(KERNELS["ts_skew"](col(1, 2, 3), 3), col(N, N, 0))  # symmetric
    same(KERNELS["ts_skew"](col(1, 2, 3), 2), col(N, N, N))  # n < 3
    same(KERNELS["ts_kurt"](col(1, 2, 3), 3), col(N, N, N))  # n < 4
    same(KERNELS["ts_kurt"](col(0.1, 0.1, 0.1, 0.1), 4), col(N, N, N, N))  # flat


def test_ts_skew_and_kurt_match_pandas_on_the_golden_window():
    pd = pytest.importorskip("pandas")
    s = pd.Series([1, 2, 3, 10], dtype=float)
    # pandas sums raw powers (with Kahan compensation); we sum deviations: 1e-12 relative
    np.testing.assert_allclose(KERNELS["ts_skew"](col(*s), 4)[3, 0], s.rolling(4).skew()[3],
                               rtol=1e-12)
    np.testing.assert_allclose(KERNELS["ts_kurt"](col(*s), 4)[3, 0], s.rolling(4).kurt()[3],
                               rtol=1e-12)


def test_decay_linear():
    x = col(1, 2, 3, N, 4, 5, 6)
    # (1*1 + 2*2 + 3*3) / 6 and (1*4 + 2*5 + 3*6) / 6: today weighs 3
    same(KERNELS["decay_linear"](x, 3), col(N, N, 14 / 6, N, N, N, 32 / 6))
    same(KERNELS["decay_linear"](x, 1), x)
    same(KERNELS["decay_linear"](col(0, 10), 2), col(N, 20 / 3))


def test_ts_count():
    x = col(1, 0, N, 2, -1, N, N, N, 0)
    same(KERNELS["ts_count"](x, 3), col(N, N, 1, 1, 2, 2, 1, N, 0))
    same(KERNELS["ts_count"](x, 1), col(1, 0, N, 1, 1, N, N, N, 0))
    same(KERNELS["ts_count"](x, 10), col(*[N] * 9))


# --- element-wise ---------------------------------------------------------------------------

def test_signed_power():
    x = col(-8, -1, 0, 4, N, 0.25)
    same(KERNELS["signed_power"](x, 2), col(-64, -1, 0, 16, N, 0.0625))
    same(KERNELS["signed_power"](x, 0.5), col(-math.sqrt(8), -1, 0, 2, N, 0.5))
    same(KERNELS["signed_power"](x, 0), col(-1, -1, 0, 1, N, 1))  # sign(0) * 0**0 = 0
    same(KERNELS["signed_power"](x, -1), col(-0.125, -1, N, 0.25, N, 4))  # 0 ** -1
    same(KERNELS["signed_power"](col(-1e200, 1e200), 2), col(N, N))  # overflow


def test_log1p_and_tanh():
    same(KERNELS["log1p"](col(0, -1, -2, 1e-20, N)), col(0, N, N, 1e-20, N))
    same(KERNELS["tanh"](col(0, 1000, -1000, N)), col(0, 1, -1, N))
    # libm and numpy may differ in the last place: 4 ulp
    np.testing.assert_allclose(KERNELS["log1p"](col(1.0, 0.5)), col(math.log(2), math.log(1.5)),
                               rtol=1e-15)
    np.testing.assert_allclose(KERNELS["tanh"](col(0.5)), col(math.tanh(0.5)), rtol=1e-15)


# --- cross-sectional ------------------------------------------------------------------------

def test_cs_scale():
    x = panel([[1, -3, N, 4], [0, 0, N, N], [N, 2, N, N], [N, N, N, N]])
    same(KERNELS["cs_scale"](x), [[0.125, -0.375, N, 0.5], [N, N, N, N], [N, 1, N, N],
                                  [N, N, N, N]])
    same(KERNELS["cs_scale"](x, 2), [[0.25, -0.75, N, 1], [N] * 4, [N, 2, N, N], [N] * 4])
    same(KERNELS["cs_scale"](panel([[1e308, 1e308]])), [[N, N]])  # the sum overflows


def test_cs_winsorize():
    x = panel([[1, 2, 3, 4, 100], [0.1, 0.1, 0.1, N, N], [N, 5, N, N, N]])
    # mean 22, deviations -21 -20 -19 -18 78: population variance 7610 / 5 = 1522
    hi = 22 + math.sqrt(1522)
    same(KERNELS["cs_winsorize"](x, 1), [[1, 2, 3, 4, hi], [0.1, 0.1, 0.1, N, N],
                                         [N, 5, N, N, N]])
    same(KERNELS["cs_winsorize"](x, 2), x)  # 22 + 2 * 39.01... > 100: nothing to clip
    same(KERNELS["cs_winsorize"](x, 0), [[22] * 5, [0.1, 0.1, 0.1, N, N], [N, 5, N, N, N]])
    lo = 22 - 0.5 * math.sqrt(1522)
    same(KERNELS["cs_winsorize"](x, 0.5)[0], [lo, lo, 3, 4, 22 + 0.5 * math.sqrt(1522)])


def test_cs_quantile_buckets_by_rank_in_integers():
    x = panel([[10, 20, 30, 40, 50, N], [6, 5, 4, 3, 2, 1], [7, 7, 7, 1, N, N],
               [N, N, 3, N, N, N]])
    same(KERNELS["cs_quantile"](x, 5), [[1, 2, 3, 4, 5, N], [5, 5, 4, 3, 2, 1],
                                        [4, 4, 4, 2, N, N], [N, N, 5, N, N, N]])
    same(KERNELS["cs_quantile"](x, 2), [[1, 1, 2, 2, 2, N], [2, 2, 2, 1, 1, 1],
                                        [2, 2, 2, 1, N, N], [N, N, 2, N, N, N]])
    same(KERNELS["cs_quantile"](x, 3)[1], [3, 3, 2, 2, 1, 1])
    same(KERNELS["cs_quantile"](x, 1)[0], [1, 1, 1, 1, 1, N])
    # rank 3 of 10 with q = 10 is bucket 3: 0.3 * 10 in floats would be 3.0000000000000004
    same(KERNELS["cs_quantile"](panel([np.arange(10.0)]), 10), [np.arange(1.0, 11.0)])


def test_cs_resid():
    y = panel([[1, 3, 2, 6, N], [1, 2, 3, 4, 5], [1, 2, N, N, N]])
    x = panel([[1, 1, 3, 3, 7], [2, 2, 2, 2, 2], [N, 5, N, N, N]])
    # row 0: mx 2, my 3, dx (-1,-1,1,1), dy (-2,0,-1,3): Sxy 4, Sxx 4, b 1 -> dy - dx
    same(KERNELS["cs_resid"](y, x), [[-1, 1, -2, 2, N], [N] * 5, [N] * 5])
    same(KERNELS["cs_resid"](y, 3.0), [[N] * 5] * 3)  # x constant: no slope


# --- groups ---------------------------------------------------------------------------------

# entities 0..5: groups 7, 3, 7, 3, 3 and none (-1); codes need not be dense or sorted
_G = np.array([7, 3, 7, 3, 3, -1])
_GX = panel([[1, 10, 3, 20, 30, 5], [1, 10, N, 20, 20, 5], [N, N, N, 4, N, 1]])


def test_group_wise_demean_rank_and_quantile():
    same(KERNELS["cs_demean"](_GX, groups=_G), [[-1, -10, 1, 0, 10, N],
                                                [N, 10 - 50 / 3, N, 20 - 50 / 3, 20 - 50 / 3, N],
                                                [N] * 6])
    same(KERNELS["cs_rank"](_GX, groups=_G), [[0.5, 1 / 3, 1, 2 / 3, 1, N],
                                              [N, 1 / 3, N, 2.5 / 3, 2.5 / 3, N],
                                              [N] * 6])
    same(KERNELS["cs_quantile"](_GX, 2, groups=_G), [[1, 1, 2, 2, 2, N],
                                                     [N, 1, N, 2, 2, N], [N] * 6])


def test_group_wise_scale_zscore_winsorize_resid():
    same(KERNELS["cs_scale"](_GX, groups=_G)[0], [0.25, 1 / 6, 0.75, 1 / 3, 0.5, N])
    z = KERNELS["cs_zscore"](_GX, groups=_G)
    same(z[0, [0, 2]], [-1, 1])
    # group 3 row 0: 10, 20, 30: population std sqrt(200 / 3)
    same(z[0, [1, 3, 4]], [-10 / math.sqrt(200 / 3), 0, 10 / math.sqrt(200 / 3)])
    assert np.isnan(z[0, 5]) and np.isnan(z[2]).all()
    w = KERNELS["cs_winsorize"](_GX, 1, groups=_G)
    same(w[0], [1, 20 - math.sqrt(200 / 3), 3, 20, 20 + math.sqrt(200 / 3), N])
    r = KERNELS["cs_resid"](_GX, 2 * _GX, groups=_G)  # y on 2y: a perfect fit
    same(r[0], [0, 0, 0, 0, 0, N])
    assert np.isnan(r[2]).all()


def test_one_group_is_the_whole_period_bitwise():
    rng = np.random.default_rng(11)
    x = rng.choice([N, 0.0, 0.1, 0.3, -2.5, 7.0, 1e9], size=(30, 9))
    y = rng.choice([N, 1.0, 0.2, -3.0, 5.5], size=(30, 9))
    one = np.zeros(9, dtype=np.int64)
    present = (~np.isnan(x)).sum(axis=1, keepdims=True) >= 2
    pairs = (~np.isnan(x) & ~np.isnan(y)).sum(axis=1, keepdims=True) >= 2
    for name, args, enough in [("cs_rank", (x,), present), ("cs_zscore", (x,), present),
                               ("cs_demean", (x,), present), ("cs_scale", (x, 2.0), present),
                               ("cs_winsorize", (x, 1.5), present),
                               ("cs_quantile", (x, 4), present), ("cs_resid", (y, x), pairs)]:
        whole = KERNELS[name](*args)
        np.testing.assert_array_equal(KERNELS[name](*args, groups=one),
                                      np.where(enough, whole, N), err_msg=name)


def test_groups_are_checked():
    x = panel([[1, 2, 3]])
    with pytest.raises(ValueError, match="one code per entity"):
        KERNELS["cs_rank"](x, groups=np.array([0, 1]))
    with pytest.raises(TypeError, match="integer codes"):
        KERNELS["cs_rank"](x, groups=np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="-1"):
        KERNELS["cs_rank"](x, groups=np.array([0, -2, 1]))
    same(KERNELS["cs_demean"](x, groups=np.array([-1, -1, -1])), [[N, N, N]])
    same(KERNELS["cs_rank"](panel(np.empty((2, 0))), groups=np.array([], dtype=np.int64)),
         np.empty((2, 0)))


@pytest.mark.parametrize(("text", "spontaneous"), [
    ("ts_count(x, 8)", False), ("ts_rank(x, 50)", False), ("ts_count(x > 0, 8)", False),
    # a window over something with values from nothing: longer than the 3 periods the check
    # ran on before, it was taken for not spontaneous
    ("ts_count(isnull(x), 8)", True), ("ts_sum(isnull(x), 5)", True),
    ("lag(coalesce(x, 0), 4)", True), ("decay_linear(lag(coalesce(x, 1), 3), 6)", True),
])
def test_spontaneous_sees_past_long_windows(text, spontaneous):
    assert facts_of(text).spontaneous is spontaneous


def test_a_new_entity_gets_a_long_window_over_values_from_nothing(tmp_path):
    # E2 arrives with x2 only: isnull(x1) is 1 there, so ts_count(isnull(x1), 4) has values
    # from its 4th period. The incremental run must reach E2 as a full run does (it did not
    # while the spontaneous check ran over 3 periods only).
    import pandas as pd

    from tracecalc.engine import Engine

    quarters = [str(d.date()) for d in pd.date_range("2023-03-31", periods=6, freq="QE")]
    cols = ["item", "entity", "period", "value"]
    eng = Engine(f"sqlite:///{tmp_path / 't.db'}", user="tester")
    try:
        eng.load_data(pd.DataFrame([(i, "E1", p, 1.0) for i in ("x1", "x2") for p in quarters],
                                   columns=cols))
        eng.set_formulas([{"name": "f", "expression": "ts_count(isnull(x1), 4)"},
                          {"name": "g", "expression": "x2 + 0"}])
        eng.recalc()
        eng.load_data(pd.DataFrame([("x2", "E2", p, 2.0) for p in quarters], columns=cols))
        eng.recalc()
        incremental = eng.records("f")
        assert incremental[incremental.entity == "E2"].value.tolist() == [4.0, 4.0, 4.0]
        assert incremental[incremental.entity == "E1"].value.tolist() == [0.0, 0.0, 0.0]
        eng.recalc(full=True)
        assert eng.records("f").equals(incremental)
    finally:
        eng.close()
