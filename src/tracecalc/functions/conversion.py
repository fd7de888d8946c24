"""Frequency conversion: ``asof``, a coarser series as it was known on each date, and the
downsampling functions (``quarterly_last``, ...), a finer series aggregated per period.

Their kernels are the identity: a run hands them the input already converted by
``asof_panel`` or ``downsample_panel`` (work.RunIO, explain), so the compiled formula and
the tree walk (``evaluator.interpret``) see one panel on the formula's own calendar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracecalc.functions.common import _lit, _panel, finite


def asof(x: Any, max_age: int = 0) -> np.ndarray:
    """See ``asof_panel``: the input arrives aligned already (a copy of it)."""
    _lit(max_age, "asof", "max_age")
    return finite(np.array(_panel(x, "asof"), dtype=np.float64))


def converted(name: str):
    """The identity kernel of a downsampling function: its input arrives aggregated."""
    def kernel(x: Any) -> np.ndarray:
        return finite(np.array(_panel(x, name), dtype=np.float64))
    kernel.__name__ = name
    return kernel


def downsample_panel(panel: np.ndarray, period: np.ndarray, periods: int, how: str,
                     complete: np.ndarray) -> np.ndarray:
    """A finer panel (rows: its calendar) -> a (periods, entities) panel of a coarser one.

    ``period[i]`` is the coarser period that row i falls in (-1: none of them; the rows of
    one period are consecutive), ``complete[j]`` whether the finer calendar reaches period
    j's last date (else NaN: no partial periods). ``how``: last (the latest present value),
    sum, mean, min, max (over the present values; NaN if none), count (present values).
    Vectorised: one ``reduceat`` per period boundary set."""
    panel = np.asarray(panel, dtype=np.float64)
    out = np.full((periods, panel.shape[1]), np.nan)
    rows = np.flatnonzero(period >= 0)
    if not len(rows) or not panel.shape[1]:
        return out
    x, p = panel[rows], period[rows]
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    at = p[starts]
    present = ~np.isnan(x)
    count = np.add.reduceat(present, starts, axis=0).astype(np.float64)
    with np.errstate(all="ignore"):
        if how == "count":
            got = count
        elif how == "last":
            idx = np.where(present, np.arange(len(x))[:, None], -1)
            last = np.maximum.reduceat(idx, starts, axis=0)
            got = np.take_along_axis(x, np.maximum(last, 0), axis=0)
        elif how in ("min", "max"):
            fold = np.fmin if how == "min" else np.fmax  # skip NaN
            got = fold.reduceat(x, starts, axis=0)
        else:
            total = np.add.reduceat(np.where(present, x, 0.0), starts, axis=0)
            got = total / count if how == "mean" else total
        if how != "count":
            got = np.where(count > 0, got, np.nan)
    out[at] = got
    out[~np.asarray(complete, dtype=bool)] = np.nan
    return finite(out)


def asof_panel(entity_ids: np.ndarray, periods: np.ndarray, known_at: np.ndarray,
               values: np.ndarray, calendar: np.ndarray, columns: np.ndarray,
               max_age: int = 0) -> np.ndarray:
    """Versions of a coarser series -> a panel on ``calendar`` (rows) x ``columns``.

    Each version is (entity, period, known_at, value; NaN: known to be missing). On date d
    an entity's value is that of the latest period whose value was known by d (some
    version with known_at <= d), at its latest version known by d: NaN if that version is
    NaN, never an older period's value. ``max_age`` > 0 gives NaN where that period ended
    more than ``max_age`` days before d. Vectorised: one sort of the versions by (entity,
    known_at), a running maximum of (period, known_at), one ``searchsorted`` per date."""
    calendar = np.asarray(calendar, dtype="datetime64[D]")
    out = np.full((len(calendar), len(columns)), np.nan)
    col = np.searchsorted(columns, entity_ids)
    ok = (col < len(columns))
    ok[ok] &= columns[col[ok]] == entity_ids[ok]
    if not ok.any() or len(calendar) == 0:
        return out
    col, p, k, v = col[ok], periods[ok], known_at[ok], values[ok]
    pd_ = p.astype("datetime64[D]").astype(np.int64)
    kd = k.astype("datetime64[D]").astype(np.int64) + _SHIFT
    order = np.lexsort((pd_, kd, col))  # by entity, then known_at, then period
    col, pd_, kd, v = col[order], pd_[order], kd[order], v[order]
    n = len(v)
    counts = np.bincount(col, minlength=len(columns))
    start = (np.cumsum(counts) - counts)[col]  # where each version's entity begins
    # rank within the entity by period, ties by known_at: the best version known so far is
    # the highest rank so far; the entity in the high digits restarts the running maximum
    by_period = np.lexsort((pd_, col))  # stable: equal periods keep known_at order
    rank = np.empty(n, np.int64)
    rank[by_period] = np.arange(n) - start[by_period]
    m = np.int64(counts.max())
    run = np.maximum.accumulate(col.astype(np.int64) * m + rank)
    best = by_period[start + (run - col.astype(np.int64) * m)]  # its position, per version
    key = col.astype(np.int64) * _DAYS + kd  # sorted
    days = calendar.astype(np.int64) + _SHIFT
    for j0 in range(0, len(columns), _BLOCK):  # bounded memory: a block of entities
        js = np.arange(j0, min(j0 + _BLOCK, len(columns)), dtype=np.int64)
        q = js[None, :] * _DAYS + days[:, None]
        pos = np.searchsorted(key, q.ravel(), side="right").reshape(q.shape) - 1
        known = pos >= 0
        known[known] = col[pos[known]] == np.broadcast_to(js, q.shape)[known]
        at = best[pos[known]]
        vals = v[at]
        if max_age:
            age = (days[:, None] - _SHIFT - np.zeros_like(q))[known] - pd_[at]
            vals = np.where(age > max_age, np.nan, vals)
        block = out[:, j0:j0 + len(js)]
        block[known] = vals
    return out


_SHIFT = 800_000  # days: every date from 0001-01-01 on is positive
_DAYS = 4_000_000  # more than the days from 0001-01-01 to 9999-12-31, shifted
_BLOCK = 1_000  # entities per look-up block
