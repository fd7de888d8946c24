"""Window statistics built on deviations from the window's mean: the least-squares line on
time (slope, R-squared, residual) and the higher moments (skewness, kurtosis).

Every sum runs oldest first over the deviations ``x_i - m`` (``m = ts_mean``), so a plain
scalar loop (the test reference) gets the same bits; docs/formula-language.md gives each
formula in exactly the order computed here. A window whose values are all equal is tested
exactly: its rounded mean (``(0.1 + 0.1 + 0.1) / 3 != 0.1``) would leave tiny deviations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracecalc.functions.common import _NAN, _lit, _panel, finite
from tracecalc.functions.timeseries import _flat, _windows, ts_mean


def _deviation_sums(x: np.ndarray, n: int, m: np.ndarray, powers: tuple[int, ...],
                    trend: bool = False) -> dict:
    """For rows n-1..: sum of d**k for each k in ``powers`` (d = x_i - m, d**3 as d*d*d and
    d**4 as (d*d)*(d*d)) and, with ``trend``, sum of c_i * d, c_i = i - (n + 1) / 2."""
    m = m[n - 1 :]
    sums = {k: np.zeros(m.shape) for k in powers}
    if trend:
        sums["t"] = np.zeros(m.shape)
    d, dd = np.empty(m.shape), np.empty(m.shape)
    centre = (n + 1) / 2
    for i, s in enumerate(_windows(x, n), start=1):
        np.subtract(s, m, out=d)
        np.multiply(d, d, out=dd)
        for k in powers:
            # each sum starts at 0.0, and 0.0 + p == p: exactly p_1 + p_2 + ... in order
            np.add(sums[k], d if k == 1 else dd if k == 2 else dd * d if k == 3 else dd * dd,
                   out=sums[k])
        if trend:
            np.add(sums["t"], (i - centre) * d, out=sums["t"])
    return {k: finite(v) for k, v in sums.items()}


def _line(x: Any, n: int, fn: str):
    """(x, n, rows n-1.. of m, Sxy, Sxx, Stt, flat), or None when no window fits."""
    x = _panel(x, fn)
    n = _lit(n, fn, "n")
    if n > x.shape[0]:
        return x, n, None
    m = ts_mean(x, n)
    with np.errstate(all="ignore"):
        sums = _deviation_sums(x, n, m, (2,), trend=True)
    return x, n, (m[n - 1 :], sums["t"], sums[2], n * (n * n - 1) / 12, _flat(x, n))


def ts_slope(x: Any, n: int) -> np.ndarray:
    """Sxy / Stt: 0 on a flat window, NaN for n = 1 (Stt = 0)."""
    x, n, fit = _line(x, n, "ts_slope")
    out = np.full(x.shape, _NAN)
    if fit is None or n == 1:
        return out
    _, sxy, _, stt, flat = fit
    out[n - 1 :] = np.where(flat, 0.0, sxy / stt)
    return finite(out)


def ts_rsquare(x: Any, n: int) -> np.ndarray:
    """min(1, (Sxy * Sxy) / (Stt * Sxx)): NaN on a flat window (nothing to explain)."""
    x, n, fit = _line(x, n, "ts_rsquare")
    out = np.full(x.shape, _NAN)
    if fit is None or n == 1:
        return out
    _, sxy, sxx, stt, flat = fit
    with np.errstate(all="ignore"):
        # finite(): an overflowed product must not turn a ratio into 0 or 1 (G1).
        r = finite(sxy * sxy) / finite(stt * sxx)
        r = np.where(r > 1.0, 1.0, r)  # rounding can leave 1 + 2**-52 on a straight line
    out[n - 1 :] = np.where(flat, _NAN, r)
    return finite(out)


def ts_resi(x: Any, n: int) -> np.ndarray:
    """(x[t] - m) - slope * ((n - 1) / 2): today's distance from the line; 0 on a flat
    window, NaN for n = 1."""
    x, n, fit = _line(x, n, "ts_resi")
    out = np.full(x.shape, _NAN)
    if fit is None or n == 1:
        return out
    m, sxy, _, stt, flat = fit
    with np.errstate(all="ignore"):
        slope = finite(sxy / stt)
        r = finite(x[n - 1 :] - m) - finite(slope * ((n - 1) / 2))
    out[n - 1 :] = np.where(flat, 0.0, r)
    return finite(out)


def _moments(x: Any, n: int, fn: str, least: int):
    x = _panel(x, fn)
    n = _lit(n, fn, "n")
    if n > x.shape[0] or n < least:
        return x, n, None
    m = ts_mean(x, n)
    with np.errstate(all="ignore"):
        sums = _deviation_sums(x, n, m, (2, 3, 4) if least == 4 else (2, 3))
    return x, n, ({k: v / n for k, v in sums.items()}, _flat(x, n))


def ts_skew(x: Any, n: int) -> np.ndarray:
    """(sqrt(n (n - 1)) / (n - 2)) * (m3 / (m2 * sqrt(m2))), m_k = sum(d**k) / n, as pandas'
    rolling skew: NaN for n < 3 and on a flat window."""
    x, n, mom = _moments(x, n, "ts_skew", 3)
    out = np.full(x.shape, _NAN)
    if mom is None:
        return out
    mk, flat = mom
    with np.errstate(all="ignore"):
        g = finite(mk[3] / finite(mk[2] * np.sqrt(mk[2])))
        out[n - 1 :] = np.where(flat | (mk[2] == 0), _NAN, (math.sqrt(n * (n - 1)) / (n - 2)) * g)
    return finite(out)


def ts_kurt(x: Any, n: int) -> np.ndarray:
    """((n - 1) / ((n - 2) (n - 3))) * ((n + 1) * (m4 / (m2 * m2)) - 3 (n - 1)): excess
    kurtosis, bias-corrected as pandas' rolling kurt; NaN for n < 4 and on a flat window."""
    x, n, mom = _moments(x, n, "ts_kurt", 4)
    out = np.full(x.shape, _NAN)
    if mom is None:
        return out
    mk, flat = mom
    with np.errstate(all="ignore"):
        ratio = finite(mk[4] / finite(mk[2] * mk[2]))
        k = finite((n + 1) * ratio) - 3 * (n - 1)
        out[n - 1 :] = np.where(flat | (mk[2] == 0), _NAN, ((n - 1) / ((n - 2) * (n - 3))) * k)
    return finite(out)
