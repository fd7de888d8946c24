"""Data changes: loading and deleting data points, traced to the formulas they reach.

The file is read and checked first (``storage.files``), then written in one transaction
(``Store.load_batch``: only points whose value differs bitwise are written), and what
changed goes to the tracer (``tracer.data_changed``), whose marks are written in the same
transaction, with everything downstream made pending (``tracer.propagate``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from tracecalc import catalog, tracer
from tracecalc.catalog import Catalog
from tracecalc.errors import DataError, DependentsError, NotFoundError, close_matches
from tracecalc.model import DeleteResult, LoadResult
from tracecalc.storage import calendars, files


def load(store, cache, data, frequencies, label, allow_new_entities, tell, snap: bool = False,
         chunk_rows: int | None = None) -> LoadResult:
    """See ``Engine.load_data``."""
    path = data if isinstance(data, (str, os.PathLike)) else "data"
    tell(0, 0, f"reading {label or path}")
    batch = files.read_data(data, label, chunk_rows=chunk_rows, progress=tell)
    declared = {k: files.frequency(v, item=k) for k, v in (frequencies or {}).items()}
    declared.update(batch.frequencies)
    with store.transaction() as conn:
        tell(0, 0, "checking against the catalog")
        store.lock_catalog(conn)
        cat = catalog.read(store, conn, cache, whole=True)
        clash = sorted(set(batch.item_names.tolist()) & set(cat.formulas))
        if clash:
            raise DataError(f"'{clash[0]}' is a formula, not a data item", source=batch.source)
        changes = store.load_batch(conn, batch, declared, allow_new_entities=allow_new_entities,
                                   snap=snap, progress=tell)
        tell(len(batch), len(batch), "marking dependents stale")
        stale = trace(store, conn, cat, changes.changed_entities,
                      first=changes.first_changed, added=changes.added_periods,
                      known=changes.first_known,
                      grown=changes.grown_calendars,
                      shrunk=set(changes.removed_periods) | changes.shrunk_coarser,
                      new_entities=changes.new_entity_ids)
    return LoadResult(rows=len(batch), items=tuple(changes.items),
                      new_items=tuple(changes.new_items), new_entities=changes.new_entities,
                      marked_stale=tuple(stale),
                      new_entity_codes=tuple(changes.new_entity_codes),
                      new_periods={f: tuple(p.tolist())
                                   for f, p in sorted(changes.added_periods.items())},
                      removed_periods={f: tuple(p.tolist())
                                       for f, p in sorted(changes.removed_periods.items())},
                      snapped=changes.snapped, versions=changes.versions_changed)


def trace(store, conn, cat: Catalog, changed: dict[str, np.ndarray], *,
          grown: Iterable[str] = (), shrunk: Iterable[str] = (),
          new_entities: np.ndarray = tracer.NONE, first=None, added=None,
          known=None) -> list[str]:
    """Mark what a change of data points makes stale, then everything downstream pending;
    returns every formula handled, in recalculation order."""
    grown, shrunk = set(grown), set(shrunk)
    users = {item: sorted(cat.graph.successors(item)) if item in cat.graph else []
             for item in changed}  # (an item new in this load has no users)
    if grown or shrunk or len(new_entities):  # the calendar and new-entity rules
        reach = list(cat.formulas)
    else:
        reach = sorted({u for us in users.values() for u in us})
    marks = tracer.data_changed(changed, users, {n: cat.facts(n) for n in reach},
                                grown=grown, shrunk=shrunk, new_entities=new_entities,
                                first=first, added=added, known=known)
    ids = {n: r.id for n, r in cat.formulas.items()}
    return catalog.trace(store, conn, cat.graph, marks, cat.states(), ids)


def load_entities(store, cache, data) -> int:
    """See ``Engine.load_entities``: the attributes written, then the formulas grouping by
    an attribute that changed marked stale (``tracer.attributes_changed``)."""
    rows = files.read_entities(data)
    with store.transaction() as conn:
        store.lock_catalog(conn)
        changed = store.set_entity_attributes(conn, rows)
        if changed:
            cat = catalog.read(store, conn, cache, whole=True)
            marks = tracer.attributes_changed(changed, {n: cat.facts(n) for n in cat.formulas})
            ids = {n: r.id for n, r in cat.formulas.items()}
            catalog.trace(store, conn, cat.graph, marks, cat.states(), ids)
    return len(rows)


def delete(store, cache, item: str, codes: list[str], days: list[np.datetime64]
           ) -> DeleteResult:
    """See ``Engine.delete_data``."""
    with store.transaction() as conn:
        store.lock_catalog(conn)
        cat = catalog.read(store, conn, cache, whole=True)
        if item not in cat.items:
            e = NotFoundError("data item", item, close_matches(item, cat.items))
            if item in cat.formulas:
                e.args = (f"{e}: '{item}' is a formula (delete it with delete)",)
            raise e
        item_id, freq = cat.items[item]
        if not codes and not days:
            users = sorted(cat.graph.successors(item))
            if users:
                raise DependentsError(item, users)
            eids, pers, _ = store.read_item(conn, item_id)
            store.delete_item(conn, item_id)
            store.delete_versions(conn, "data", item_id)
            changed: dict[str, np.ndarray] = {}
        else:
            eids, pers = _matching_points(store, conn, item, item_id, freq, codes, days)
            store.delete_data(conn, item_id, eids, pers)
            store.delete_versions(conn, "data", item_id, eids, pers)
            changed = {item: np.unique(eids)}
        removed = store.prune_periods(conn, freq, np.unique(pers))
        coarser = store.prune_coarser(conn, freq) if len(removed) else {}
        stale = trace(store, conn, cat, changed,
                      first={item: pers.min()} if len(pers) and changed else None,
                      shrunk=({freq} | set(coarser)) if len(removed) else ())
        names = store.entity_codes(conn)
    return DeleteResult(
        item=item, frequency=freq, points=len(eids),
        entities=tuple(sorted(names[np.unique(eids)].tolist())),
        periods=tuple(np.unique(pers).tolist()), item_deleted=not codes and not days,
        removed_periods=tuple(removed.tolist()), marked_stale=tuple(stale))


def _matching_points(store, conn, item: str, item_id: int, freq: str, codes: list[str],
                     days: list[np.datetime64]) -> tuple[np.ndarray, np.ndarray]:
    """The (entity ids, periods) of the item's points among ``codes`` and ``days``
    (all when not given); every code and day given must match one."""
    known = store.entity_ids(conn)
    for code in codes:
        if code not in known:
            raise NotFoundError("entity", code, close_matches(code, known))
    wanted = np.unique(np.array([known[c] for c in codes], dtype=np.int64))
    eids, pers, _ = store.read_item(conn, item_id, wanted if codes else None)
    have = store.entity_codes(conn)
    for code in codes:  # an entity without any point of the item
        if not (eids == known[code]).any():
            raise NotFoundError(f"entity with {item} data", code,
                                close_matches(code, have[np.unique(
                                    store.read_item(conn, item_id)[0])]))
    sel = np.isin(pers, np.array(days, dtype="datetime64[D]")) if days else \
        np.ones(len(pers), bool)
    whose = f" for {', '.join(codes)}" if codes else ""
    for day in days:
        if not (sel & (pers == day)).any():
            raise NotFoundError(f"{freq} period with {item} data{whose}", str(day),
                                _nearest(np.unique(pers), day))
    at = f" at {', '.join(str(d) for d in days)}"
    for code in codes:
        if not (sel & (eids == known[code])).any():
            raise NotFoundError(f"entity with {item} data{at}", code, ())
    return eids[sel], pers[sel]


def _nearest(calendar: np.ndarray, day: np.datetime64, n: int = 2) -> list[str]:
    """The periods of ``calendar`` (sorted) closest to ``day``: suggestions for a date."""
    if len(calendar) == 0:
        return []
    order = np.argsort(np.abs((calendar - day).astype(np.int64)), kind="stable")[:n]
    return [str(d) for d in np.sort(calendar[order])]


def set_daily_calendar(store, cache, name: str) -> list[str]:
    """See ``Engine.set_daily_calendar``: the daily calendar becomes the new grid over the
    same span; every daily formula is marked stale (its windows step differently)."""
    name = calendars.check_daily(name)
    with store.transaction() as conn:
        store.lock_catalog(conn)
        old = store.daily_calendar(conn)
        if name == old:
            return []
        cal = store.calendar(conn, "daily")
        off = cal[~calendars.on_calendar("daily", cal, name)]
        for day in off.tolist():
            item = store.data_at(conn, "daily", day)
            if item is not None:
                what = "a weekday" if name == calendars.WEEKDAYS else f"an {name} session"
                raise DataError(f"item '{item}' has data at {day}, which is not {what}; "
                                f"delete it first (delete-data {item} --period {day}) or keep "
                                f"the {old} calendar")
        store.set_daily_calendar(conn, name)
        if not len(cal):
            return []
        store.drop_periods(conn, "daily", off)
        store.add_periods(conn, "daily", cal[[0, -1]])
        store.forget_digests(conn, "daily")
        moved = {"daily"} | set(store.cover_finer(conn)) | set(store.prune_coarser(conn, "daily"))
        return trace(store, conn, catalog.read(store, conn, cache, whole=True), {},
                     grown=moved, shrunk=moved)


def listed(value) -> list:
    """None, one value or several -> a list without repeats (in the given order)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        value = [value]
    return list(dict.fromkeys(value))
