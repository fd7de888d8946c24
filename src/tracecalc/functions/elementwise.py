"""Kernels that work cell by cell: operators, element-wise functions and missing data.

Operators (G1-G3 in docs/formula-language.md) follow Kleene logic for and/or/not and give
NaN, never +-inf, for what IEEE would overflow or divide by zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tracecalc.functions.common import _F64, _NAN, _arr, _lit, _panel, _real, finite

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


def log1p(x: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return finite(np.log1p(_arr(x)))  # log1p(-1) = -inf and x < -1 NaN: both NaN


def tanh(x: Any) -> np.ndarray:
    return finite(np.tanh(_arr(x)))  # in [-1, 1]; NaN stays NaN


def signed_power(x: Any, a: float) -> np.ndarray:
    """sign(x) * abs(x) ** a: 0 stays 0 (also for a = 0); 0 ** -a and overflow are NaN."""
    a = _real(a, "signed_power", "a")
    x = _arr(x)
    with np.errstate(all="ignore"):
        return finite(np.sign(x) * finite(np.power(np.abs(x), a)))


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
