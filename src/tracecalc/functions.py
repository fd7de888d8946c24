"""Numpy kernels for every function and operator of the formula language.

A panel is a float64 array shaped (periods, entities), oldest period first; NaN is missing.
Each kernel takes panels or scalars (which broadcast) plus integer literals, returns a new
float64 array and never returns +-inf. docs/formula-language.md pins the semantics; the
golden tests in tests/test_functions.py hold them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tracecalc.model import SIGNATURES

_F64 = np.float64
_NAN = np.nan


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=_F64)


def finite(x: Any) -> np.ndarray:
    """x with +-inf replaced by NaN; rewrites a float64 array in place (pass a fresh one)."""
    a = np.asarray(x, dtype=_F64)
    if not a.flags.writeable:
        a = a.copy()
    np.copyto(a, _NAN, where=np.isinf(a))
    return a


def _panel(x: Any, what: str) -> np.ndarray:
    a = _arr(x)
    if a.ndim != 2:
        raise ValueError(f"{what} needs a (periods, entities) panel, got shape {a.shape}")
    return a


def _lit(value: Any, fn: str, param: str) -> int:
    """Check an integer literal against the bounds model.SIGNATURES gives it."""
    spec = next(p for p in SIGNATURES[fn].params if p.name == param)
    if isinstance(value, bool):
        raise TypeError(f"{fn}: {param} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}: {param} must be an integer, got {value!r}") from None
    if not spec.lo <= v <= spec.hi:
        raise ValueError(f"{fn}: {param}={v} is outside [{spec.lo}, {spec.hi}]")
    return v


# --- operators (G1-G3) ---------------------------------------------------------------------

def add(a: Any, b: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return finite(np.add(_arr(a), _arr(b)))


def sub(a: Any, b: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return finite(np.subtract(_arr(a), _arr(b)))


def mul(a: Any, b: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return finite(np.multiply(_arr(a), _arr(b)))


def truediv(a: Any, b: Any) -> np.ndarray:
    """a / b; x/0 is +-inf or NaN in IEEE, and finite() turns both into NaN."""
    with np.errstate(all="ignore"):
        return finite(np.divide(_arr(a), _arr(b)))


def power(a: Any, b: Any) -> np.ndarray:
    a, b = _arr(a), _arr(b)
    with np.errstate(all="ignore"):
        r = finite(np.power(a, b))
        # IEEE pow says NaN**0 == 1 and 1**NaN == 1; G2 wants NaN in, NaN out.
        np.copyto(r, _NAN, where=np.isnan(a) | np.isnan(b))
    return r


def neg(a: Any) -> np.ndarray:
    return finite(np.negative(_arr(a)))


def _compare(op: Callable, a: Any, b: Any) -> np.ndarray:
    a, b = _arr(a), _arr(b)
    with np.errstate(all="ignore"):
        r = np.asarray(op(a, b), dtype=_F64)
        np.copyto(r, _NAN, where=np.isnan(a) | np.isnan(b))
    return r


def lt(a: Any, b: Any) -> np.ndarray:
    return _compare(np.less, a, b)


def le(a: Any, b: Any) -> np.ndarray:
    return _compare(np.less_equal, a, b)


def gt(a: Any, b: Any) -> np.ndarray:
    return _compare(np.greater, a, b)


def ge(a: Any, b: Any) -> np.ndarray:
    return _compare(np.greater_equal, a, b)


def eq(a: Any, b: Any) -> np.ndarray:
    return _compare(np.equal, a, b)


def ne(a: Any, b: Any) -> np.ndarray:
    return _compare(np.not_equal, a, b)


def _truth(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true, false) masks; NaN is neither, i.e. unknown."""
    false = a == 0
    return ~false & ~np.isnan(a), false


def and_(a: Any, b: Any) -> np.ndarray:
    ta, fa = _truth(_arr(a))
    tb, fb = _truth(_arr(b))
    return np.where(fa | fb, 0.0, np.where(ta & tb, 1.0, _NAN))


def or_(a: Any, b: Any) -> np.ndarray:
    ta, fa = _truth(_arr(a))
    tb, fb = _truth(_arr(b))
    return np.where(ta | tb, 1.0, np.where(fa & fb, 0.0, _NAN))


def not_(a: Any) -> np.ndarray:
    a = _arr(a)
    return np.where(np.isnan(a), _NAN, (a == 0).astype(_F64))


# --- element-wise --------------------------------------------------------------------------

def abs_(x: Any) -> np.ndarray:
    return finite(np.abs(_arr(x)))


def sign(x: Any) -> np.ndarray:
    return np.sign(_arr(x)).astype(_F64, copy=False)


def log(x: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return finite(np.log(_arr(x)))


def exp(x: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return finite(np.exp(_arr(x)))


def sqrt(x: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return finite(np.sqrt(_arr(x)))


# At and beyond 2**52 every float is an integer, so scaling has nothing left to round; adding
# 0.5 there would round up an odd value (or x * 10**d would overflow to inf).
_INTEGRAL = 2.0**52


def round_(x: Any, d: int = 0) -> np.ndarray:
    """Half away from zero at d decimals: trunc(x*10**d + copysign(0.5, x)) / 10**d."""
    d = _lit(d, "round", "d")
    x = _arr(x)
    with np.errstate(all="ignore"):
        # A negative d divides by the exact 10**-d rather than multiplying by inexact 10**d.
        scale = 10.0 ** abs(d)
        y = x * scale if d >= 0 else x / scale
        r = np.trunc(y + np.copysign(0.5, y))
        r = r / scale if d >= 0 else r * scale
        r = np.where(np.abs(y) >= _INTEGRAL, x, r)
    return finite(r)


def min_(a: Any, b: Any, *rest: Any) -> np.ndarray:
    r = np.minimum(_arr(a), _arr(b))  # np.minimum propagates NaN
    for c in rest:
        r = np.minimum(r, _arr(c))
    return finite(r)


def max_(a: Any, b: Any, *rest: Any) -> np.ndarray:
    r = np.maximum(_arr(a), _arr(b))
    for c in rest:
        r = np.maximum(r, _arr(c))
    return finite(r)


def clip(x: Any, lo: Any, hi: Any) -> np.ndarray:
    return finite(np.minimum(np.maximum(_arr(x), _arr(lo)), _arr(hi)))


def if_(c: Any, a: Any, b: Any) -> np.ndarray:
    c = _arr(c)
    return finite(np.where(np.isnan(c), _NAN, np.where(c != 0, _arr(a), _arr(b))))


# --- missing data --------------------------------------------------------------------------

def coalesce(a: Any, b: Any, *rest: Any) -> np.ndarray:
    r = _arr(a)
    for c in (b, *rest):
        r = np.where(np.isnan(r), _arr(c), r)
    return finite(r)


def isnull(x: Any) -> np.ndarray:
    return np.isnan(_arr(x)).astype(_F64)


def div(a: Any, b: Any, fill: Any) -> np.ndarray:
    r = truediv(a, b)
    return finite(np.where(np.isnan(r), _arr(fill), r))


def ffill(x: Any, limit: int) -> np.ndarray:
    """Carry each entity's last value forward over at most `limit` missing periods."""
    limit = _lit(limit, "ffill", "limit")
    x = _panel(x, "ffill")
    out = np.empty(x.shape)
    last = np.full(x.shape[1], _NAN)  # last valid value so far, per entity
    age = np.zeros(x.shape[1], dtype=np.int64)  # periods since that value
    # np.where beats masked copyto several times over on scattered masks.
    for t, row in enumerate(x):
        missing = np.isnan(row)
        age = (age + 1) * missing
        out[t] = np.where(missing & (age <= limit), last, row)
        last = np.where(missing, last, row)
    return finite(out)


# --- time series ---------------------------------------------------------------------------

def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(x.shape, _NAN)
    if k < x.shape[0]:
        out[k:] = x[: x.shape[0] - k]
    return out


def lag(x: Any, k: int = 1) -> np.ndarray:
    return finite(_shift(_panel(x, "lag"), _lit(k, "lag", "k")))


def diff(x: Any, k: int = 1) -> np.ndarray:
    x = _panel(x, "diff")
    with np.errstate(all="ignore"):
        return finite(x - _shift(x, _lit(k, "diff", "k")))


def growth(x: Any, k: int = 1) -> np.ndarray:
    x = _panel(x, "growth")
    base = _shift(x, _lit(k, "growth", "k"))
    with np.errstate(all="ignore"):
        r = x / base - 1.0
        np.copyto(r, _NAN, where=base <= 0)
    return finite(r)


def _windows(x: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """The n aligned slices of a full window, oldest first; slice j holds x[t-n+1+j]."""
    m = x.shape[0] - n + 1
    for j in range(n):
        yield x[j : j + m]


def _window_fold(x: np.ndarray, n: int, fold: Callable) -> np.ndarray:
    out = np.full(x.shape, _NAN)
    if n > x.shape[0]:
        return out
    with np.errstate(all="ignore"):
        slices = _windows(x, n)
        acc = next(slices).copy()
        for s in slices:
            fold(acc, s, out=acc)
        out[n - 1 :] = acc
    return finite(out)


def ts_sum(x: Any, n: int) -> np.ndarray:
    # np.add in slice order keeps the exact left-to-right sum a scalar evaluator would do.
    return _window_fold(_panel(x, "ts_sum"), _lit(n, "ts_sum", "n"), np.add)


def ts_mean(x: Any, n: int) -> np.ndarray:
    n = _lit(n, "ts_mean", "n")
    return ts_sum(x, n) / n


def ts_min(x: Any, n: int) -> np.ndarray:
    return _window_fold(_panel(x, "ts_min"), _lit(n, "ts_min", "n"), np.minimum)


def ts_max(x: Any, n: int) -> np.ndarray:
    return _window_fold(_panel(x, "ts_max"), _lit(n, "ts_max", "n"), np.maximum)


def _dev_product_sum(x: np.ndarray, y: np.ndarray, n: int, mx: np.ndarray,
                     my: np.ndarray) -> np.ndarray:
    """Sum over the window, oldest first, of (x_i - mx) * (y_i - my), for rows n-1.."""
    mx, my = mx[n - 1 :], my[n - 1 :]
    acc = np.zeros(mx.shape)
    dx, dy = np.empty(mx.shape), np.empty(mx.shape)
    same = x is y
    for sx, sy in zip(_windows(x, n), _windows(y, n), strict=True):
        np.subtract(sx, mx, out=dx)
        if not same:
            np.subtract(sy, my, out=dy)
        np.multiply(dx, dx if same else dy, out=dx)
        # acc starts at 0.0 and 0.0 + p == p, so the sum is exactly p_1 + p_2 + ... in order.
        np.add(acc, dx, out=acc)
    return acc


def ts_std(x: Any, n: int, ddof: int = 1) -> np.ndarray:
    x = _panel(x, "ts_std")
    n, ddof = _lit(n, "ts_std", "n"), _lit(ddof, "ts_std", "ddof")
    out = np.full(x.shape, _NAN)
    if n > x.shape[0] or n - ddof <= 0:
        return out
    with np.errstate(all="ignore"):
        m = ts_mean(x, n)
        out[n - 1 :] = np.sqrt(_dev_product_sum(x, x, n, m, m) / (n - ddof))
    return finite(out)


def _flat(x: np.ndarray, n: int) -> np.ndarray:
    """Whether all n values of each full window are equal, for rows n-1.."""
    hi = _window_fold(x, n, np.maximum)[n - 1 :]
    return hi == _window_fold(x, n, np.minimum)[n - 1 :]


def ts_corr(x: Any, y: Any, n: int) -> np.ndarray:
    x, y = np.broadcast_arrays(_arr(x), _arr(y))
    x, y = _panel(x, "ts_corr"), _panel(y, "ts_corr")
    n = _lit(n, "ts_corr", "n")
    out = np.full(x.shape, _NAN)
    if n > x.shape[0]:
        return out
    with np.errstate(all="ignore"):
        mx, my = ts_mean(x, n), ts_mean(y, n)
        cov = _dev_product_sum(x, y, n, mx, my)
        vx, vy = _dev_product_sum(x, x, n, mx, mx), _dev_product_sum(y, y, n, my, my)
        # finite(): vx * vy can overflow while cov does not, and cov / inf would be 0 (G1).
        r = cov / np.sqrt(finite(vx * vy))
        # A constant window has zero variance, but its rounded mean can leave vx ~1e-33 and a
        # meaningless ratio, so test constancy exactly as well.
        flat = _flat(x, n) | _flat(y, n)
        np.copyto(r, _NAN, where=(vx == 0) | (vy == 0) | flat)
        out[n - 1 :] = r
    return finite(out)


def _smooth(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Exponential smoothing seeded with the mean of each entity's first n valid values."""
    valid = ~np.isnan(x)
    keep = 1.0 - alpha
    out = np.empty(x.shape)
    state = np.full(x.shape[1], _NAN)  # NaN until seeded, so updates stay NaN too
    acc = np.zeros(x.shape[1])  # time-ordered sum of the valid values before the seed
    count = np.zeros(x.shape[1], dtype=np.int64)
    tmp = np.empty_like(state)
    pending = x.shape[1] > 0
    with np.errstate(all="ignore"):
        for t in range(x.shape[0]):
            new = out[t]
            np.multiply(alpha, x[t], out=new)
            np.multiply(keep, state, out=tmp)
            np.add(new, tmp, out=new)
            # A NaN input gives NaN and carries the state over; an unseeded state gives NaN.
            state = np.where(valid[t], new, state)
            if pending:
                v = valid[t] & (count < n)
                acc += np.where(v, x[t], 0.0)  # adding an exact 0.0 keeps the sum's order
                count += v
                seeded = v & (count == n)
                if seeded.any():
                    state = np.where(seeded, acc / n, state)
                    new[seeded] = state[seeded]
                pending = bool((count < n).any())
    return finite(out)


def ema(x: Any, n: int) -> np.ndarray:
    n = _lit(n, "ema", "n")
    return _smooth(_panel(x, "ema"), n, 2.0 / (n + 1))


def wilder(x: Any, n: int) -> np.ndarray:
    n = _lit(n, "wilder", "n")
    return _smooth(_panel(x, "wilder"), n, 1.0 / n)


def ttm(x: Any) -> np.ndarray:
    return ts_sum(x, 4)


def avg_balance(x: Any, k: int = 1) -> np.ndarray:
    x = _panel(x, "avg_balance")
    with np.errstate(all="ignore"):
        return finite((x + _shift(x, _lit(k, "avg_balance", "k"))) / 2.0)


# --- cross-sectional -----------------------------------------------------------------------

def cs_rank(x: Any) -> np.ndarray:
    """Average 1-based rank of each valid value in its period, divided by the valid count."""
    x = _panel(x, "cs_rank")
    entities = x.shape[1]
    if x.size == 0:
        return np.full(x.shape, _NAN)
    missing = np.isnan(x)
    # NaN-free keys keep numpy on its SIMD argsort (6x faster here); +inf still sorts them last.
    order = np.argsort(np.where(missing, np.inf, x), axis=1)
    s = np.take_along_axis(x, order, axis=1)
    j = np.broadcast_to(np.arange(entities), x.shape)
    # NaN != NaN, so every NaN is a tie group of its own and never joins a valid one.
    starts = np.ones(x.shape, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    ends = np.ones(x.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, j, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, j, entities)[:, ::-1], axis=1)[:, ::-1]
    count = (~missing).sum(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        ranked = ((first + last) / 2.0 + 1.0) / count
    ranked[np.isnan(s)] = _NAN
    out = np.empty(x.shape)
    np.put_along_axis(out, order, ranked, axis=1)
    return out


def _row_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(valid mask, valid count, mean) per period; sums run left to right over entities."""
    valid = ~np.isnan(x)
    count = valid.sum(axis=1, keepdims=True)
    if x.shape[1] == 0:
        return valid, count, np.full((x.shape[0], 1), _NAN)
    # cumsum's last column is the sequential sum, reproducible by a plain scalar loop.
    total = np.cumsum(np.where(valid, x, 0.0), axis=1)[:, -1:]
    with np.errstate(all="ignore"):
        return valid, count, total / count


def cs_zscore(x: Any) -> np.ndarray:
    x = _panel(x, "cs_zscore")
    if x.shape[1] == 0:
        return np.empty(x.shape)
    valid, count, mean = _row_stats(x)
    with np.errstate(all="ignore"):
        d = x - mean
        ss = np.cumsum(np.where(valid, d * d, 0.0), axis=1)[:, -1:]
        # finite(): an overflowed sum of squares must not turn d / inf into a z-score of 0 (G1).
        std = finite(np.sqrt(ss / count))
        z = d / std
        # Equal values have std 0, but a rounded mean (0.1 * 3 / 3) leaves a tiny std and
        # z = +-1, so test constancy exactly; fmax/fmin skip NaN without warning.
        flat = np.fmax.reduce(x, axis=1, keepdims=True) == np.fmin.reduce(x, axis=1,
                                                                          keepdims=True)
        np.copyto(z, _NAN, where=(count < 2) | (std == 0) | flat)
    return finite(z)


def cs_demean(x: Any) -> np.ndarray:
    x = _panel(x, "cs_demean")
    _, _, mean = _row_stats(x)
    with np.errstate(all="ignore"):
        return finite(x - mean)


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "abs": abs_, "sign": sign, "log": log, "exp": exp, "sqrt": sqrt, "round": round_,
    "min": min_, "max": max_, "clip": clip, "if_": if_,
    "coalesce": coalesce, "isnull": isnull, "div": div, "ffill": ffill,
    "lag": lag, "diff": diff, "growth": growth,
    "ts_sum": ts_sum, "ts_mean": ts_mean, "ts_min": ts_min, "ts_max": ts_max,
    "ts_std": ts_std, "ts_corr": ts_corr, "ema": ema, "wilder": wilder,
    "ttm": ttm, "avg_balance": avg_balance,
    "cs_rank": cs_rank, "cs_zscore": cs_zscore, "cs_demean": cs_demean,
}
