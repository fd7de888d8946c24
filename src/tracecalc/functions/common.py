"""What every kernel shares: float64 coercion, the no-inf rule, panel and literal checks."""

from __future__ import annotations

import operator
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


def _real(value: Any, fn: str, param: str) -> float:
    """Check a real-number literal against the bounds model.SIGNATURES gives it."""
    spec = next(p for p in SIGNATURES[fn].params if p.name == param)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: {param} must be a number, got {value!r}")
    v = float(value)
    if not (np.isfinite(v) and spec.lo <= v <= spec.hi):
        raise ValueError(f"{fn}: {param}={v!r} is outside [{spec.lo:g}, {spec.hi:g}]")
    return v
