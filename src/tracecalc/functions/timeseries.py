"""Kernels along the period axis: shifts, rolling windows and exponential smoothing.

Windows are full or NaN; sums run oldest first so that a plain scalar loop (the test
reference) gets the same bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tracecalc.functions.common import _NAN, _arr, _lit, _panel, finite

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
    x, y = _pair(x, y, "ts_corr")
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


def _complete(x: np.ndarray, n: int) -> np.ndarray:
    """Whether all n values of each window are present, for rows n-1.. (n <= periods)."""
    seen = np.cumsum(np.isnan(x), axis=0, dtype=np.int64)
    missing = seen[n - 1 :].copy()
    missing[1:] -= seen[: x.shape[0] - n]
    return missing == 0


def _pair(x: Any, y: Any, fn: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.broadcast_arrays(_arr(x), _arr(y))
    return _panel(x, fn), _panel(y, fn)


def ts_cov(x: Any, y: Any, n: int) -> np.ndarray:
    """Sample covariance: the sum of the deviation products, oldest first, over n - 1."""
    x, y = _pair(x, y, "ts_cov")
    n = _lit(n, "ts_cov", "n")
    out = np.full(x.shape, _NAN)
    if n > x.shape[0] or n == 1:
        return out
    with np.errstate(all="ignore"):
        mx, my = ts_mean(x, n), ts_mean(y, n)
        out[n - 1 :] = finite(_dev_product_sum(x, y, n, mx, my)) / (n - 1)
    return finite(out)


def ts_product(x: Any, n: int) -> np.ndarray:
    # Oldest first, like ts_sum; an overflow anywhere stays inf (or NaN) and becomes NaN.
    return _window_fold(_panel(x, "ts_product"), _lit(n, "ts_product", "n"), np.multiply)


def decay_linear(x: Any, n: int) -> np.ndarray:
    """sum(i * x_i, i = 1..n, oldest first) / (n (n + 1) / 2): today weighs n."""
    x = _panel(x, "decay_linear")
    n = _lit(n, "decay_linear", "n")
    out = np.full(x.shape, _NAN)
    if n > x.shape[0]:
        return out
    acc = np.zeros((x.shape[0] - n + 1, x.shape[1]))
    with np.errstate(all="ignore"):
        for i, s in enumerate(_windows(x, n), start=1):
            np.add(acc, i * s, out=acc)  # 0.0 + 1 * x == x: the sum starts at the oldest
        out[n - 1 :] = finite(acc) / (n * (n + 1) / 2)
    return finite(out)


def ts_count(cond: Any, n: int) -> np.ndarray:
    """How many of the last n values are true; a missing one is not, and a window with
    nothing present is NaN (so an entity without data is not counted as 0)."""
    x = _panel(cond, "ts_count")
    n = _lit(n, "ts_count", "n")
    out = np.full(x.shape, _NAN)
    if n > x.shape[0]:
        return out
    present = ~np.isnan(x)
    true = np.zeros((x.shape[0] - n + 1, x.shape[1]), dtype=np.int64)
    seen = np.zeros(true.shape, dtype=bool)
    for s, p in zip(_windows(x, n), _windows(present, n), strict=True):
        true += p & (s != 0)
        seen |= p
    out[n - 1 :] = np.where(seen, true, _NAN)
    return out


def _smooth(x: np.ndarray, n: int, alpha: float, state: np.ndarray | None = None
            ) -> np.ndarray:
    """Exponential smoothing seeded with the mean of each entity's first n valid values;
    or continued from ``state``, each column's value before x's first row (every column
    seeded): the same operations in the same order, so the same bits."""
    valid = ~np.isnan(x)
    keep = 1.0 - alpha
    out = np.empty(x.shape)
    pending = x.shape[1] > 0 and state is None
    # NaN until seeded, so updates stay NaN too
    state = np.full(x.shape[1], _NAN) if state is None else np.array(state, dtype=np.float64)
    acc = np.zeros(x.shape[1])  # time-ordered sum of the valid values before the seed
    count = np.zeros(x.shape[1], dtype=np.int64)
    tmp = np.empty_like(state)
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


def smooth_from(func: str, x: np.ndarray, n: int, state: np.ndarray) -> np.ndarray:
    """``ema`` or ``wilder`` (``func``) of the rows ``x``, continued from ``state``: each
    column's last value before them (a seeded one: its smoothed state is its last value
    computed where its input was present). Bit for bit the rows a whole-history run gives."""
    alpha = 2.0 / (n + 1) if func == "ema" else 1.0 / n
    return _smooth(_panel(x, func), n, alpha, state)


def ttm(x: Any) -> np.ndarray:
    return ts_sum(x, 4)


def avg_balance(x: Any, k: int = 1) -> np.ndarray:
    x = _panel(x, "avg_balance")
    with np.errstate(all="ignore"):
        return finite((x + _shift(x, _lit(k, "avg_balance", "k"))) / 2.0)
