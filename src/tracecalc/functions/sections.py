"""The sections a cross-sectional kernel works in: each whole period, or each group of
entities within a period (``groups``: one integer code per entity, -1 for none).

A ``Sections`` gives per-section sums, counts and extremes as (periods, sections) arrays and
spreads per-section values back onto the panel's entities. Sums run left to right in the
panel's entity order within each section, as the ungrouped kernels' sums do, so a plain
scalar loop over a group's members gets the same bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracecalc.functions.common import _NAN


def group_codes(values, absent=None) -> np.ndarray:
    """Group codes of entities from their attribute values, one
    per entity: equal values share a code, ``absent`` (None: no value) is -1."""
    have = [v for v in values if v != absent]
    index = {v: i for i, v in enumerate(sorted(set(have)))}
    return np.array([index.get(v, -1) if v != absent else -1 for v in values],
                    dtype=np.int64)


class Sections:
    """The whole period (``groups=None``) or the groups of ``groups`` as sections.

    Grouped, the members of each group sit side by side in ``order`` (by group, then in the
    panel's entity order); an entity coded -1 belongs to no section and its results are NaN.
    """

    def __init__(self, entities: int, groups: Any = None, fn: str = "cross-section"):
        self.grouped = groups is not None
        self.entities = entities
        if not self.grouped:
            self.count_sections = 1 if entities else 0
            return
        codes = np.asarray(groups)
        if codes.ndim != 1 or len(codes) != entities:
            raise ValueError(f"{fn}: groups needs one code per entity ({entities}), "
                             f"got shape {codes.shape}")
        if codes.dtype.kind not in "iu":
            raise TypeError(f"{fn}: groups must be integer codes, got {codes.dtype}")
        if len(codes) and codes.min() < -1:
            raise ValueError(f"{fn}: a group code is -1 (no group) or >= 0, got {codes.min()}")
        member = codes >= 0
        _, dense = np.unique(codes[member], return_inverse=True)
        self.code = np.full(entities, -1, dtype=np.int64)
        self.code[member] = dense
        self.none = ~member
        self.count_sections = int(dense.max()) + 1 if len(dense) else 0
        order = np.argsort(self.code, kind="stable")
        self.order = order[self.code[order] >= 0]
        self.sizes = np.bincount(self.code[self.order], minlength=self.count_sections)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        # Step k of a sum adds the k-th member of every group that has one.
        self._steps = [(np.flatnonzero(self.sizes > k), self.starts[self.sizes > k] + k)
                       for k in range(1, int(self.sizes.max(initial=0)))]
        # The code to sort by: sectionless entities last.
        self.sort_code = np.where(member, self.code, self.count_sections).astype(
            np.int16 if self.count_sections < 2**15 - 1 else np.int64)

    @property
    def empty(self) -> bool:
        """No entity is in any section: every result is NaN."""
        return self.count_sections == 0

    @property
    def least(self) -> int:
        """Groups with fewer present values than this give NaN (the whole period: 1)."""
        return 2 if self.grouped else 1

    def mask(self, x: np.ndarray) -> np.ndarray:
        """x with the values of sectionless entities missing."""
        if not self.grouped or not self.none.any():
            return x
        return np.where(self.none, _NAN, x)

    def sum(self, v: np.ndarray) -> np.ndarray:
        """Per section, v's sum left to right in entity order (v: 0 where not counted)."""
        if not self.grouped:
            # cumsum's last column is the sequential sum, reproducible by a scalar loop.
            return np.cumsum(v, axis=1)[:, -1:]
        members = v[:, self.order]
        out = members[:, self.starts]  # fancy indexing: a copy
        # One step per position within a group (as many as the largest group has
        # members), each vectorised over periods and groups.
        for groups, cols in self._steps:
            out[:, groups] += members[:, cols]
        return out

    def count(self, valid: np.ndarray) -> np.ndarray:
        if not self.grouped:
            return valid.sum(axis=1, keepdims=True)
        return np.add.reduceat(valid[:, self.order].astype(np.int64), self.starts, axis=1)

    def fmax(self, x: np.ndarray) -> np.ndarray:
        """Per section, the largest present value (NaN when none is present)."""
        if not self.grouped:
            return np.fmax.reduce(x, axis=1, keepdims=True)
        return np.fmax.reduceat(x[:, self.order], self.starts, axis=1)

    def fmin(self, x: np.ndarray) -> np.ndarray:
        if not self.grouped:
            return np.fmin.reduce(x, axis=1, keepdims=True)
        return np.fmin.reduceat(x[:, self.order], self.starts, axis=1)

    def spread(self, s: np.ndarray, fill: Any = _NAN) -> np.ndarray:
        """Per-section values onto the entities (ungrouped: a column that broadcasts);
        sectionless entities get ``fill``."""
        if not self.grouped:
            return s
        out = s[:, np.maximum(self.code, 0)]
        out[:, self.none] = fill
        return out
