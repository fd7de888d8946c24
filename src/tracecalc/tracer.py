"""Every staleness rule of tracecalc, in one place.

A change (a data load or delete, a formula save, a formula's new values in a run, a full
run) becomes ``Marks``: the formulas to recompute for every entity (``stale``) and those to
recompute for some entities (``partial``), each from a first period on (``since``: the
earliest date whose value may change; none: from the formula's first period).
``propagate`` then makes everything downstream of a mark that is still fresh ``pending``:
it is recomputed only where an input actually changes in the run. ``entities_to_compute``
and ``first_to_compute`` say, during a run, which entities a formula is recomputed for and
from which period. The rules are a table in docs/architecture.md.

Pure functions over names, formula traits and entity ids: no database (storage writes the
marks; ``tests/test_tracer.py`` checks the rules directly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tracecalc.graph import Graph
from tracecalc.model import FormulaState

NONE = np.empty(0, dtype=np.int64)


class Traits(Protocol):
    """What the rules need to know of a formula (``facts.FormulaFacts`` has it)."""

    cross_sectional: bool  # ranks or scores across entities
    along_time: bool  # reads other periods (lag, windows, ffill)
    spontaneous: bool  # has values where every input is missing (coalesce(x, 0))
    frequency: str | None
    converted: frozenset[str]  # what it reads through asof (as known on each date)
    attributes: tuple[str, ...]  # the entity attributes it groups by (by=sector)


Day = np.datetime64 | None  # a first period; None: from the first one


def as_day(value) -> Day:
    """A stored first period (a date, or SQLite's text) as a ``Day``."""
    return None if value is None else np.datetime64(str(value)[:10], "D")


def earliest(a: Day, b: Day) -> Day:
    """The earlier of two first periods (None, from the first period, wins)."""
    return None if a is None or b is None else min(a, b)


@dataclass
class Marks:
    """What a change makes stale. ``bump`` is false for a run's own marks (a run that
    planned before a user's mark must still see that mark; see ``Store.set_state``)."""

    stale: dict[str, None] = field(default_factory=dict)  # an ordered set
    partial: dict[str, np.ndarray] = field(default_factory=dict)  # name -> entity ids
    bump: bool = True
    since: dict[str, Day] = field(default_factory=dict)  # name -> its first stale period

    def _from(self, name: str, since: Day) -> None:
        self.since[name] = since if name not in self.since else earliest(
            self.since[name], since)

    def everything(self, name: str, since: Day = None) -> None:
        self.stale[name] = None
        self.partial.pop(name, None)
        self._from(name, since)

    def some(self, name: str, entity_ids: np.ndarray, since: Day = None) -> None:
        if len(entity_ids) == 0:
            return
        self._from(name, since)
        if name in self.stale:
            return
        have = self.partial.get(name)
        self.partial[name] = entity_ids if have is None else np.union1d(have, entity_ids)

    @property
    def names(self) -> list[str]:
        return [*self.stale, *(n for n in self.partial if n not in self.stale)]

    def __bool__(self) -> bool:
        return bool(self.stale or self.partial)


def data_changed(changed: Mapping[str, np.ndarray], users: Mapping[str, Iterable[str]],
                 formulas: Mapping[str, Traits], *, grown: Iterable[str] = (),
                 shrunk: Iterable[str] = (), new_entities: np.ndarray = NONE,
                 first: Mapping[str, Day] | None = None,
                 added: Mapping[str, np.ndarray] | None = None,
                 known: Mapping[str, Day] | None = None) -> Marks:
    """Data points changed (loaded, corrected, deleted).

    ``changed`` maps an item to the entities whose points changed, ``first`` an item to the
    earliest period that changed (none given: from the first), ``known`` to the earliest
    date a changed value became known (its known_at; none: ``first``); ``users`` an item to the
    formulas that reference it directly; ``formulas`` gives the traits of every formula
    the calendar and new-entity rules can reach (all of them when ``grown``, ``shrunk`` or
    ``new_entities`` is given); ``grown`` and ``shrunk`` are the frequencies whose calendar
    gained or lost periods, ``added`` the periods each grown one gained.

    A value at period p moves no formula's value before p, whatever its frequency: a
    window, a lag or ``asof`` (a value is never known before its period) only read
    backwards, and a coarser period that takes days before p ends after it. So every mark
    is from p on; a formula that reads the item through ``asof`` sees a value from the day
    it became known, so its mark is from that day (a restatement of an old quarter marks the
    days from its filing on, not from the quarter).
    """
    marks = Marks()
    first, added, known = first or {}, added or {}, known or {}
    for item, entity_ids in changed.items():
        for name in users.get(item, ()):
            since = (known.get(item, first.get(item)) if item in formulas[name].converted
                     else first.get(item))
            if formulas[name].cross_sectional:  # a change anywhere moves every rank
                marks.everything(name, since)
            else:
                marks.some(name, entity_ids, since)
    # A formula with values where its inputs are missing (coalesce(x, 0)) has values for new
    # entities; one that also looks along time (lag, ffill), for every entity when its
    # calendar gains periods. A lost period takes every record at it along
    # (Store.prune_periods): only windows along time then differ.
    grown, shrunk = set(grown), set(shrunk)
    for name, f in formulas.items():
        if f.frequency in shrunk and f.along_time:
            marks.everything(name)
        elif f.frequency in grown and (f.spontaneous or f.along_time):
            new = added.get(f.frequency)  # from the first new period on
            marks.everything(name, new.min() if new is not None and len(new) else None)
        if f.spontaneous:  # a new entity: every period (its values come from nothing)
            marks.some(name, new_entities)
    return marks


def attributes_changed(changed: Iterable[str], formulas: Mapping[str, Traits]) -> Marks:
    """An entity attribute's value changed at some entity (``load-entities``: a new value,
    another one, or none any more). Attributes do not vary in time, so each formula that
    groups by one of ``changed`` (``by=``) is marked for every entity and period: a move
    from one group to another changes both groups' results, and every period's."""
    changed = set(changed)
    marks = Marks()
    for name, f in formulas.items():
        if changed.intersection(f.attributes):
            marks.everything(name)
    return marks


def formulas_saved(names: Iterable[str]) -> Marks:
    """Formulas created or whose text changed: every entity (an edit that only changes a
    description, or the same text again, is no change and is not passed here)."""
    marks = Marks()
    for n in names:
        marks.everything(n)
    return marks


def full_run(names: Iterable[str]) -> Marks:
    """``recalc --full``: everything, then the incremental machinery runs as usual."""
    return formulas_saved(names)


def result_written(users: Sequence[tuple[str, bool, bool]], changed: np.ndarray,
                   since: Day = None, known: Day = None) -> Marks:
    """A formula's new values differ from the stored ones at entities ``changed``, from
    period ``since`` on, known from ``known`` on (its versions; none: ``since``): each of
    its ``users`` (name, cross-sectional, reads it through asof) is marked there
    (everywhere if it works across entities), from ``known`` where it reads through
    asof. Early cutoff: an unchanged result marks nothing."""
    marks = Marks(bump=False)
    if len(changed):
        for name, cross_sectional, via_asof in users:
            day = (since if known is None else known) if via_asof else since
            if cross_sectional:
                marks.everything(name, day)
            else:
                marks.some(name, changed, day)
    return marks


def propagate(graph: Graph[str], marked: Iterable[str], states: Mapping[str, FormulaState],
              key: Callable[[str], object]) -> tuple[list[str], list[str]]:
    """(everything handled in recalculation order, the formulas that become pending).

    Handled are the marked formulas and every formula downstream of them (``graph`` holds
    at least that closure; an edge is a formula depending on what it references). Those
    downstream that are fresh become pending; the others keep their own state. ``key``
    orders formulas ready together (the formula id: see ``recalc``)."""
    marked = set(marked)
    reach = {n for n in graph.descendants(marked) if n in states} | marked
    handled = graph.topological_order(reach, key=key)
    pending = [n for n in handled if n not in marked and states[n] == FormulaState.FRESH]
    return handled, pending


def entities_to_compute(own: np.ndarray, upstream: Sequence[np.ndarray],
                        cross_sectional: bool, universe: np.ndarray) -> np.ndarray:
    """During a run: a formula is recomputed for its own marks plus the entities where a
    formula it uses changed in this run; for every entity when it works across entities
    and anything changed (cross-sectional widening)."""
    parts = [own, *upstream]
    ids = np.unique(np.concatenate(parts)) if any(len(p) for p in parts) else NONE
    if cross_sectional and len(ids):
        return universe
    return ids


def first_to_compute(own: np.ndarray, own_since: Day, upstream: Sequence[np.ndarray],
                     upstream_since: Sequence[Day]) -> Day:
    """During a run: the first period a formula is recomputed from, for all the entities
    ``entities_to_compute`` gives: the earliest of its own marks' and of the changes of
    the formulas it uses in this run."""
    days = [own_since] if len(own) else []
    days += [d for ids, d in zip(upstream, upstream_since, strict=True) if len(ids)]
    out: Day = days[0] if days else None
    for d in days[1:]:
        out = earliest(out, d)
    return out
