"""Planning a recalculation: what is stale, in which order, over which entities.

The plan reads the part of the catalog a run reaches (``catalog.read(unfresh=True)``: the
formulas that are not fresh and their direct neighbours), so a run with nothing to do costs
a query, not a scan of the catalog. Among formulas ready together the smallest id comes
first: each formula's records then append to the records' key (see ``recalc``).
"""

from __future__ import annotations

from tracecalc import catalog, tracer
from tracecalc.facts import FactsCache
from tracecalc.model import FormulaState
from tracecalc.parser import references
from tracecalc.storage import Store
from tracecalc.tracer import NONE
from tracecalc.work import FormulaRef, RunPlan


def _point_in_time(store: Store, conn, cat, order: list[str], facts) -> frozenset[str]:
    """The formulas to compute with their versions (``tracecalc.pit``): those that read an
    item or a formula with versions directly (or have versions stored, to keep them true),
    entity by entity; a cross-sectional formula, or one that converts a frequency (asof,
    quarterly_last), keeps its latest view."""
    items, formulas = store.versioned(conn, "data"), store.versioned(conn, "records")
    out: set[str] = set()
    for n in order:
        f = facts[n]
        if f.cross_sectional or f.asof or f.downsampled:
            continue
        if cat.formulas[n].id in formulas or any(
                (r in cat.items and cat.items[r][0] in items) or r in out
                or (r in cat.formulas and cat.formulas[r].id in formulas)
                for r in f.references):
            out.add(n)
    return frozenset(out)


def plan(store: Store, conn, cache: FactsCache, *, full: bool, kind: str, user: str,
         holder: int | None, verify: bool = False) -> RunPlan:
    """Start a run (its line in the run log) and plan it, inside the caller's transaction
    (which holds the catalog lock and has checked the run's lock: ``Store.lock_for_run``)."""
    store.mark_interrupted_runs(conn)
    if full:
        catalog.apply(store, conn, tracer.full_run(store.formula_names(conn)), {})
    cat = catalog.read(store, conn, cache, up=False, down=False, unfresh=True)
    fs = cat.formulas
    targets = {n for n, r in fs.items() if r.state != FormulaState.FRESH}
    run_id = store.start_run(conn, kind, user)
    universe = store.entity_universe(conn)
    freqs = {cat.frequency(n) for n in targets}
    freqs |= {cat.frequency(r) for n in targets for r in cat.graph.predecessors(n)}
    own = {}
    for n in targets:
        state = fs[n].state
        own[n] = (universe if state == FormulaState.STALE else
                  store.stale_entities(conn, fs[n].id)
                  if state == FormulaState.PARTIAL else NONE)
    facts = {n: cat.facts(n) for n in targets}
    users = {n: sorted(cat.graph.successors(n)) for n in targets}
    crossing = {u: (facts.get(u) or cat.facts(u)).cross_sectional
                for us in users.values() for u in us}
    order = cat.graph.topological_order(targets, key=cat.key)
    inline = {text: facts[n].inline_facts(text, cat.frequency(tree_refs[0]))
              for n in order for text, tree in facts[n].inline
              for tree_refs in [references(tree)]}
    return RunPlan(
        url=store.worker_url, run_id=run_id, universe=universe, items=dict(cat.items),
        formulas={n: FormulaRef(n, r.id, r.version, r.stale_seq, r.frequency)
                  for n, r in fs.items()},
        calendars={f: store.calendar(conn, f) for f in freqs},
        order=order, pit=_point_in_time(store, conn, cat, order, facts),
        uses={n: tuple(p for p in cat.graph.predecessors(n) if p in targets)
              for n in targets},
        own=own, facts=facts,
        users={n: [(d, fs[d].id, crossing[d], n in (facts.get(d) or cat.facts(d)).converted)
                   for d in users[n]] for n in targets},
        verify=verify, lock_holder=holder, daily=store.daily_calendar(conn), inline=inline,
        since={n: tracer.as_day(fs[n].stale_since) for n in targets
               if fs[n].state in (FormulaState.STALE, FormulaState.PARTIAL)},
        groups={a: store.entity_groups(conn, a, universe)
                for a in sorted({a for f in facts.values() for a in f.attributes})})
