"""The composition root and the one public facade: ``Engine``.

``Engine`` wires the parser, the graph, storage and the evaluator together. Every public
method runs in one database transaction (recalculation: one per formula), so a rejected
save or a bad data file changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tracecalc import explain, integrity
from tracecalc.errors import (
    CycleError,
    DataError,
    DependentsError,
    FormulaError,
    FrequencyError,
    InvalidNameError,
    NotFoundError,
    StaleWarning,
    TracecalcError,
    UnknownReferenceError,
    UsageError,
    ValidationError,
    clip,
    close_matches,
)
from tracecalc.evaluator import compile_tree, gives_values_from_nothing, to_panel
from tracecalc.graph import Graph
from tracecalc.model import (
    FUNCTION_NAMES,
    NAME_RE,
    CheckReport,
    DeleteResult,
    FormulaInfo,
    FormulaState,
    Frequency,
    ItemInfo,
    LoadResult,
    Problem,
    RunReport,
    SaveResult,
    VerifyReport,
)
from tracecalc.parser import ParsedFormula, Ref, normalise, parse, walk
from tracecalc.recalc import NONE, RunOptions, run_plan
from tracecalc.storage import DEFAULT_URL, Store, calendars, files
from tracecalc.work import FormulaRef, Plan, Session, run_transaction

Progress = Callable[[int, int, str], None]


def default_workers() -> int:
    """Evaluation threads: TRACECALC_WORKERS, else the number of cores (at most 4)."""
    env = os.environ.get("TRACECALC_WORKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


def default_chunk_entities() -> int | None:
    """Entities per chunk: TRACECALC_CHUNK_ENTITIES, else None (sized by periods)."""
    env = os.environ.get("TRACECALC_CHUNK_ENTITIES", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def default_user() -> str:
    try:
        return os.environ.get("TRACECALC_USER") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


@dataclass
class _Catalog:
    """A snapshot of the catalog read inside one transaction: all of it, or (``scope``) only
    the part a save can touch, so that validating a save costs what it reaches."""

    items: dict[str, tuple[int, str]]  # name -> (id, frequency)
    formulas: dict[str, object]  # name -> row
    graph: Graph[str]  # items and formulas; an edge: formula depends on reference
    scope: Callable[[Iterable[str]], list[str]] | None = None  # downstream query, if partial
    everything: Callable[[], set[str]] | None = None  # every name, if partial

    @property
    def names(self) -> set[str]:
        return set(self.items) | set(self.formulas)

    def all_names(self) -> set[str]:
        """Every item and formula name (for "did you mean" suggestions)."""
        return self.names if self.everything is None else self.everything()

    def frequency(self, name: str) -> str:
        if name in self.items:
            return self.items[name][1]
        return self.formulas[name].frequency

    def downstream(self, names: Iterable[str]) -> list[str]:
        """Formulas depending on ``names`` (transitively), in recalculation order."""
        if self.scope is not None:
            return self.scope(names)
        desc = {n for n in self.graph.descendants(list(names)) if n in self.formulas}
        return self.graph.topological_order(desc)


@dataclass
class _Checked:
    name: str
    parsed: ParsedFormula
    description: str | None
    frequency: str
    refs: list[tuple[str, str]]  # (name, "item" | "formula")


class Engine:
    """A tracecalc database: formulas, data and computed records.

    Opens (and if needed creates) the database at ``url``; SQLite by default, PostgreSQL
    (``postgresql://...``) and MariaDB (``mysql://...``) through their bulk paths.

    Example:
        >>> eng = Engine("sqlite:///:memory:")
        >>> eng.load_data("sample_data/data.csv")                     # doctest: +SKIP
        >>> eng.set_formula("gross_margin", "(revenue - cogs) / revenue")  # doctest: +SKIP
        >>> eng.recalc().records_written                             # doctest: +SKIP
    """

    def __init__(self, url: str | None = None, *, user: str | None = None,
                 create: bool = True):
        """Open the database at ``url``; with ``create`` (the default) make it and its tables
        if they are missing. ``create=False`` opens only an existing tracecalc database and
        writes nothing on opening (read-only files open too).

        Raises:
            DatabaseError: not a database URL (with the fix: ``sqlite:///file.db``), the
                database cannot be reached, or (``create=False``) it does not exist.
        """
        self.store = Store(url or os.environ.get("TRACECALC_DB") or DEFAULT_URL, create=create)
        self.user = user or default_user()

    @property
    def url(self) -> str:
        return self.store.safe_url

    def close(self) -> None:
        """Release the database connections."""
        self.store.dispose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading the catalog ------------------------------------------------------------------

    def _catalog(self, conn) -> _Catalog:
        items = self.store.items(conn)
        rows = {r.name: r for r in self.store.formula_rows(conn)}
        g: Graph[str] = Graph()
        for name in items:
            g.add_node(name)
        for name in rows:
            g.add_node(name)
        for f, ref in self.store.edges(conn):
            g.add_edge(f, ref)
        return _Catalog(items, rows, g)

    SCOPED_BATCH = 500  # larger batches read the whole catalog (one scan is cheaper)

    def _catalog_for(self, conn, batch: Sequence[dict]) -> _Catalog:
        """What validating and saving ``batch`` needs: the names it defines and references,
        and everything upstream of the formulas it references (where a cycle would be)."""
        if len(batch) > self.SCOPED_BATCH:
            return self._catalog(conn)
        names = {f["name"] for f in batch if isinstance(f["name"], str)}
        for f in batch:
            try:
                names.update(parse(f["expression"]).references)
            except FormulaError:
                pass  # reported by _check
        items = self.store.items_named(conn, names)
        rows = self.store.formula_rows_named(conn, names)
        store = self.store

        def downstream(targets: Iterable[str]) -> list[str]:
            ids = [r.id for r in store.formula_rows_named(conn, set(targets)).values()]
            return store.downstream_names(conn, ids)

        g: Graph[str] = Graph()
        for name in items:
            g.add_node(name)
        for name in rows:
            g.add_node(name)
        for a, b in store.upstream(conn, [r.id for r in rows.values()]):
            g.add_edge(a, b)
        return _Catalog(items, rows, g, scope=downstream,
                        everything=lambda: store.all_names(conn))

    def _row(self, cat: _Catalog, name: str):
        row = cat.formulas.get(name)
        if row is None:
            raise NotFoundError("formula", name, close_matches(name, cat.formulas))
        return row

    # -- data ---------------------------------------------------------------------------------

    def load_data(self, data, *, frequencies: dict[str, str] | None = None,
                  label: str = "", allow_new_entities: bool = True,
                  progress: Progress | None = None) -> LoadResult:
        """Load data points (a CSV path or a DataFrame: item, entity, period, value).

        All or nothing: the first bad row raises ``DataError`` naming the row and the reason.
        An empty value deletes a stored point. Item frequencies come from a ``frequency``
        column, ``frequencies``, or are inferred from the periods. Entities the database
        does not know are added (``LoadResult.new_entity_codes``), unless
        ``allow_new_entities`` is false: then the first row with one is refused.

        Periods new to a frequency's calendar are listed in ``LoadResult.new_periods``; a
        new period inside or before the calendar, or off its grid (a date that is not a
        quarter end in quarterly data, a weekend in daily data), gets a line in
        ``LoadResult.warnings``, since every time-series window of that frequency now steps
        through it (``delete_data`` takes a mistaken date back out). Appending the periods
        after the last one is the normal case and is not warned about. Periods left with no
        data point of their frequency leave its calendar (``removed_periods``).

        ``progress(done, total, what)`` is called as the load goes: ``total`` 0 while the
        file is read and checked (no measure of it), then rows written out of all rows,
        item by item.

        Raises:
            DataError: a bad file or row, or an unknown entity with ``allow_new_entities``
                false; nothing is written.
        """
        tell = progress or (lambda done, total, what: None)
        path = data if isinstance(data, (str, os.PathLike)) else "data"
        tell(0, 0, f"reading {label or path}")
        batch = files.read_data(data, label)
        declared = {k: files.frequency(v, item=k) for k, v in (frequencies or {}).items()}
        declared.update(batch.frequencies)
        with self.store.transaction() as conn:
            tell(0, 0, "checking against the catalog")
            self.store.lock_catalog(conn)
            cat = self._catalog(conn)
            clash = sorted(set(batch.items.tolist()) & set(cat.formulas))
            if clash:
                raise DataError(f"'{clash[0]}' is a formula, not a data item",
                                      source=batch.source)
            changes = self.store.load_batch(conn, batch, declared,
                                            allow_new_entities=allow_new_entities,
                                            progress=tell)
            tell(len(batch), len(batch), "marking dependents stale")
            stale = self._mark_users(conn, cat, changes.changed_entities,
                                     grown=changes.grown_calendars,
                                     shrunk=set(changes.removed_periods),
                                     new_entity_ids=changes.new_entity_ids)
        notes = []
        for freq, added in sorted(changes.added_periods.items()):
            odd = calendars.odd_periods(freq, changes.calendars_before[freq], added)
            if odd:
                notes.append(calendars.warning_text(freq, odd))
        return LoadResult(rows=len(batch), items=tuple(changes.items),
                          new_items=tuple(changes.new_items), new_entities=changes.new_entities,
                          marked_stale=tuple(stale),
                          new_entity_codes=tuple(changes.new_entity_codes),
                          new_periods={f: tuple(p.tolist())
                                       for f, p in sorted(changes.added_periods.items())},
                          removed_periods={f: tuple(p.tolist())
                                           for f, p in sorted(changes.removed_periods.items())},
                          warnings=tuple(notes))

    def _mark_users(self, conn, cat: _Catalog, changed: dict[str, np.ndarray], *,
                    grown: Iterable[str] = (), shrunk: Iterable[str] = (),
                    new_entity_ids: np.ndarray | None = None) -> list[str]:
        """Mark what a change of data points makes stale, then everything downstream
        pending; returns every formula handled, in recalculation order.

        ``changed`` maps an item to the entities whose points changed; ``grown`` and
        ``shrunk`` are the frequencies whose calendar gained or lost periods."""
        by_id = {r.id: r for r in cat.formulas.values()}
        users: set[int] = set()
        for item, entity_ids in changed.items():
            # Direct users go stale for the entities whose values changed (all of them
            # when a cross-sectional function ranks or scores across entities).
            for fid in self.store.formulas_using_items(conn, [item]):
                row = by_id[fid]
                if _cross_sectional(row.expression):
                    self.store.set_state(conn, [row.name], FormulaState.STALE)
                else:
                    self.store.mark_entities(conn, fid, entity_ids)
                users.add(fid)
        # Formulas that give values where their inputs are missing (coalesce(x, 0)) must
        # be computed for new entities; those that also look along time (lag, ffill),
        # for every entity when their calendar gains periods. A lost period takes every
        # record at it along (Store.prune_periods): only windows along time then differ.
        grown, shrunk = set(grown), set(shrunk)
        new_ids = np.empty(0, np.int64) if new_entity_ids is None else new_entity_ids
        for row in cat.formulas.values():
            spontaneous, along_time = _reach(row.expression)
            if ((row.frequency in grown and (spontaneous or along_time))
                    or (row.frequency in shrunk and along_time)):
                self.store.set_state(conn, [row.name], FormulaState.STALE)
                users.add(row.id)
            elif spontaneous and len(new_ids):
                self.store.mark_entities(conn, row.id, new_ids)
                users.add(row.id)
        self.store.mark_changed(conn, sorted(users))
        return self.store.propagate_changes(conn)

    def delete_data(self, item: str, entity: str | Sequence[str] | None = None,
                    period=None) -> DeleteResult:
        """Delete data points of ``item``: of some entities, at some periods, or (neither
        given) the whole item with all its points.

        ``entity`` and ``period`` are one value or a list; periods are dates or ISO text.
        All or nothing, in one transaction: every entity and period given must match
        points of the item, else nothing is deleted. The item's users go stale for the
        entities that lost points (every entity for cross-sectional ones). Periods left
        with no data point of the item's frequency leave its calendar, so a mistaken date
        is undone completely: the formulas of that frequency that look along time (lag,
        growth, ffill, ...) go stale, and records at those periods are deleted.

        Returns:
            A ``DeleteResult``: points deleted, their entities and periods, the periods
            that left the calendar, and the formulas marked stale in recalculation order.

        Raises:
            NotFoundError: no such item, or an entity or period that matches no point of
                the item (with the close matches); nothing is deleted.
            DependentsError: the whole item was to go while formulas use it (listed).
            DataError: a period that is not a date.
        """
        codes = _listed(entity)
        days = [files.to_day(p, "period", item) for p in _listed(period)]
        with self.store.transaction() as conn:
            self.store.lock_catalog(conn)
            cat = self._catalog(conn)
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
                eids, pers, _ = self.store.read_item(conn, item_id)
                self.store.delete_item(conn, item_id)
                changed: dict[str, np.ndarray] = {}
            else:
                eids, pers = self._matching_points(conn, item, item_id, freq, codes, days)
                self.store.delete_data(conn, item_id, eids, pers)
                changed = {item: np.unique(eids)}
            removed = self.store.prune_periods(conn, freq, np.unique(pers))
            stale = self._mark_users(conn, cat, changed, shrunk={freq} if len(removed) else ())
            names = self.store.entity_codes(conn)
        return DeleteResult(
            item=item, frequency=freq, points=len(eids),
            entities=tuple(sorted(names[np.unique(eids)].tolist())),
            periods=tuple(np.unique(pers).tolist()), item_deleted=not codes and not days,
            removed_periods=tuple(removed.tolist()), marked_stale=tuple(stale))

    def _matching_points(self, conn, item: str, item_id: int, freq: str, codes: list[str],
                         days: list[np.datetime64]) -> tuple[np.ndarray, np.ndarray]:
        """The (entity ids, periods) of the item's points among ``codes`` and ``days``
        (all when not given); every code and day given must match one."""
        known = self.store.entity_ids(conn)
        for code in codes:
            if code not in known:
                raise NotFoundError("entity", code, close_matches(code, known))
        wanted = np.unique(np.array([known[c] for c in codes], dtype=np.int64))
        eids, pers, _ = self.store.read_item(conn, item_id, wanted if codes else None)
        have = self.store.entity_codes(conn)
        for code in codes:  # an entity without any point of the item
            if not (eids == known[code]).any():
                raise NotFoundError(f"entity with {item} data", code,
                                    close_matches(code, have[np.unique(
                                        self.store.read_item(conn, item_id)[0])]))
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

    def load_entities(self, data) -> int:
        """Load entity attributes (code, name, sector); returns how many rows were read."""
        rows = files.read_entities(data)
        with self.store.transaction() as conn:
            self.store.set_entity_attributes(conn, rows)
        return len(rows)

    def entities(self):
        """A DataFrame of entities: code, name, sector."""
        with self.store.transaction(write=False) as conn:
            rows = self.store.entities_table(conn)
        return files.frame(rows, ["code", "name", "sector"])

    def item(self, name: str) -> ItemInfo:
        """One data item: frequency, data points, entities, first and last period, and the
        formulas that use it directly.

        Raises:
            NotFoundError: no such item (with close matches).
        """
        with self.store.transaction(write=False) as conn:
            cat = self._catalog(conn)
            if name not in cat.items:
                raise NotFoundError("data item", name, close_matches(name, cat.items))
            item_id, freq = cat.items[name]
            points, ents, first, last = self.store.item_summary(conn, item_id)
            users = tuple(sorted(cat.graph.successors(name)))
        return ItemInfo(name, Frequency(freq), points, ents, first, last, users)

    def items(self) -> dict[str, str]:
        """Data items and their frequencies."""
        with self.store.transaction(write=False) as conn:
            return {k: v[1] for k, v in sorted(self.store.items(conn).items())}

    # -- formulas -----------------------------------------------------------------------------

    def _check(self, cat: _Catalog, batch: Sequence[dict]) -> tuple[list[_Checked],
                                                                   list[tuple[str, Exception]]]:
        """Validate a batch against the catalog; every problem is collected, none raised."""
        problems: list[tuple[str, Exception]] = []
        parsed: dict[str, ParsedFormula] = {}
        for f in batch:
            name = f["name"]
            if not isinstance(name, str) or not NAME_RE.match(name):
                problems.append((clip(str(name), 40), InvalidNameError(
                    f"{clip(str(name))} is not a valid formula name (a letter, then letters, "
                    "digits or _; at most 64 characters)")))
                continue
            if name in FUNCTION_NAMES:
                problems.append((name, InvalidNameError(f"'{name}' is a function name")))
                continue
            if name in cat.items:
                problems.append((name, InvalidNameError(f"'{name}' is a data item")))
                continue
            try:
                parsed[name] = parse(f["expression"], name)
            except FormulaError as e:
                problems.append((name, e))
        known = cat.names | {f["name"] for f in batch}
        for name, p in parsed.items():
            unknown: set[str] = set()  # each unknown name once, at its first place
            for node in walk(p.tree):
                if isinstance(node, Ref) and node.name not in known and node.name not in unknown:
                    unknown.add(node.name)
                    every = cat.all_names() | {f["name"] for f in batch}
                    problems.append((name, UnknownReferenceError(
                        node.name, close_matches(node.name, every), formula=name, text=p.text,
                        col=node.col)))
        bad = {n for n, _ in problems}
        good = {n: p for n, p in parsed.items() if n not in bad}
        graph = cat.graph.copy()
        for name, p in good.items():
            graph.add_node(name, p.references)
        cycles = graph.find_cycles()
        for cyc in cycles:
            member = next((n for n in cyc if n in good), cyc[0])
            path = _rotate(cyc, member)
            ref = next((r for r in walk(good[member].tree)
                        if isinstance(r, Ref) and r.name == path[1]), None)
            problems.append((member, CycleError(
                path, formula=member, reference=path[1], text=good[member].text,
                col=None if ref is None else ref.col)))
            bad.update(n for n in cyc if n in good)
        if cycles:
            # Nothing is saved, but every other problem of the batch is still reported: the
            # formulas outside the cycles are checked on a graph without its members.
            good = {n: p for n, p in good.items() if n not in bad}
            graph = cat.graph.copy()
            for name, p in good.items():
                graph.add_node(name, p.references)
        freqs: dict[str, str] = {}
        checked: list[_Checked] = []
        descriptions = {f["name"]: f.get("description") for f in batch}
        for name in graph.topological_order(set(good)):
            if name not in good or name in bad:
                continue
            p = good[name]
            per_ref = {}
            for ref in p.references:
                per_ref[ref] = freqs.get(ref) or (cat.frequency(ref) if ref in cat.names
                                                  else None)
            found = {f for f in per_ref.values() if f}
            if not p.references:
                problems.append((name, FrequencyError(
                    "a formula must reference at least one data item or formula", formula=name)))
                bad.add(name)
                continue
            if len(found) != 1:
                if all(per_ref.values()):
                    detail = ", ".join(f"{r} is {f}" for r, f in per_ref.items())
                    problems.append((name, FrequencyError(
                        f"mixes frequencies ({detail})", formula=name)))
                bad.add(name)
                continue
            freq = found.pop()
            old = cat.formulas.get(name)
            if old is not None and old.frequency != freq:
                users = [d for d in cat.downstream([name]) if d not in good]
                if users:
                    problems.append((name, FrequencyError(
                        f"would change from {old.frequency} to {freq}, which {', '.join(users)} "
                        "cannot follow; change those in the same batch", formula=name)))
                    bad.add(name)
                    continue
            freqs[name] = freq
            refs = [(r, "item" if r in cat.items else "formula") for r in p.references]
            checked.append(_Checked(name, p, descriptions.get(name), freq, refs))
        return ([] if cycles else checked), problems

    def _raise(self, problems: list[tuple[str, Exception]], what: str,
               batch: Sequence[dict]) -> None:
        rows = {f["name"]: f.get("row") for f in batch if isinstance(f["name"], str)}
        if len(problems) == 1 and not any(rows.values()):
            raise problems[0][1]
        raise ValidationError([Problem(n, str(e), rows.get(n)) for n, e in problems],
                              what=what)

    def set_formula(self, name: str, expression: str, description: str | None = None
                    ) -> SaveResult:
        """Validate and save one formula; it and everything downstream become stale.

        Raises:
            FormulaSyntaxError, UnknownReferenceError, UnknownFunctionError, ArityError,
            FrequencyError, CycleError, InvalidNameError: the save is refused and nothing
            changes. ``ValidationError`` lists several problems at once.
        """
        return self.set_formulas([{"name": name, "expression": expression,
                                   "description": description}])[0]

    def set_formulas(self, batch) -> list[SaveResult]:
        """Validate many formulas together and save all of them, or none.

        ``batch`` is a mapping ``{name: expression}`` (or ``{name: {"expression": ...,
        "description": ...}}``), or a list of mappings with ``name``, ``expression`` and
        optional ``description`` (and ``row``, where the formula stands in a file), or a
        list of ``(name, expression[, description])`` pairs.

        Raises:
            ValidationError: every problem of the batch at once (each with its file row when
                the entries carry one); nothing is saved. A batch without rows that has one
                problem raises that problem's own error (``CycleError``, ...).
            UsageError: ``batch`` has none of the shapes above.

        Example:
            >>> eng.set_formulas({"gm": "(revenue - cogs) / revenue", "gm2": "gm * 2"})
            ... # doctest: +SKIP
        """
        batch = _entries(batch)
        with self.store.transaction() as conn:
            self.store.lock_catalog(conn)  # before reading: the cycle check sees every save
            cat = self._catalog_for(conn, batch)
            checked, problems = self._check(cat, batch)
            if problems:
                self._raise(problems, "saving formulas", batch)
            ids = {n: r.id for n, r in cat.formulas.items()}
            results = [self._save(conn, cat, c, ids) for c in checked]
            order = self.store.propagate_changes(conn)
            if len(results) == 1:  # the usual case: everything handled is its downstream
                affected = {results[0].name: tuple(order)}
            else:
                graph = self._catalog(conn).graph
                affected = {r.name: tuple(graph.topological_order(
                    {r.name} | (graph.descendants(r.name) & set(order)))) for r in results}
        return [SaveResult(r.name, r.version, r.created, r.equivalent_to_previous,
                           affected[r.name] if r.marked_stale else (), r.described)
                for r in results]

    def _save(self, conn, cat: _Catalog, c: _Checked, ids: dict[str, int]) -> SaveResult:
        """Write one checked formula (the batch goes in dependency order, so what it
        references is saved already); a changed text flags it for the tracer."""
        old = cat.formulas.get(c.name)
        text = c.parsed.text
        formula_refs = [ids[r] for r, kind in c.refs if kind == "formula"]
        item_refs = [cat.items[r][0] for r, kind in c.refs if kind == "item"]
        if old is None:
            fid = self.store.insert_formula(
                conn, name=c.name, expression=text, canonical=c.parsed.canonical,
                description=c.description or "", frequency=c.frequency, version=1,
                state=str(FormulaState.STALE), updated_by=self.user, changed=True)
            ids[c.name] = fid
            self.store.set_references(conn, fid, formula_refs, item_refs)
            self.store.add_history(conn, formula_name=c.name, version=1, action="create",
                                   old_expression=None, new_expression=text,
                                   changed_by=self.user)
            return SaveResult(c.name, 1, True, False, (c.name,))
        if normalise(old.expression) == text:
            described = c.description is not None and c.description != old.description
            if described:
                self.store.update_formula(conn, old.id, description=c.description)
            return SaveResult(c.name, old.version, False, True, (), described)
        version = old.version + 1
        values = dict(expression=text, canonical=c.parsed.canonical, frequency=c.frequency,
                      version=version, state=str(FormulaState.STALE), updated_by=self.user,
                      changed=True)
        if c.description is not None:
            values["description"] = c.description
        self.store.update_formula(conn, old.id, **values)
        if old.frequency != c.frequency:  # its records sit on the other calendar's dates
            self.store.clear_records(conn, old.id)
        self.store.set_references(conn, old.id, formula_refs, item_refs)
        self.store.add_history(conn, formula_name=c.name, version=version, action="update",
                               old_expression=old.expression, new_expression=text,
                               changed_by=self.user)
        return SaveResult(c.name, version, False, c.parsed.canonical == old.canonical,
                          (c.name,))

    def check_formula(self, name: str, expression: str, impact: bool = True) -> CheckReport:
        """Validate an edit and show its impact without saving anything.

        Returns a ``CheckReport``: ``is_valid`` and every problem, whether the edit is
        equivalent to the current definition (or to other formulas), the formulas that would
        be recomputed in order, and the number of (entity, period) records in scope. With
        ``impact=False`` only the validation is done (what a save checks): its cost follows
        the part of the graph upstream of the references, not the catalog's size.
        """
        batch = _entries([{"name": name, "expression": expression}])
        with self.store.transaction(write=False) as conn:
            cat = self._catalog_for(conn, batch)
            checked, problems = self._check(cat, batch)
            old = cat.formulas.get(name)
            if problems:
                return CheckReport(name, expression, False,
                                   tuple(Problem(n, str(e)) for n, e in problems),
                                   is_new=old is None)
            c = checked[0]
            canon = c.parsed.canonical
            if not impact:
                return CheckReport(name, expression, True, (), is_new=old is None,
                                   equivalent_to_current=old is not None
                                   and old.canonical == canon, canonical=canon,
                                   frequency=Frequency(c.frequency),
                                   references=c.parsed.references)
            same = tuple(n for n in self.store.formulas_with_canonical(conn, canon) if n != name)
            down = cat.downstream([name]) if old is not None else []
            freq = {n: r.frequency for n, r in self.store.formula_rows_named(conn, down).items()}
            freq[name] = c.frequency
            width = self.store.entity_count(conn)
            cal = {f: len(self.store.calendar(conn, f)) for f in set(freq.values())}
            affected = [name, *down]
            return CheckReport(
                name, expression, True, (), is_new=old is None,
                equivalent_to_current=old is not None and old.canonical == canon,
                equivalent_formulas=same, canonical=canon, frequency=Frequency(c.frequency),
                references=c.parsed.references, affected=tuple(affected),
                records_in_scope=sum(width * cal[freq[a]] for a in affected))

    def delete_formula(self, name: str) -> None:
        """Delete a formula and its records.

        Raises:
            NotFoundError: no such formula.
            DependentsError: other formulas use it (they are listed); nothing is deleted.
        """
        with self.store.transaction() as conn:
            self.store.lock_catalog(conn)
            cat = self._catalog(conn)
            row = self._row(cat, name)
            users = sorted(cat.graph.successors(name))
            if users:
                raise DependentsError(name, users)
            self.store.delete_formula(conn, row.id)
            self.store.add_history(conn, formula_name=name, version=row.version, action="delete",
                                   old_expression=row.expression, new_expression=None,
                                   changed_by=self.user)

    def formula(self, name: str) -> FormulaInfo:
        """One formula as stored."""
        with self.store.transaction(write=False) as conn:
            cat = self._catalog(conn)
            r = self._row(cat, name)
            refs = tuple(sorted(cat.graph.predecessors(name)))
        return FormulaInfo(r.name, r.expression, r.canonical, Frequency(r.frequency), r.version,
                           FormulaState(r.state), r.description, refs)

    def formulas(self):
        """A DataFrame, one row per formula: name, expression, description, frequency,
        version, state, canonical."""
        cols = ["name", "expression", "description", "frequency", "version", "state",
                "canonical"]
        with self.store.transaction(write=False) as conn:
            rows = [{c: getattr(r, c) for c in cols} for r in self.store.formula_rows(conn)]
        return files.frame(rows, cols)

    def dependencies(self, name: str, transitive: bool = False) -> list[str]:
        """What ``name`` references (all the way up with ``transitive``)."""
        with self.store.transaction(write=False) as conn:
            cat = self._catalog(conn)
            self._row(cat, name)
            if transitive:
                return cat.graph.topological_order(cat.graph.ancestors(name))
            return sorted(cat.graph.predecessors(name))

    def dependents(self, name: str, transitive: bool = False) -> list[str]:
        """Formulas that use ``name`` (all the way down, in recalculation order, with
        ``transitive``)."""
        with self.store.transaction(write=False) as conn:
            cat = self._catalog(conn)
            if name not in cat.names:
                raise NotFoundError("formula or item", name, close_matches(name, cat.names))
            if transitive:
                return cat.downstream([name])
            return sorted(cat.graph.successors(name))

    def history(self, name: str) -> list[dict]:
        """Every saved version of a formula: version, action, old and new text, who, when."""
        with self.store.transaction(write=False) as conn:
            return self.store.history(conn, name)

    # -- recalculation ------------------------------------------------------------------------

    def recalc(self, full: bool = False, progress: Progress | None = None,
               workers: int | None = None, wait: float = 0.0,
               atomic: bool = False, dask=None,
               chunk_entities: int | None = None, verify: bool = False) -> RunReport:
        """Recompute what is stale (everything with ``full``) in dependency order.

        Stale formulas are recomputed for their stale entities; pending ones (downstream)
        only for the entities where an input actually changed in this run. Each entity's
        new values are digested and compared with the stored digest; only where they differ
        are the stored records read and compared cell by cell, and only the cells that
        differ are written (early cutoff), so a full run over unchanged data reads digests
        and writes nothing. Independent formulas are evaluated at the same time on
        ``workers`` threads (default: ``TRACECALC_WORKERS`` or the number of cores, at most
        4) while one thread writes finished ones.

        Memory stays bounded as entities grow: the entities are processed in chunks of
        ``chunk_entities`` (default ``TRACECALC_CHUNK_ENTITIES``, else about 400,000 cells
        per chunk); formulas with a cross-sectional function run over every entity at once.

        With ``dask`` (a scheduler address such as ``"tcp://host:8786"``, or a
        ``distributed.Client``), the entities are partitioned across the Dask cluster: each
        task evaluates the stale formulas for its partition and writes its records directly
        to PostgreSQL or MariaDB (with SQLite, the workers read the database file and this
        process writes). Cross-sectional formulas run here over every entity. Needs the
        ``dask`` extra.

        One recalculation runs at a time per database: a second one waits up to ``wait``
        seconds for the lock, then raises ``BusyError``. Each formula's changes, its fresh
        state, its dependants' stale marks and its line of the run log are committed
        together, so a run killed at any moment leaves consistent data and the remaining
        work stale (the next run finishes it and logs the killed run as interrupted). With
        ``atomic`` the whole run is one transaction instead: readers see all of it or
        nothing. Formulas saved or marked stale during a run stay stale for the next one.

        With ``verify`` the stored digests are not trusted: every recomputed entity's new
        values are compared with its stored records cell by cell, what differs is
        rewritten, and every digest that does not match the new values is rewritten too
        (records and digests changed outside tracecalc, or left by a damaged database,
        are repaired). Records and digests of formulas, entities or periods that no longer
        exist are deleted first. It reads every stored record of what it recomputes (of
        everything with ``full``), so it costs about as much as a first run's reads; see
        ``verify`` and docs/operations.md. The run log's kind is ``full-verify`` (or
        ``verify`` for an incremental run).

        The lock lives on a database connection of its own. If that connection dies
        mid-run (``pg_terminate_backend``, ``KILL``, an idle timeout), the run notices at
        its next commit, which it rolls back: every commit first checks, under the catalog
        lock, that the run still holds its lock, and a run that takes the lock waits for
        the commits still open (see ``tracecalc.storage.locks``). So two runs never write
        at the same time; the stopped run's remaining work stays stale for the next one.

        ``progress(done, total, name)`` is called once the run is planned (``0, total,
        ""``), then after each formula.

        Returns:
            A ``RunReport``: per formula, entities recomputed, records written and unchanged.

        Raises:
            BusyError: another recalculation holds the lock past ``wait``.
            LockLostError: the run lost its lock (its connection was closed) and stopped;
                what it committed before is kept, the rest is left stale.
        """
        if dask is not None and atomic:
            raise TracecalcError("an atomic run cannot be spread over a Dask cluster")
        with self.store.recalc_lock() as lock:
            lock.acquire(wait)
            options = RunOptions(
                workers=workers or default_workers(),
                chunk_entities=chunk_entities or default_chunk_entities(),
                # a second connection may read while the writer writes (not in one shared
                # transaction, nor in an in-memory SQLite database: one connection)
                concurrent_reads=not atomic and self.store.shareable,
                verify=verify, dask=dask,
                lock_holder=lock.holder,  # every commit of the run checks the lock is ours
                atomic=atomic)
            if not atomic:
                return self._recalc(full, progress, options)
            try:
                with self.store.transaction() as shared:
                    return self._recalc(full, progress, options, shared)
            except TracecalcError as e:  # rolled back, run log included: log the failure
                with contextlib.suppress(Exception), self.store.transaction() as conn:
                    rid = self.store.start_run(conn, _kind(full, verify), self.user)
                    self.store.finish_run(conn, rid, "failed", 0, 0, 0,
                                          f"atomic run rolled back: {e}")
                raise

    def _plan(self, conn, full: bool, kind: str, holder: int | None,
              verify: bool = False) -> Plan:
        self.store.lock_for_run(conn, holder)
        self.store.mark_interrupted_runs(conn)
        if full:
            self.store.set_state(conn, self.store.formula_names(conn), FormulaState.STALE)
        cat = self._catalog(conn)
        targets = {n for n, r in cat.formulas.items() if r.state != FormulaState.FRESH}
        run_id = self.store.start_run(conn, kind, self.user)
        universe = self.store.entity_universe(conn)
        freqs = {cat.frequency(n) for n in targets}
        freqs |= {cat.frequency(r) for n in targets for r in cat.graph.predecessors(n)}
        own = {}
        for n in targets:
            state = cat.formulas[n].state
            own[n] = (universe if state == FormulaState.STALE else
                      self.store.stale_entities(conn, cat.formulas[n].id)
                      if state == FormulaState.PARTIAL else NONE)
        fs = cat.formulas
        return Plan(
            url=self.store.worker_url, run_id=run_id, universe=universe, items=dict(cat.items),
            formulas={n: FormulaRef(n, r.id, r.version, r.stale_seq, r.frequency, r.expression)
                      for n, r in fs.items()},
            calendars={f: self.store.calendar(conn, f) for f in freqs},
            # among formulas ready together, the smallest id first: each formula's records
            # then append to the records' key (see recalc.Runner._flush)
            order=cat.graph.topological_order(targets, key=lambda n: fs[n].id),
            uses={n: tuple(p for p in cat.graph.predecessors(n) if p in targets)
                  for n in targets},
            own=own, cross_sectional={n: _cross_sectional(fs[n].expression) for n in targets},
            users={n: [(d, fs[d].id, _cross_sectional(fs[d].expression))
                       for d in sorted(cat.graph.successors(n))] for n in targets},
            verify=verify, lock_holder=holder)

    def _recalc(self, full: bool, progress: Progress | None, options: RunOptions,
                shared=None) -> RunReport:
        """One run under the lock; ``shared``: the connection of an atomic run's one
        transaction."""
        t0 = time.perf_counter()
        kind, verify, holder = _kind(full, options.verify), options.verify, options.lock_holder
        with run_transaction(self.store, shared) as conn:
            plan = self._plan(conn, full, kind, holder, verify)  # checks the lock first
            strays = self.store.delete_strays(conn) if verify else 0
        report = RunReport(run_id=plan.run_id, kind=kind, verify=verify,
                           strays_removed=strays)
        if progress is not None:  # planned: the count of formulas is known now
            progress(0, len(plan.order), "")
        try:
            session = Session(plan, self.store, shared)
            if options.dask is not None:
                from tracecalc import cluster

                done = cluster.run(plan, session, options, progress)
            else:
                done = run_plan(plan.tasks(), plan.universe, session, options,
                                periods=plan.periods, progress=progress)
            report.formulas, report.io_seconds = done.stats, done.io_seconds
            report.status = "ok"
            self._finish(report, t0, None, shared, holder)
        except BaseException as e:
            report.status = "failed"
            # The run's own log line says why, even after a lost lock (it is no data; the
            # next run would mark it interrupted). Best effort: the error itself matters more.
            with contextlib.suppress(Exception):
                self._finish(report, t0, f"{type(e).__name__}: {e}", shared, None)
            if isinstance(e, (TracecalcError, KeyboardInterrupt)):
                raise
            raise TracecalcError(f"recalculation failed: {type(e).__name__}: "
                                 f"{' '.join(str(e).split())}") from e
        return report

    def _finish(self, report: RunReport, t0: float, message: str | None, shared,
                holder: int | None) -> None:
        report.seconds = time.perf_counter() - t0
        with run_transaction(self.store, shared) as conn:
            if message is None:  # an "ok" is a commit of the run like any other
                self.store.lock_for_run(conn, holder)
            self.store.finish_run(conn, report.run_id, report.status, report.formulas_computed,
                                  report.records_written, report.records_unchanged, message)

    def status(self) -> dict:
        """Counts (formulas, items, entities, data points, records) and what is stale:
        ``stale`` lists every formula that is not fresh, in recalculation order;
        ``states`` gives their state, ``stale_entities`` the entity marks of partial ones."""
        with self.store.transaction(write=False, snapshot=True) as conn:
            cat = self._catalog(conn)
            states = {n: str(r.state) for n, r in cat.formulas.items()
                      if r.state != FormulaState.FRESH}
            return {"formulas": len(cat.formulas),
                    "stale": cat.graph.topological_order(states),
                    "states": states, "stale_entities": self.store.stale_counts(conn),
                    "items": len(cat.items), "entities": self.store.entity_count(conn),
                    "data_points": self.store.count_data(conn),
                    "records": self.store.count_records(conn)}

    def runs(self, limit: int = 20) -> list[dict]:
        """The latest runs, newest first."""
        with self.store.transaction(write=False) as conn:
            return self.store.runs(conn, limit)

    def run_log(self, run_id: int) -> list[dict]:
        """One run, per formula: version, entities recomputed (0: skipped, nothing upstream
        changed), records written and unchanged, seconds."""
        with self.store.transaction(write=False) as conn:
            return self.store.run_formulas(conn, run_id)

    def verify(self, wait: float = 0.0, progress: Progress | None = None,
               chunk_entities: int | None = None) -> VerifyReport:
        """Check that the database and its stored records can be trusted.

        Two checks, both read-only:

        1. The database's own integrity check: SQLite ``PRAGMA integrity_check`` (every
           page, b-tree and index of the file; slower than ``quick_check`` only by the
           index checks, and tracecalc's big tables have none); MariaDB ``CHECK TABLE`` on
           the tracecalc tables; PostgreSQL has no built-in check, so every row of every
           tracecalc table is read by a sequential scan (a damaged page fails the read),
           and where the ``amcheck`` extension is installed its ``verify_heapam`` and
           ``bt_index_check`` check the tables and indexes (else a note says so).
        2. Every stored digest recomputed from the stored records: each formula's records
           are read into panels on its calendar exactly as a run reads them, in chunks of
           ``chunk_entities`` entities (default: about 400,000 cells; memory stays bounded),
           digested and compared with ``tc_digests``. A run compares digests first and
           reads records only where they differ, so this is what finds records changed
           behind an intact digest. Found are: mismatches (formula, entity), records
           without a digest (harmless: the next run compares them cell by cell), and
           records or digests of formulas, entities or periods that no longer exist.

        A failure of the database while reading (a damaged file: "database disk image is
        malformed") becomes a finding of the report (``unreadable``, ``corrupt`` set), not
        an exception. It reads the whole database once: minutes for tens of millions of
        records. It holds the recalculation lock (a run meanwhile would change records
        under it): with another recalculation running it waits up to ``wait`` seconds.

        Returns:
            A ``VerifyReport``; ``ok`` when nothing was found. Mismatches, missing and
            stray digests and stray records are repaired by ``recalc(full=True,
            verify=True)``; a damaged database (``corrupt``) needs a backup or a copy of
            what can still be read (see docs/operations.md).

        Raises:
            BusyError: another recalculation holds the lock past ``wait``.
        """
        with self.store.recalc_lock() as lock:
            lock.acquire(wait)
            return integrity.verify(self.store, chunk_entities or default_chunk_entities(),
                                    progress)

    def explain(self, name: str, entity: str, period) -> dict:
        """How one record came about: the formula text and version, and the tree of its
        sub-expressions with their values at that entity and period (for time-series
        functions, the window of input values that fed them).

        Returns a dict: ``formula``, ``version``, ``expression``, ``entity``, ``period``,
        ``stored`` (the stored value, None if missing) and ``tree`` (nested dicts with
        ``text``, ``value``, ``kind``, ``window`` and ``children``).

        Raises:
            NotFoundError: no such formula, entity or period.
        """
        with self.store.transaction(write=False, snapshot=True) as conn:
            cat = self._catalog(conn)
            row = self._row(cat, name)
            codes = self.store.entity_ids(conn)
            if entity not in codes:
                raise NotFoundError("entity", entity, close_matches(entity, codes))
            calendar = self.store.calendar(conn, row.frequency)
        parsed = parse(row.expression, name)
        t = explain.period_index(calendar, period)
        if t is None:
            raise NotFoundError(f"{row.frequency} period", str(period),
                                [str(d) for d in calendar[-3:]])
        eid = codes[entity]
        with self.store.transaction(write=False, snapshot=True) as conn:
            universe = self.store.entity_universe(conn)
            ids = universe if parsed.has_cross_sectional else explain.one(eid)

            def read(ref: str):
                if ref in cat.items:
                    rows = self.store.read_item(conn, cat.items[ref][0], ids)
                else:
                    rows = self.store.read_records(conn, cat.formulas[ref].id, ids)
                return to_panel(*rows, calendar, ids)

            panels = {ref: read(ref) for ref in parsed.references}
            stored = read(name)
        col = int(explain.column(ids, eid))
        value = stored[t, col]
        return {"formula": name, "version": row.version, "expression": row.expression,
                "frequency": row.frequency, "entity": entity, "period": str(calendar[t]),
                "stored": None if value != value else float(value),
                "tree": explain.explain_tree(parsed.tree, panels, calendar, t, col, cat.items)}

    # -- reading results ----------------------------------------------------------------------

    def records(self, name: str, entities: Iterable[str] | str | None = None, start=None,
                end=None):
        """A formula's (or a data item's) stored records as a DataFrame: entity, period,
        value.

        Missing values are not stored, so they do not appear. ``entities`` is one entity
        code or several; ``start``/``end`` bound the periods (inclusive), given as anything
        ``load_data`` takes as a date (ISO text, ``datetime.date``, ``Timestamp``,
        ``datetime64``). Periods come back as ``datetime64[s]``, exact for every date from
        0001-01-01 to 9999-12-31, so the frame (with an ``item`` column) loads back
        unchanged. ``df.attrs["stale"]`` maps the formula to its state when it is not fresh
        (empty otherwise), and a ``StaleWarning`` says so.

        Raises:
            NotFoundError: no formula or item ``name``.
            DataError: ``start`` or ``end`` is not a date in the supported range.
        """
        source = f"records of '{name}'"
        if start is not None:
            files.to_day(start, "start", source)  # refused before any reading
        if end is not None:
            files.to_day(end, "end", source)
        with self.store.transaction(write=False, snapshot=True) as conn:
            cat = self._catalog(conn)
            df = self._records(conn, cat, name)
            stale = self._staleness(conn, cat, [name])
        df = files.filter_frame(df, entities, start, end, source)
        return _flag_stale(df, stale)

    def export(self, names: Iterable[str] | None = None):
        """Records of several formulas (all by default; data items by name too) as one
        DataFrame: formula, entity, period, value, read in one transaction.

        Like ``records``: periods are ``datetime64[s]``; ``df.attrs["stale"]`` maps each
        exported formula that is not fresh to its state, with a ``StaleWarning`` for each.

        Raises:
            NotFoundError: a name is neither a formula nor an item.
        """
        with self.store.transaction(write=False, snapshot=True) as conn:
            cat = self._catalog(conn)
            names = list(names) if names else sorted(cat.formulas)
            frames = [(n, self._records(conn, cat, n)) for n in names]
            stale = self._staleness(conn, cat, names)
        return _flag_stale(files.concat_records(frames), stale)

    def _records(self, conn, cat: _Catalog, name: str):
        if name in cat.items:
            rows = self.store.read_item(conn, cat.items[name][0])
        elif name in cat.formulas:
            rows = self.store.read_records(conn, cat.formulas[name].id)
        else:
            raise NotFoundError("formula or item", name, close_matches(name, cat.names))
        return files.records_frame(self.store.entity_codes(conn), *rows)

    def _staleness(self, conn, cat: _Catalog, names: Iterable[str]) -> list:
        """A StaleWarning for each of ``names`` that is a formula not fresh."""
        states = {n: cat.formulas[n].state for n in dict.fromkeys(names)
                  if n in cat.formulas and cat.formulas[n].state != FormulaState.FRESH}
        if not states:
            return []
        marks = self.store.stale_counts(conn)
        everyone = self.store.entity_count(conn)
        return [StaleWarning(n, str(s), everyone if s == FormulaState.STALE else
                             marks.get(n, 0) if s == FormulaState.PARTIAL else None)
                for n, s in states.items()]


def _flag_stale(df, stale: list):
    df.attrs["stale"] = {w.formula: w.state for w in stale}
    for w in stale:
        warnings.warn(w, stacklevel=3)
    return df


def _kind(full: bool, verify: bool) -> str:
    """The run log's kind of a run."""
    return ("full" if full else "incremental") if not verify else (
        "full-verify" if full else "verify")


@functools.lru_cache(maxsize=4096)
def _cross_sectional(expression: str) -> bool:
    return parse(expression).has_cross_sectional


@functools.lru_cache(maxsize=4096)
def _reach(expression: str) -> tuple[bool, bool]:
    """(gives values where every input is missing, looks along time): what decides
    whether new entities or new periods reach a formula without data of its own."""
    parsed = parse(expression)
    along_time = parsed.has_time_series or "ffill" in parsed.functions
    return gives_values_from_nothing(compile_tree(parsed.tree)), along_time


_SHAPES = ("a mapping {name: expression}, a list of mappings with 'name' and 'expression' "
           "(and optionally 'description'), or a list of (name, expression[, description]) "
           "pairs")


def _entries(batch) -> list[dict]:
    """The formulas of a batch in any accepted shape, as mappings."""
    if isinstance(batch, Mapping) and not {"name", "expression"} <= set(batch):
        out = []
        for name, v in batch.items():
            if isinstance(v, Mapping):
                out.append({"name": name, **v})
            else:
                out.append({"name": name, "expression": v})
        batch = out
    if isinstance(batch, (str, bytes, Mapping)) or not isinstance(batch, Iterable):
        raise UsageError(f"cannot read formulas from a {type(batch).__name__}; pass {_SHAPES}")
    entries = []
    for i, e in enumerate(batch):
        if isinstance(e, Mapping) and "name" in e and "expression" in e:
            entry = dict(e)
        elif (isinstance(e, (tuple, list)) and len(e) in (2, 3)
              and all(isinstance(x, str) or x is None for x in e)):
            entry = dict(zip(("name", "expression", "description"), e))
        else:
            raise UsageError(f"formula entry {i + 1} ({clip(e, 60)}) is not understood; pass "
                             f"{_SHAPES}")
        if not isinstance(entry["expression"], str):
            raise UsageError(f"the expression of formula entry {i + 1} "
                             f"({clip(entry['name'], 60)}) is a "
                             f"{type(entry['expression']).__name__}, not text")
        entries.append(entry)
    return entries


def _listed(value) -> list:
    """None, one value or several -> a list without repeats (in the given order)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        value = [value]
    return list(dict.fromkeys(value))


def _nearest(calendar: np.ndarray, day: np.datetime64, n: int = 2) -> list[str]:
    """The periods of ``calendar`` (sorted) closest to ``day``: suggestions for a date."""
    if len(calendar) == 0:
        return []
    order = np.argsort(np.abs((calendar - day).astype(np.int64)), kind="stable")[:n]
    return [str(d) for d in np.sort(calendar[order])]


def _rotate(cycle: list[str], start: str) -> list[str]:
    """The same cycle, starting (and ending) at ``start``."""
    body = cycle[:-1]
    i = body.index(start)
    body = body[i:] + body[:i]
    return body + [start]
