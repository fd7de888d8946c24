"""Point-in-time versions of a formula's records, computed in one vectorised evaluation.

A formula over inputs with versions (report dates, restatements) has a value at (entity,
period p) as known on each date its inputs changed. Each entity gets a block of columns: a
base column (every input value known at or before its own period), then one column per
later date on which one of its input values became known (a *step*), in date order. An
input's panel over these columns holds, in step column s, each point's latest version known
by s (``expand``); the compiled formula runs on them as on any panel (it works entity by
entity, so columns never mix: cross-sectional formulas are not evaluated this way). The last
column of a block is the latest view, what ``tc_records`` holds.

A version of the formula at (e, p) is known on ``max(step, p)``: the steps up to p collapse
into the one version known at p, computed from what was known then; every later step whose
value differs (bit for bit; NaN after a value: "became missing") adds one (``extract``).
An input point known at or before its own period needs no step: the formula never reads
ahead, so at p it is known. A formula's version history is stored only when it is more than
one value known at its period, exactly like a data item's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NEVER = np.datetime64("0001-01-01", "D")  # the base column's step: before everything
_DAYS = 1 << 22  # more days than 0001-01-01 to 9999-12-31


def _day(d) -> np.ndarray:
    return np.asarray(d, "datetime64[D]").astype(np.int64) - _NEVER.astype(np.int64)


@dataclass(frozen=True)
class Layout:
    """The columns: ``block[c]`` is column c's entity position (into ``ids``), ``step[c]``
    its date (``_NEVER`` for a block's base column); ``starts[i]`` the first column of
    entity ``ids[i]``, ``starts[-1]`` the number of columns."""

    ids: np.ndarray
    starts: np.ndarray
    block: np.ndarray
    step: np.ndarray

    @property
    def last(self) -> np.ndarray:
        """The latest column of each entity."""
        return self.starts[1:] - 1


def layout(ids: np.ndarray, inputs) -> Layout:
    """The column layout for entities ``ids`` (sorted) given each input's versions
    ``(entity ids, periods, known_at, values)``: one step per date on which some input
    value of the entity became known after its period."""
    ids = np.asarray(ids, dtype=np.int64)
    es, ks = [np.empty(0, np.int64)], [np.empty(0, "datetime64[D]")]
    for e, p, k, _ in inputs:
        late = k > p
        es.append(np.asarray(e, np.int64)[late])
        ks.append(np.asarray(k, "datetime64[D]")[late])
    e, k = np.concatenate(es), np.concatenate(ks)
    pos = np.searchsorted(ids, e)
    ok = pos < len(ids)
    ok[ok] &= ids[pos[ok]] == e[ok]
    pairs = np.unique(np.stack([pos[ok], k[ok].astype(np.int64)]), axis=1) if ok.any() else \
        np.empty((2, 0), np.int64)
    # per entity: its base column, then its steps in date order
    counts = np.bincount(pairs[0], minlength=len(ids)) + 1
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    block = np.repeat(np.arange(len(ids)), counts)
    step = np.full(starts[-1], _NEVER)
    within = np.arange(pairs.shape[1]) - (np.cumsum(counts - 1) - (counts - 1))[pairs[0]]
    step[starts[pairs[0]] + 1 + within] = pairs[1].astype("datetime64[D]")
    return Layout(ids, starts, block, step)


def expand(versions, calendar: np.ndarray, lay: Layout) -> np.ndarray:
    """One input over the layout: in each column, every point's latest version known by the
    column's step (NaN where none is)."""
    e, p, k, v = versions
    calendar = np.asarray(calendar, dtype="datetime64[D]")
    out_shape = (len(calendar), int(lay.starts[-1]))
    e, p = np.asarray(e, np.int64), np.asarray(p, "datetime64[D]")
    k, v = np.asarray(k, "datetime64[D]"), np.asarray(v, np.float64)
    blk = np.searchsorted(lay.ids, e)
    row = np.searchsorted(calendar, p)
    ok = (blk < len(lay.ids)) & (row < len(calendar))
    ok[ok] &= (lay.ids[blk[ok]] == e[ok]) & (calendar[row[ok]] == p[ok])
    blk, row, p, k, v = blk[ok], row[ok], p[ok], k[ok], v[ok]
    # the first column a version holds in: the base one if known by its period, else its
    # known_at's step (every such date is a step of its entity)
    col = lay.starts[blk].copy()
    late = k > p
    if late.any():  # the column of the step on its known_at (the layout is in step order)
        key = lay.block.astype(np.int64) * _DAYS + _day(lay.step)
        col[late] = np.searchsorted(key, blk[late].astype(np.int64) * _DAYS + _day(k[late]))
    # one id per version, increasing with known_at within a point; an even id per block
    # start (below all of its entity's ids, above all earlier entities') stands for NaN, so a
    # running maximum along the columns carries each version forward within its block only
    order = np.lexsort((k, p, blk))
    ident = np.empty(len(v), np.int64)
    ident[order] = 2 * np.arange(len(v), dtype=np.int64) + 1
    first_of_block = np.searchsorted(blk[order], np.arange(len(lay.ids)))
    grid = np.full(out_shape, -1, dtype=np.int64)
    grid[:, lay.starts[:-1]] = 2 * first_of_block
    np.maximum.at(grid, (row, col), ident)
    np.maximum.accumulate(grid, axis=1, out=grid)
    values = np.append(v[order], np.nan)  # odd id 2i+1 -> version i; even -> NaN
    which = np.where(grid % 2 == 1, (grid - 1) // 2, len(v))
    return values[which]


def extract(out: np.ndarray, calendar: np.ndarray, lay: Layout):
    """The formula's results over the layout -> (latest panel, periods x entities) and its
    versions: (entity ids, periods, known_at, values) of every version, and a mask of the
    ones to store (the points whose history is more than one value known at its period)."""
    calendar = np.asarray(calendar, dtype="datetime64[D]")
    latest = out[:, lay.last]
    n_rows, n_cols = out.shape
    starts = lay.starts[:-1]
    first = np.zeros(n_cols, bool)
    first[starts] = True
    # step column c is known at max(step, period): up to the period, only the last such
    # column of a block counts (what was known at the period)
    le = lay.step[None, :] <= calendar[:, None]
    nxt_le = np.zeros_like(le)
    nxt_le[:, :-1] = le[:, 1:] & ~first[None, 1:]
    collapsed = le & ~nxt_le  # the last column known by the period
    nan = np.isnan(out)
    prev = np.zeros_like(out)
    prev[:, 1:] = out[:, :-1]
    prev_nan = np.zeros_like(nan)
    prev_nan[:, 1:] = nan[:, :-1]
    differs = (out.view(np.int64) != prev.view(np.int64)) & ~(nan & prev_nan)
    # a later step (never a block's first column: that is its base) against the one before
    keep = collapsed | (~le & differs)
    # no version before the first value: a leading NaN says "not known yet"
    present = keep & ~nan
    seen = np.cumsum(present, axis=1)
    base = np.concatenate([np.zeros((n_rows, 1), seen.dtype), seen[:, :-1]], axis=1)[:, starts]
    seen -= np.repeat(base, np.diff(lay.starts), axis=1)
    keep &= seen > 0
    r, c = np.nonzero(keep)
    periods = calendar[r]
    known = np.maximum(lay.step[c], periods)
    ents = lay.ids[lay.block[c]]
    vals = out[r, c]
    # store a point's versions unless it has one, known at its period
    key = lay.block[c].astype(np.int64) * n_rows + r
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    store = (cnt[inv] > 1) | (known != periods)
    return latest, (ents, periods, known, vals), store



def versions_of(compiled, inputs, calendar: np.ndarray, ids: np.ndarray):
    """Every version of an expression over ``inputs`` (each one's versions at ``ids``, in
    the order of ``compiled.inputs``): (entity ids, periods, known_at, values), what
    ``asof`` of that expression reads (``asof(ttm(eps))``)."""
    lay = layout(ids, inputs)
    out = compiled(*(expand(v, calendar, lay) for v in inputs))
    return extract(out, calendar, lay)[1]
