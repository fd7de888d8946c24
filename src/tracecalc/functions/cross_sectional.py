"""Kernels across the entity axis: each period's rank, bucket, z-score, demeaned and scaled
value, winsorised value and regression residual.

Each takes ``groups`` (keyword only): one integer code per entity, -1 for none. With it the
kernel works within each group of each period separately (``sections.Sections``); a group
with fewer than 2 present values gives NaN, and so does an entity in no group.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracecalc.functions.common import _NAN, _arr, _lit, _panel, _real, finite
from tracecalc.functions.sections import Sections

# --- ranks ---------------------------------------------------------------------------------


def _ranks(x: np.ndarray, sec: Sections) -> tuple[np.ndarray, np.ndarray]:
    """(first + last, count): for each cell, the 0-based positions of the first and last
    value equal to it in its sorted section, summed, and its section's present count."""
    entities = x.shape[1]
    missing = np.isnan(x)
    # NaN-free keys keep numpy on its SIMD argsort (6x faster here); +inf still sorts them last.
    order = np.argsort(np.where(missing, np.inf, x), axis=1)
    if sec.grouped:
        # A stable sort by group keeps the values of each group in order.
        by_group = np.argsort(sec.sort_code[order], axis=1, kind="stable")
        order = np.take_along_axis(order, by_group, axis=1)
    s = np.take_along_axis(x, order, axis=1)
    j = np.broadcast_to(np.arange(entities), x.shape)
    # NaN != NaN, so every NaN is a tie group of its own and never joins a valid one.
    starts = np.ones(x.shape, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    if sec.grouped:
        g = sec.sort_code[order]
        new_group = np.ones(x.shape, dtype=bool)
        new_group[:, 1:] = g[:, 1:] != g[:, :-1]
        starts |= new_group
    ends = np.ones(x.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, j, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, j, entities)[:, ::-1], axis=1)[:, ::-1]
    both = first + last
    if sec.grouped:
        base = np.maximum.accumulate(np.where(new_group, j, 0), axis=1)
        both -= 2 * base
        counts = np.zeros((x.shape[0], sec.count_sections + 1), dtype=np.int64)
        counts[:, :-1] = sec.count(~missing)
        count = np.empty(x.shape, dtype=np.int64)
        np.put_along_axis(count, order, np.take_along_axis(counts, g.astype(np.int64), axis=1),
                          axis=1)
    else:
        count = (~missing).sum(axis=1, keepdims=True)
    out = np.empty(x.shape, dtype=np.int64)
    np.put_along_axis(out, order, both, axis=1)
    return out, count


def _start(x: Any, fn: str, groups: Any) -> tuple[np.ndarray, Sections]:
    x = _panel(x, fn)
    sec = Sections(x.shape[1], groups, fn)
    return sec.mask(x), sec


def cs_rank(x: Any, *, groups: Any = None) -> np.ndarray:
    """Average 1-based rank of each valid value in its period, divided by the valid count."""
    x, sec = _start(x, "cs_rank", groups)
    if sec.empty:
        return np.full(x.shape, _NAN)
    both, count = _ranks(x, sec)
    with np.errstate(all="ignore"):
        ranked = (both / 2.0 + 1.0) / count
    ranked[np.isnan(x) | (count < sec.least)] = _NAN
    return ranked


def cs_quantile(x: Any, q: int, *, groups: Any = None) -> np.ndarray:
    """Bucket ceil(q * rank / count) in 1..q, rank being cs_rank's average rank; computed in
    integers (2 * rank is whole), so a rank on a bucket's edge is never rounded over it."""
    q = _lit(q, "cs_quantile", "q")
    x, sec = _start(x, "cs_quantile", groups)
    if sec.empty:
        return np.full(x.shape, _NAN)
    both, count = _ranks(x, sec)
    twice = 2 * np.maximum(count, 1)
    bucket = ((both + 2) * q + twice - 1) // twice
    return np.where(np.isnan(x) | (count < sec.least), _NAN, bucket.astype(np.float64))


# --- moments -------------------------------------------------------------------------------


def _mean(x: np.ndarray, sec: Sections):
    """(valid mask, per-section count, per-section mean)."""
    valid = ~np.isnan(x)
    count = sec.count(valid)
    with np.errstate(all="ignore"):
        return valid, count, sec.sum(np.where(valid, x, 0.0)) / count


def _std(d: np.ndarray, valid: np.ndarray, count: np.ndarray, sec: Sections) -> np.ndarray:
    """Population std per section from the deviations d; finite(): an overflowed sum of
    squares must not make d / std or k * std meaningless (G1)."""
    with np.errstate(all="ignore"):
        return finite(np.sqrt(sec.sum(np.where(valid, d * d, 0.0)) / count))


def _flat(x: np.ndarray, sec: Sections) -> np.ndarray:
    # Equal values have std 0, but a rounded mean (0.1 * 3 / 3) leaves a tiny one, so test
    # constancy exactly; fmax/fmin skip NaN without warning.
    return sec.fmax(x) == sec.fmin(x)


def cs_zscore(x: Any, *, groups: Any = None) -> np.ndarray:
    x, sec = _start(x, "cs_zscore", groups)
    if sec.empty:
        return np.full(x.shape, _NAN)
    valid, count, mean = _mean(x, sec)
    with np.errstate(all="ignore"):
        d = x - sec.spread(mean)
        std = _std(d, valid, count, sec)
        z = d / sec.spread(std)
        bad = (count < 2) | (std == 0) | _flat(x, sec)
        np.copyto(z, _NAN, where=sec.spread(bad, True))
    return finite(z)


def cs_demean(x: Any, *, groups: Any = None) -> np.ndarray:
    x, sec = _start(x, "cs_demean", groups)
    if sec.empty:
        return np.full(x.shape, _NAN)
    _, count, mean = _mean(x, sec)
    with np.errstate(all="ignore"):
        r = x - sec.spread(mean)
    np.copyto(r, _NAN, where=sec.spread(count < sec.least, True))
    return finite(r)


def cs_scale(x: Any, a: float = 1.0, *, groups: Any = None) -> np.ndarray:
    """(x / sum of the period's absolute values) * a."""
    a = _real(a, "cs_scale", "a")
    x, sec = _start(x, "cs_scale", groups)
    if sec.empty:
        return np.full(x.shape, _NAN)
    valid = ~np.isnan(x)
    with np.errstate(all="ignore"):
        total = finite(sec.sum(np.where(valid, np.abs(x), 0.0)))
        r = finite(x / sec.spread(total)) * a
    np.copyto(r, _NAN, where=sec.spread(sec.count(valid) < sec.least, True))
    return finite(r)


def cs_winsorize(x: Any, k: float, *, groups: Any = None) -> np.ndarray:
    """min(max(x, mean - k * std), mean + k * std), population std; a period (group)
    whose values are all equal keeps them."""
    k = _real(k, "cs_winsorize", "k")
    x, sec = _start(x, "cs_winsorize", groups)
    if sec.empty:
        return np.full(x.shape, _NAN)
    valid, count, mean = _mean(x, sec)
    with np.errstate(all="ignore"):
        std = _std(x - sec.spread(mean), valid, count, sec)
        reach = finite(k * std)
        lo, hi = finite(mean - reach), finite(mean + reach)
        r = np.minimum(np.maximum(x, sec.spread(lo)), sec.spread(hi))
    r = np.where(sec.spread(_flat(x, sec), False), x, r)
    np.copyto(r, _NAN, where=sec.spread(count < sec.least, True))
    return finite(r)


def cs_resid(y: Any, x: Any, *, groups: Any = None) -> np.ndarray:
    """(y - my) - b * (x - mx), b = Sxy / Sxx over the period's pairs with both present."""
    y, x = np.broadcast_arrays(_arr(y), _arr(x))
    y, sec = _start(y, "cs_resid", groups)
    x = sec.mask(_panel(x, "cs_resid"))
    if sec.empty:
        return np.full(y.shape, _NAN)
    pair = ~np.isnan(x) & ~np.isnan(y)
    x, y = np.where(pair, x, _NAN), np.where(pair, y, _NAN)
    count = sec.count(pair)
    with np.errstate(all="ignore"):
        mx = sec.sum(np.where(pair, x, 0.0)) / count
        my = sec.sum(np.where(pair, y, 0.0)) / count
        dx, dy = x - sec.spread(mx), y - sec.spread(my)
        sxy = finite(sec.sum(np.where(pair, dx * dy, 0.0)))
        sxx = finite(sec.sum(np.where(pair, dx * dx, 0.0)))
        b = finite(sxy / sxx)
        r = finite(dy) - finite(sec.spread(b) * dx)
    bad = (count < 2) | (sxx == 0) | _flat(x, sec)
    np.copyto(r, _NAN, where=sec.spread(bad, True))
    return finite(r)
