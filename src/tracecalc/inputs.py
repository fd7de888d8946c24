"""How a batch's evaluation gets its inputs (``Runner``'s): this run's values where a formula
was recomputed, stored ones elsewhere, from a calendar row on; the versions ``asof`` reads;
and where a recursive formula (``ema`` at its root) continues from its last stored value.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from functools import partial

import numpy as np

from tracecalc import pit
from tracecalc.evaluator import from_panel
from tracecalc.facts import parse_asof_input, parse_downsample_input
from tracecalc.functions import asof_panel, smooth_from
from tracecalc.iothread import IOThread
from tracecalc.storage.versions import Versions
from tracecalc.task import Task

RESUME_ROWS = 64  # how far back a recursive formula looks for its last value before t

# where an evaluation takes an input from: this batch's (ids, panel, first row), a read of
# every entity from a row on (future, row; shared while consumers remain), or None (a read
# of the entities it needs)
Source = tuple[np.ndarray, np.ndarray, int] | tuple[Future, int] | None


class Inputs:
    """The input side of ``Runner`` (which sets every attribute used here)."""

    universe: np.ndarray
    inline: dict
    calendar: Callable
    downsample: Callable
    versions: Callable
    _computed: dict
    _reader: IOThread
    _versions: dict
    groups: Callable | None  # (attribute, ids) -> group codes (by=sector)

    def _groups(self, task: Task, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The group codes at ``ids`` of each entity attribute the formula groups by."""
        return {a: self.groups(a, ids) for a in task.compiled.attributes}

    def _resumed(self, task: Task, ids: np.ndarray, sources: list[Source], row: int,
                 lo: int, read: Callable, waits) -> tuple[np.ndarray, np.ndarray, int]:
        """An ``ema``/``wilder`` formula's rows from ``row`` on: where its last value
        before ``row`` is stored (within ``RESUME_ROWS``), the smoothing continues from it
        over its argument (read from its window before ``row``); elsewhere (never seeded,
        or a long gap) over its whole history. Returns (the rows, the stored rows from
        ``row`` on, the stored records read)."""
        func, n, arg = task.resume
        stored = read(task.name, ids, row - 1)
        state = stored[0].copy()
        count = int((~np.isnan(stored)).sum())
        gap = np.flatnonzero(np.isnan(state))
        start = max(0, row - RESUME_ROWS)
        if len(gap) and start < row - 1:
            back = read(task.name, ids[gap], start)[: row - 1 - start]
            have = ~np.isnan(back)
            count += int(have.sum())
            found = have.any(axis=0)
            last = back.shape[0] - 1 - np.argmax(have[::-1], axis=0)
            state[gap[found]] = back[last[found], np.flatnonzero(found)]
        ok = ~np.isnan(state)
        out = np.empty((stored.shape[0] - 1, len(ids)))
        pairs = list(zip(task.compiled.inputs, sources, strict=True))
        if ok.any():
            x = arg(*(self._input(m, src, ids[ok], read, waits, lo) for m, src in pairs))
            out[:, ok] = smooth_from(func, x[row - lo:], n, state[ok])
        if not ok.all():
            whole = task.compiled(*(self._input(m, src, ids[~ok], read, waits)
                                    for m, src in pairs))
            out[:, ~ok] = whole[row:]
        return out, stored[1:], count

    def _input(self, name: str, source: Source, ids: np.ndarray, read: Callable,
               waits, lo: int = 0) -> np.ndarray:
        """Input ``name`` at entities ``ids``, from calendar row ``lo`` on: this batch's
        values where it was recomputed, stored values elsewhere (unchanged by this run:
        a formula recomputed from a row on changes nothing before it)."""
        down = parse_downsample_input(name)
        if down and down[0] in self._computed:  # a finer formula of this run, aggregated
            ref, freq, how = down  # (lo is 0: a downsampling has no window)
            fine = self._input(ref, self._computed[ref], ids, read, waits)
            return self.downsample(ref, freq, how, fine)
        asof = parse_asof_input(name)
        if asof and (asof[0] in self._computed or asof[0] in self.inline):
            ref, max_age, freq = asof  # a formula of this run, or an expression, as known

            def rd(fn, n):
                return waits(self._reader.submit(IOThread.READ, partial(fn, n, ids)))
            if ref in self.inline:
                f = self.inline[ref]
                v = pit.versions_of(f.compiled, [self._input_versions(
                    n, ids, rd, self.calendar(n)) for n in f.compiled.inputs],
                    self.calendar(None, f.frequency), ids)
            else:
                v = self._input_versions(ref, ids, rd, self.calendar(ref))
            return asof_panel(*v, self.calendar(None, freq)[lo:], ids, max_age)
        if source is not None and isinstance(source[0], Future):
            fut, start = source
            if start > lo:  # read from a later row (for a window): not enough here
                source = None
            elif len(ids) == len(self.universe):
                return waits(fut)[lo - start:]
            elif fut.done():
                return fut.result()[lo - start:, np.searchsorted(self.universe, ids)]
            source = None
        if source is None:
            return read(name, ids, lo)
        cols, panel, row0 = source
        pos = np.minimum(np.searchsorted(cols, ids), len(cols) - 1)
        hit = cols[pos] == ids
        if hit.all() and row0 <= lo:
            return panel[lo - row0:, pos]
        if row0 <= lo:
            out = np.empty((panel.shape[0] - (lo - row0), len(ids)))
            out[:, ~hit] = read(name, ids[~hit], lo)
        else:  # recomputed from a later row: the rows before it are as stored
            out = read(name, ids, lo)
        out[max(0, row0 - lo):, hit] = panel[max(0, lo - row0):, pos[hit]]
        return out

    def _input_versions(self, name: str, ids: np.ndarray, read, calendar: np.ndarray):
        """Every version of input ``name`` at ``ids``: this run's where it was computed
        (a formula computed without versions has one per value, known at its period),
        the stored ones elsewhere."""
        if name in self._versions:
            cols, v = self._versions[name]
        elif name in self._computed:
            cols, panel, row0 = self._computed[name]
            e, p, x = from_panel(panel, calendar[row0:], cols)
            v = Versions(e, p, p, x)
            if row0:  # recomputed from a later row: the earlier values are as stored
                got = read(self.versions, name)
                keep = (got.periods < calendar[row0]) & np.isin(got.entity_ids, cols)
                v = Versions(*(np.concatenate([a[keep], b]) for a, b in zip(got, v)))
        else:
            return read(self.versions, name)
        mine = Versions(*(a[np.isin(v.entity_ids, ids)] for a in v))
        rest = np.setdiff1d(ids, cols)
        if not len(rest):
            return mine
        other = read(self.versions, name)
        keep = np.isin(other.entity_ids, rest)
        return Versions(*(np.concatenate([a, b[keep]]) for a, b in zip(mine, other)))

