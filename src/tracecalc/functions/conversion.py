"""Frequency conversion: ``asof``, a coarser series as it was known on each date.

The kernel ``asof`` is the identity: a run hands it the input already aligned by
``asof_panel`` (work.RunIO, explain), so the compiled formula and the tree walk
(``evaluator.interpret``) see one panel on the formula's own calendar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracecalc.functions.common import _lit, _panel, finite


def asof(x: Any, max_age: int = 0) -> np.ndarray:
    """See ``asof_panel``: the input arrives aligned already (a copy of it)."""
    _lit(max_age, "asof", "max_age")
    return finite(np.array(_panel(x, "asof"), dtype=np.float64))


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
