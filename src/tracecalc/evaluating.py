"""In-memory evaluation: saved formulas and ad-hoc expressions over the stored data, with
nothing written (``Engine.evaluate``, ``tracecalc eval``).

Every expression is checked as ``check`` checks a formula (syntax, references with
suggestions, frequencies), then evaluated, together with the whole upstream closure of the
saved formulas it reads, from the data items, in one snapshot transaction: stored records
are never read, so a stale, partial or pending formula upstream cannot give a stale answer,
and the result is what a recalculation would store. Each item is read once for all the
expressions.

What is computed follows what the outputs need (``_needs``), per node of the closure:

- entities: the requested ones, or every entity where a cross-sectional formula reads the
  node (directly or through formulas that work entity by entity): ``cs_rank`` of one
  entity alone would be 1 everywhere;
- periods: from the first period the outputs show back by each reference's look-back
  (``facts.lookback``; all of history under ``ema``, ``wilder`` and ``asof``), so the
  values in the window equal a full evaluation's; nothing looks ahead, so every node's
  rows end at ``end``;
- versions: an ``asof`` input is aligned from its versions, as a run aligns it (an item's
  stored ones; a formula's from its point-in-time evaluation, ``tracecalc.pit``, when it
  reads versioned data entity by entity, else one per value known at its period); with
  ``as_of``, every item is read as known then and nothing after it is computed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from tracecalc import catalog, pit
from tracecalc.errors import (
    FormulaError,
    NotFoundError,
    UnknownReferenceError,
    UsageError,
    ValidationError,
    clip,
    close_matches,
)
from tracecalc.evaluator import from_panel, to_panel
from tracecalc.facts import FormulaFacts, facts_of, parse_asof_input, parse_downsample_input
from tracecalc.frequencies import frequency as _frequency
from tracecalc.functions import asof_panel, downsample_panel
from tracecalc.model import Problem
from tracecalc.parser import Ref, references, walk
from tracecalc.storage import calendars, files
from tracecalc.storage.frames import tidy_frame
from tracecalc.storage.versions import Versions

SOURCE = "evaluation"
RESERVED = ("period", "entity")  # the frame's key columns


@dataclass
class _Need:
    """What the outputs need of one node (an item, a formula or an output expression)."""

    frequency: str
    facts: FormulaFacts | None  # None: a data item
    wide: bool = False  # every entity (a cross-sectional formula reads it)
    since: np.datetime64 | None = None  # the first period needed; None: all history
    start: np.datetime64 | None = None  # the first computed (since less its look-back)
    panel: bool = False  # its latest values
    versions: bool = False  # its versions (read through asof)
    pit: bool = False  # computed with versions over versioned inputs (tracecalc.pit)
    users: list[str] = field(default_factory=list)


def specs(expressions) -> list[tuple[str, str]]:
    """(column label, text) of each expression: one text, texts, or {label: text}."""
    if isinstance(expressions, str):
        expressions = [expressions]
    if isinstance(expressions, Mapping):
        pairs = list(expressions.items())
    elif isinstance(expressions, Iterable):
        pairs = [(e, e) for e in expressions]
    else:
        raise UsageError(f"cannot evaluate a {type(expressions).__name__}; pass an expression, "
                         "a list of expressions or a mapping {label: expression}")
    if not pairs:
        raise UsageError("nothing to evaluate: pass at least one expression")
    for label, text in pairs:
        if not isinstance(text, str) or not isinstance(label, str) or not label:
            raise UsageError(f"an expression and its label are text, not {clip(text, 40)}")
        if label in RESERVED:
            raise UsageError(f"'{label}' cannot label a column (the frame's keys are period "
                             f"and entity); pass {{'{label}_': '{label}'}}")
    return list(dict(pairs).items())


def evaluate(store, cache, expressions, entities=None, start=None, end=None, as_of=None):
    """See ``Engine.evaluate``."""
    pairs = specs(expressions)
    lo = None if start is None else files.to_day(start, "start", SOURCE)
    hi = None if end is None else files.to_day(end, "end", SOURCE)
    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"{SOURCE}: start {lo} is after end {hi}")
    day = None if as_of is None else files.to_day(as_of, "as_of", SOURCE)
    if day is not None:  # nothing after it is known then
        hi = day if hi is None else min(hi, day)
    if entities is not None and not isinstance(entities, (str, Iterable)):
        raise UsageError(f"entities: one code or several, not a {type(entities).__name__}")
    codes = None if entities is None else (
        [entities] if isinstance(entities, str) else list(dict.fromkeys(entities)))
    parsed: dict[str, FormulaFacts] = {}  # by label
    problems: list[tuple[str, Exception]] = []
    for label, text in pairs:
        try:
            parsed[label] = facts_of(text)
        except FormulaError as e:
            problems.append((label, e))
    refs = {r for p in parsed.values() for r in p.references}
    with store.transaction(write=False, snapshot=True) as conn:
        cat = catalog.read(store, conn, cache, refs, down=False)
        checked = _check(cat, parsed, problems)
        if problems:
            _refuse(problems)
        known = store.entity_ids(conn)
        for c in codes or ():
            if c not in known:
                raise NotFoundError("entity", str(c), close_matches(str(c), known))
        universe = store.entity_universe(conn)
        chosen = universe if codes is None else np.sort(
            np.array([known[c] for c in codes], dtype=np.int64))
        # outputs by a key no name can be ("#0"): a label may be a formula's name too
        outputs = {f"#{i}": checked[label] for i, (label, _) in enumerate(pairs)}
        full = _Calendars(store, conn)
        needs = _needs(store, conn, cat, outputs, lo, full)
        rows = {n: _rows(full[need.frequency], need, hi) for n, need in needs.items()
                if need.panel or need.versions}
        panels = _run(store, conn, cat, needs, full, rows, universe, chosen, day) \
            if len(chosen) else {}
        code_of = store.entity_codes(conn)
    columns, frequencies = {}, {}
    for (label, _), (key, p) in zip(pairs, outputs.items()):
        cal = full[p.frequency][rows[key][1]:rows[key][0].stop]  # from lo on
        panel = panels.get(key, np.full((len(cal), len(chosen)), np.nan))
        columns[label] = (cal, panel)
        frequencies[label] = p.frequency
    return tidy_frame(code_of, chosen, columns, frequencies)


class _Calendars(dict):
    """Each frequency's whole calendar, read on first use."""

    def __init__(self, store, conn):
        super().__init__()
        self.store, self.conn = store, conn

    def __missing__(self, frequency: str) -> np.ndarray:
        self[frequency] = cal = self.store.calendar(self.conn, frequency)
        return cal


def _check(cat, parsed: dict[str, FormulaFacts], problems: list) -> dict[str, FormulaFacts]:
    """Each parsed expression with its frequency; unknown references and frequency problems
    join ``problems`` (as ``check`` reports them)."""
    out = {}
    for label, p in parsed.items():
        unknown: set[str] = set()
        for node in walk(p.tree):
            if isinstance(node, Ref) and node.name not in cat.names and node.name not in unknown:
                unknown.add(node.name)
                problems.append((label, UnknownReferenceError(
                    node.name, close_matches(node.name, cat.all_names()), text=p.text,
                    col=node.col)))
        bad = cat.unknown_attributes(p, label)
        problems += [(label, e) for e in bad]
        if unknown or bad:
            continue
        freq = _frequency(cat, None, p, {}, {})
        if isinstance(freq, Exception):
            problems.append((label, freq))
        elif freq is not None:
            out[label] = p.with_frequency(freq)
    return out


def _refuse(problems: list[tuple[str, Exception]]) -> None:
    if len(problems) == 1:
        raise problems[0][1]
    raise ValidationError([Problem(n, str(e)) for n, e in problems],
                          what="evaluation", outcome="nothing was evaluated")


def _earlier(a, b):
    """The earlier of two first periods (None: all history)."""
    return None if a is None or b is None else min(a, b)


def _needs(store, conn, cat, outputs: dict[str, FormulaFacts], lo, full: _Calendars
           ) -> dict[str, _Need]:
    """What each node of the outputs' closure must give, outputs first, then upstream in
    reverse dependency order (every user of a node is handled before it)."""
    refs = {r for p in outputs.values() for r in p.references}
    names = cat.graph.ancestors(refs) | refs
    order = cat.graph.topological_order({n for n in names if n in cat.formulas}, key=cat.key)
    needs = {n: _Need(cat.frequency(n), None) for n in sorted(names) if n in cat.items}
    for n in order:
        needs[n] = _Need(cat.frequency(n), cat.facts(n))
    if any(needs[n].facts.asof for n in order) or any(p.asof for p in outputs.values()):
        _point_in_time(store, conn, cat, needs, order)
    for key, p in outputs.items():
        needs[key] = _Need(p.frequency, p, since=lo, panel=True)
    for n in [*outputs, *reversed(order)]:
        need = needs[n]
        if not (need.panel or need.versions):
            continue  # upstream only of what is not needed
        f = need.facts
        wide = need.wide or f.cross_sectional
        # computed from its look-back before the first period it gives, with every input
        # from there on (a window at that first period reads them)
        backs = [f.lookback.get(r, 0) for r in f.references if r not in f.converted]
        need.start = None if need.since is None or None in backs else \
            _back(full[need.frequency], need.since, max(backs, default=0))
        for r in f.references:
            up = needs[r]
            up.users.append(n)
            up.wide |= wide
            first = None if r in f.converted else need.start  # asof: all of its history
            up.since = first if not (up.panel or up.versions) else _earlier(up.since, first)
            up.start = up.since  # an item's (a formula's is set when it is reached)
            if r in f.converted:
                up.versions = True
            elif need.panel or not need.pit:
                up.panel = True
            if need.versions and need.pit:
                up.versions = True
    return needs


def _point_in_time(store, conn, cat, needs: dict[str, _Need], order: list[str]) -> None:
    """Which formulas have versions of their own (as ``planning`` decides for a run): those
    that read, entity by entity, an item or a formula with versions; producers first."""
    versioned = store.versioned(conn, "data")
    for n in order:
        f = needs[n].facts
        if not (f.cross_sectional or f.asof or f.downsampled):
            needs[n].pit = any(needs[r].pit if r in cat.formulas else
                               cat.items[r][0] in versioned for r in f.references)


def _back(calendar: np.ndarray, since, periods: int):
    """The period ``periods`` calendar dates before ``since`` (the first date, at most)."""
    i = int(np.searchsorted(calendar, since)) - periods
    return calendar[max(i, 0)] if i < len(calendar) else since


def _rows(calendar: np.ndarray, need: _Need, hi) -> tuple[slice, int]:
    """The calendar rows a node is computed on (from its look-back before its first period
    needed, to ``hi``: nothing looks ahead), and the first row it keeps."""
    a, kept = (0 if d is None else int(np.searchsorted(calendar, d))
               for d in (need.start, need.since))
    b = len(calendar) if hi is None else int(np.searchsorted(calendar, hi, side="right"))
    return slice(a, max(a, b)), max(kept, a)


def _run(store, conn, cat, needs: dict[str, _Need], full: _Calendars,
         rows: dict[str, slice], universe, chosen, day=None) -> dict[str, np.ndarray]:
    """Every needed node in dependency order, each on its own rows; returns the outputs'
    panels (chosen entities). A panel is freed once its last user has run. A node's first
    row is never before a user's (its look-back reaches further back), so a user cuts the
    leading rows off."""
    panels: dict[str, tuple[np.ndarray, int, np.ndarray]] = {}  # (columns, first row, panel)
    versions: dict[str, Versions] = {}
    left = Counter({n: len(need.users) for n, need in needs.items()})
    outputs = [n for n in needs if n.startswith("#")]
    order = [n for n in cat.graph.topological_order(
        {n for n in needs if n in cat.names}, key=lambda n: (n in cat.formulas, n))
        if needs[n].panel or needs[n].versions]
    result = {}
    for n in [*order, *outputs]:
        need = needs[n]
        (computed, kept), whole = rows[n], full[need.frequency]
        cal, first = whole[computed], computed.start
        ids = universe if need.wide or (need.facts and need.facts.cross_sectional) \
            else chosen
        if need.facts is None:  # a data item (it keeps what it reads)
            item = cat.items[n][0]
            if day is not None or need.versions:
                v = store.every_version(conn, item, ids)
                versions[n] = v if day is None else v.known_by(day)
            if need.panel:
                since = cal[0] if first and len(cal) else None  # before: not needed
                points = store.read_item(conn, item, ids, since) if day is None else \
                    versions[n].latest()
                panels[n] = (ids, first, to_panel(*points, cal, ids))
            continue
        compiled = need.facts.compiled
        if need.panel or not need.pit:
            args = [_converted(a, need.facts, cat, needs, full, panels, versions, cal, ids,
                               store.daily_calendar(conn))
                    if a.startswith(("asof:", "to:")) else _input(a, panels, versions, cal,
                                                                  first, ids)
                    for a in compiled.inputs]
            groups = {a: store.entity_groups(conn, a, ids) for a in compiled.attributes}
            panel = compiled(*args, groups=groups)[kept - first:]  # before: short look-backs
            if n in cat.formulas:
                panels[n] = (ids, kept, panel)
            else:
                result[n] = panel[:, np.searchsorted(ids, chosen)]
            if need.versions and not need.pit:  # one version per value, known at its period
                e, p, x = from_panel(panel, cal[kept - first:], ids)
                versions[n] = Versions(e, p, p, x)
        if need.versions and need.pit:
            inputs = [versions[r] for r in compiled.inputs]
            lay = pit.layout(ids, inputs)
            out = compiled(*(pit.expand(v, cal, lay) for v in inputs))
            _, every, _ = pit.extract(out, cal, lay)
            versions[n] = Versions(*every)
        for r in need.facts.references:
            left[r] -= 1
            if left[r] == 0:
                panels.pop(r, None)
                versions.pop(r, None)
    return result


def _converted(name: str, facts: FormulaFacts, cat, needs, full, panels, versions, cal, ids,
               daily: str) -> np.ndarray:
    """A converted input on ``cal`` at ``ids``: asof of an item or formula (its versions),
    of an expression (computed with its versions, ``pit.versions_of``), or a finer input
    aggregated per period (``quarterly_last(close)``), as a run reads them."""
    asof = parse_asof_input(name)
    if asof is not None:
        what, max_age, _ = asof
        if what in versions:
            return asof_panel(*versions[what], cal, ids, max_age)
        inner = dict(facts.inline)[what]
        f = facts.inline_facts(what, cat.frequency(references(inner)[0]))
        mine = [Versions(*(a[np.isin(v.entity_ids, ids)] for a in v))
                for v in (versions[r] for r in f.compiled.inputs)]
        v = pit.versions_of(f.compiled, mine, full[f.frequency], ids)
        return asof_panel(*v, cal, ids, max_age)
    ref, to, how = parse_downsample_input(name)
    cols, start, panel = panels[ref]
    fine = needs[ref].frequency
    fcal = full[fine][start:start + len(panel)]
    if len(cols) != len(ids):
        panel = panel[:, np.searchsorted(cols, ids)]
    period, complete = calendars.periods_of(fine, fcal, to, cal, daily)
    return downsample_panel(panel, period, len(cal), how, complete)


def _input(name: str, panels, versions, cal, first: int, ids) -> np.ndarray:
    """A compiled input on the rows from ``first`` at ``ids``: a panel cut to them, or an
    asof input aligned on ``cal``."""
    asof = parse_asof_input(name)
    if asof is not None:
        ref, max_age, _ = asof
        return asof_panel(*versions[ref], cal, ids, max_age)
    cols, start, panel = panels[name]
    panel = panel[first - start:]
    if len(cols) == len(ids):
        return panel
    return panel[:, np.searchsorted(cols, ids)]
