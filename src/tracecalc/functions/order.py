"""Order statistics over a window along periods: rank, position of the extreme, quantile.

Like every window kernel, a window is full (all n values present) or the result is NaN.
Ranks and positions are counted with comparisons, one pass per position in the window; the
quantile sorts the windows, a block of periods at a time so memory stays bounded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tracecalc.functions.common import _NAN, _lit, _panel, _real, finite
from tracecalc.functions.timeseries import _complete, _windows

# Cells of window values sorted at once by ts_quantile (32 MB of float64).
_SORT_BLOCK = 1 << 22


def ts_rank(x: Any, n: int) -> np.ndarray:
    """(below + (ties + 1) / 2) / n for today's value: its average 1-based rank in the
    window (ties, today's value included, share the mean of their ranks) over n."""
    x = _panel(x, "ts_rank")
    n = _lit(n, "ts_rank", "n")
    out = np.full(x.shape, _NAN)
    if n > x.shape[0]:
        return out
    today = x[n - 1 :]
    below = np.zeros(today.shape, dtype=np.int64)
    ties = np.zeros(today.shape, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        for s in _windows(x, n):
            below += s < today
            ties += s == today
    # below + (ties + 1) / 2 is a whole or half number, exact; one rounding in / n.
    out[n - 1 :] = np.where(_complete(x, n), (below + (ties + 1) / 2.0) / n, _NAN)
    return out


def _argext(x: np.ndarray, n: int, better: np.ufunc) -> np.ndarray:
    out = np.full(x.shape, _NAN)
    if n > x.shape[0]:
        return out
    slices = _windows(x, n)
    best = next(slices).copy()
    pos = np.ones(best.shape)  # 1 is the oldest value of the window
    with np.errstate(invalid="ignore"):
        for i, s in enumerate(slices, start=2):
            # strictly better only: of equal extremes the oldest keeps its place
            b = better(s, best)
            np.copyto(best, s, where=b)
            np.copyto(pos, float(i), where=b)
    out[n - 1 :] = np.where(_complete(x, n), pos, _NAN)
    return out


def ts_argmax(x: Any, n: int) -> np.ndarray:
    return _argext(_panel(x, "ts_argmax"), _lit(n, "ts_argmax", "n"), np.greater)


def ts_argmin(x: Any, n: int) -> np.ndarray:
    return _argext(_panel(x, "ts_argmin"), _lit(n, "ts_argmin", "n"), np.less)


def ts_quantile(x: Any, n: int, q: float) -> np.ndarray:
    """With the window sorted v[0] <= ... <= v[n-1] and h = (n - 1) * q, i = floor(h):
    v[i] + (v[i+1] - v[i]) * (h - i), or v[i] when h is whole (pandas' linear rule)."""
    x = _panel(x, "ts_quantile")
    n, q = _lit(n, "ts_quantile", "n"), _real(q, "ts_quantile", "q")
    out = np.full(x.shape, _NAN)
    if n > x.shape[0]:
        return out
    h = (n - 1) * q
    i = math.floor(h)
    frac = h - i
    kth = [i, i + 1] if frac > 0 else [i]
    windows = sliding_window_view(x, n, axis=0)  # (rows, entities, n), a view
    res = np.empty(windows.shape[:2])
    step = max(1, _SORT_BLOCK // max(1, x.shape[1] * n))
    with np.errstate(all="ignore"):
        for r in range(0, windows.shape[0], step):
            part = np.partition(windows[r : r + step], kth, axis=-1)
            lo = part[..., i]
            res[r : r + step] = lo + (part[..., i + 1] - lo) * frac if frac > 0 else lo
    out[n - 1 :] = np.where(_complete(x, n), res, _NAN)
    return finite(out)
