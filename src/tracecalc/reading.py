"""Reading results: records, exports, status and the explanation of one record.

Every read runs in one snapshot transaction, so what it returns is one state of the
database, and says which of the formulas it read are not fresh (``StaleWarning``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from tracecalc import catalog, explain, pit
from tracecalc.catalog import Catalog
from tracecalc.errors import NotFoundError, StaleWarning, close_matches
from tracecalc.evaluator import to_panel
from tracecalc.facts import asof_input, converted_args, downsample_input
from tracecalc.functions import asof_panel, downsample_panel
from tracecalc.model import FormulaState
from tracecalc.parser import references
from tracecalc.storage import calendars, files
from tracecalc.storage.versions import Versions


def records(store, cache, name: str, entities, start, end, as_of=None):
    """See ``Engine.records``."""
    source = f"records of '{name}'"
    if start is not None:
        files.to_day(start, "start", source)  # refused before any reading
    if end is not None:
        files.to_day(end, "end", source)
    day = None if as_of is None else files.to_day(as_of, "as_of", source)
    with store.transaction(write=False, snapshot=True) as conn:
        cat = catalog.read(store, conn, cache, [name], up=day is not None, down=False)
        df = _records(store, conn, cat, name, day)
        stale = _staleness(store, conn, cat, [name])
    df = files.filter_frame(df, entities, start, end, source)
    return flag_stale(df, stale)


def export(store, cache, names: Iterable[str] | None, as_of=None):
    """See ``Engine.export``."""
    day = None if as_of is None else files.to_day(as_of, "as_of", "export")
    with store.transaction(write=False, snapshot=True) as conn:
        cat = catalog.read(store, conn, cache, whole=True)
        names = list(names) if names else sorted(cat.formulas)
        frames = [(n, _records(store, conn, cat, n, day)) for n in names]
        stale = _staleness(store, conn, cat, names)
    return flag_stale(files.concat_records(frames), stale)


def _records(store, conn, cat: Catalog, name: str, as_of=None):
    if name in cat.items and as_of is not None:
        rows = _known_by(store.every_version(conn, cat.items[name][0]), as_of)
    elif name in cat.items:
        rows = store.read_item(conn, cat.items[name][0])
    elif name in cat.formulas and as_of is not None:
        _refuse_latest_only(store, conn, cat, name, as_of)
        rows = _known_by(store.every_version(conn, cat.formulas[name].id, kind="records"),
                         as_of)
    elif name in cat.formulas:
        rows = store.read_records(conn, cat.formulas[name].id)
    else:
        raise NotFoundError("formula or item", name, close_matches(name, cat.all_names()))
    return files.records_frame(store.entity_codes(conn), *rows)


def _known_by(v: Versions, day):
    """(entity, period, value) of the latest version of each point known by ``day``."""
    return v.known_by(day).latest()


def _refuse_latest_only(store, conn, cat: Catalog, name: str, day) -> None:
    """A formula's as-of view is its versions known by ``day`` (``tracecalc.pit``); refuse
    one that is, or reads, a cross-sectional formula over data with report dates or
    restatements: those keep only their latest values."""
    seen, stack, crossing, late = set(), [name], None, None
    while stack:
        f = stack.pop()
        facts = cat.facts(f)
        if crossing is None and (facts.cross_sectional or facts.downsampled):
            crossing = f
            how = ("works across entities" if facts.cross_sectional
                   else "aggregates finer data per period")
        for ref in sorted((facts.direct | {r for r, _, _ in facts.downsampled}) - seen):
            seen.add(ref)
            if ref in cat.formulas:
                stack.append(ref)
            elif ref in cat.items and store.has_versions(conn, "data", cat.items[ref][0]):
                late = late or ref
    if crossing and late:
        from tracecalc.errors import DataError

        raise DataError(
            f"records of '{name}' as of {day}: {crossing} {how} over {late}, "
            f"which has report dates or restatements, and such formulas keep only their "
            f"latest values; read {late} as of {day}, or formulas that read it entity by "
            "entity")


def _staleness(store, conn, cat: Catalog, names: Iterable[str]) -> list:
    """A StaleWarning for each of ``names`` that is a formula not fresh."""
    states = {n: cat.formulas[n].state for n in dict.fromkeys(names)
              if n in cat.formulas and cat.formulas[n].state != FormulaState.FRESH}
    if not states:
        return []
    marks = store.stale_counts(conn)
    everyone = store.entity_count(conn)
    return [StaleWarning(n, str(s), everyone if s == FormulaState.STALE else
                         marks.get(n, 0) if s == FormulaState.PARTIAL else None)
            for n, s in states.items()]


def flag_stale(df, stale: list):
    df.attrs["stale"] = {w.formula: w.state for w in stale}
    for w in stale:
        warnings.warn(w, stacklevel=4)
    return df


def formulas(store, cache, canonical: bool):
    """See ``Engine.formulas``."""
    cols = ["name", "expression", "description", "frequency", "version", "state"]
    with store.transaction(write=False) as conn:
        stored = store.formula_rows(conn)
    rows = [{c: getattr(r, c) for c in cols} for r in stored]
    if canonical:
        cols.append("canonical")
        for row, r in zip(rows, stored):
            row["canonical"] = catalog.canonical_of(r, cache)
    return files.frame(rows, cols)


def status(store, cache) -> dict:
    """See ``Engine.status``."""
    with store.transaction(write=False, snapshot=True) as conn:
        cat = catalog.read(store, conn, cache, up=False, down=False, unfresh=True,
                           item_links=False)  # the order among formulas is all it needs
        fresh = str(FormulaState.FRESH)
        states = {n: r.state for n, r in cat.formulas.items() if r.state != fresh}
        return {"formulas": store.count_formulas(conn),
                "stale": cat.graph.topological_order(states, key=cat.key),
                "states": states, "stale_entities": store.stale_counts(conn),
                "items": store.count_items(conn), "entities": store.entity_count(conn),
                "data_points": store.count_data(conn),
                "records": store.count_records(conn)}


def explain_record(store, cache, name: str, entity: str, period, as_of=None) -> dict:
    """See ``Engine.explain``."""
    day = None if as_of is None else files.to_day(as_of, "as_of", f"explain of '{name}'")
    with store.transaction(write=False, snapshot=True) as conn:
        cat = catalog.read(store, conn, cache, [name], down=False)
        row = cat.row(name)
        codes = store.entity_ids(conn)
        if entity not in codes:
            raise NotFoundError("entity", entity, close_matches(entity, codes))
        calendar = store.calendar(conn, row.frequency)
        facts = cat.facts(name)
        t = explain.period_index(calendar, period)
        if t is None:
            raise NotFoundError(f"{row.frequency} period", str(period),
                                [str(d) for d in calendar[-3:]])
        if day is not None:
            _refuse_latest_only(store, conn, cat, name, day)
        eid = codes[entity]
        ids = store.entity_universe(conn) if facts.cross_sectional else explain.one(eid)
        ages = dict(facts.asof)

        def versions(ref: str):
            key, kind = (cat.items[ref][0], "data") if ref in cat.items else (
                cat.formulas[ref].id, "records")
            v = store.every_version(conn, key, ids, kind)
            return v if day is None else Versions(*(a[v.known_at <= day] for a in v))

        def read(ref: str, calendar=calendar):
            if ref in facts.converted and ref not in facts.direct:  # as known on each date
                return asof_panel(*versions(ref), calendar, ids, ages[ref])
            if day is not None:  # each input as known on that date
                return to_panel(*_known_by(versions(ref), day), calendar, ids)
            if ref in cat.items:
                rows = store.read_item(conn, cat.items[ref][0], ids)
            else:
                rows = store.read_records(conn, cat.formulas[ref].id, ids)
            return to_panel(*rows, calendar, ids)

        tree, finer, panels = facts.tree, {}, {}
        if facts.downsampled or facts.inline:
            tree = converted_args(tree, row.frequency)
        for text, inner in facts.inline:  # an expression as known each date, its versions
            f = facts.inline_facts(text, cat.frequency(references(inner)[0]))
            v = pit.versions_of(f.compiled, [versions(n) for n in f.compiled.inputs],
                                store.calendar(conn, f.frequency), ids)
            panels[asof_input(text, ages[text], row.frequency)] = asof_panel(
                *v, calendar, ids, ages[text])
        if facts.downsampled:  # a finer input, aggregated per period (and the dates behind)
            daily = store.daily_calendar(conn)
            for ref, to, how in facts.downsampled:
                freq = cat.frequency(ref)
                fcal = store.calendar(conn, freq)
                period, complete = calendars.periods_of(freq, fcal, to, calendar, daily)
                fine = read(ref, fcal)
                finer[downsample_input(ref, to, how)] = (
                    fcal, fine, period, downsample_panel(fine, period, len(calendar), how,
                                                         complete))
        panels.update({ref: finer[ref][3] if ref in finer else read(ref)
                       for ref in references(tree) if ref not in panels})
        stored = read(name)
        groups = {a: store.entity_groups(conn, a, ids) for a in facts.attributes}
    col = int(explain.column(ids, eid))
    value = stored[t, col]
    return {"formula": name, "version": row.version, "expression": row.expression,
            "frequency": row.frequency, "entity": entity, "period": str(calendar[t]),
            "stored": None if value != value else float(value),
            "tree": explain.explain_tree(tree, panels, calendar, t, col, cat.items, finer,
                                         groups)}


def item(store, cache, name: str):
    """See ``Engine.item``."""
    from tracecalc.model import Frequency, ItemInfo

    with store.transaction(write=False) as conn:
        cat = catalog.read(store, conn, cache, [name], up=False, items_down=True)
        if name not in cat.items:
            raise NotFoundError("data item", name, close_matches(name, store.items(conn)))
        item_id, freq = cat.items[name]
        points, ents, first, last = store.item_summary(conn, item_id)
        users = tuple(sorted(cat.graph.successors(name)))
    return ItemInfo(name, Frequency(freq), points, ents, first, last, users)


def history_data(store, name: str, entity: str, period) -> list[dict]:
    """See ``Engine.history_data``."""
    import numpy as np

    day = files.to_day(period, "period", f"history of '{name}'")
    with store.transaction(write=False, snapshot=True) as conn:
        known = store.items(conn)
        if name not in known:
            raise NotFoundError("data item", name, close_matches(name, known))
        codes = store.entity_ids(conn)
        if entity not in codes:
            raise NotFoundError("entity", entity, close_matches(entity, codes))
        item_id, eid = known[name][0], codes[entity]
        v = store.every_version(conn, item_id, np.array([eid]))
        loaded_as = store.snapped_from(conn, item_id, eid, day.item())
    at = np.flatnonzero(v.periods == day)
    rows = [(v.known_at[i], v.values[i]) for i in at[np.argsort(v.known_at[at])]]
    if not rows:
        have = np.unique(v.periods)
        near = have[np.argsort(np.abs((have - day).astype(np.int64)), kind="stable")[:2]]
        raise NotFoundError(f"period with {name} data for {entity}", str(day),
                            [str(d) for d in np.sort(near)])
    return [{"known_at": str(k), "value": None if x != x else float(x),
             "latest": i == len(rows) - 1,
             "loaded_as": None if loaded_as is None else str(loaded_as)}
            for i, (k, x) in enumerate(rows)]


def formula(store, cache, name: str):
    """See ``Engine.formula``."""
    from tracecalc.model import FormulaInfo, Frequency

    with store.transaction(write=False) as conn:
        cat = catalog.read(store, conn, cache, [name], down=False)
        r = cat.row(name)
        refs = tuple(sorted(cat.graph.predecessors(name)))
    return FormulaInfo(r.name, r.expression, catalog.canonical_of(r, cache),
                       Frequency(r.frequency), r.version, FormulaState(r.state),
                       r.description, refs)


def dependencies(store, cache, name: str, transitive: bool) -> list[str]:
    """See ``Engine.dependencies``."""
    with store.transaction(write=False) as conn:
        cat = catalog.read(store, conn, cache, [name], down=False)
        cat.row(name)
        if transitive:
            return cat.graph.topological_order(cat.graph.ancestors(name))
        return sorted(cat.graph.predecessors(name))


def dependents(store, cache, name: str, transitive: bool) -> list[str]:
    """See ``Engine.dependents``."""
    with store.transaction(write=False) as conn:
        cat = catalog.read(store, conn, cache, [name], up=False, items_down=True)
        if name not in cat.names:
            raise NotFoundError("formula or item", name, close_matches(name, cat.all_names()))
        if transitive:
            return cat.downstream([name])
        return sorted(cat.graph.successors(name))
