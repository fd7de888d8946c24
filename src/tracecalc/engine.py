"""The composition root and the one public facade: ``Engine``.

``Engine`` wires storage, the catalog, the tracer and the evaluator together and delegates
each job to its module: ``saving`` (check and save formulas), ``loads`` (data changes),
``planning`` and ``recalc`` (runs), ``reading`` (records, status, explain), ``integrity``
(verify). Every public method runs in one database transaction (recalculation: one per
formula group), so a rejected save or a bad data file changes nothing.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import time
from collections.abc import Callable, Iterable, Sequence

from tracecalc import catalog, integrity, loads, planning, reading, saving
from tracecalc.errors import NotFoundError, TracecalcError, close_matches
from tracecalc.facts import FactsCache
from tracecalc.model import (
    CheckReport,
    DeleteResult,
    FormulaInfo,
    FormulaState,
    Frequency,
    ItemInfo,
    LoadResult,
    RunReport,
    SaveResult,
    VerifyReport,
)
from tracecalc.recalc import RunOptions, run_plan
from tracecalc.storage import DEFAULT_URL, Store, files
from tracecalc.work import Plan, Session, run_transaction

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
        self.facts = FactsCache()  # what each stored formula's text says, by (id, version)

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

    def _read(self, conn, names: Iterable[str] = (), **how) -> catalog.Catalog:
        return catalog.read(self.store, conn, self.facts, names, **how)

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
        return loads.load(self.store, self.facts, data, frequencies, label,
                          allow_new_entities, tell)

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
        days = [files.to_day(p, "period", item) for p in loads.listed(period)]
        return loads.delete(self.store, self.facts, item, loads.listed(entity), days)

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
            cat = self._read(conn, [name], up=False, items_down=True)
            if name not in cat.items:
                raise NotFoundError("data item", name,
                                    close_matches(name, self.store.items(conn)))
            item_id, freq = cat.items[name]
            points, ents, first, last = self.store.item_summary(conn, item_id)
            users = tuple(sorted(cat.graph.successors(name)))
        return ItemInfo(name, Frequency(freq), points, ents, first, last, users)

    def items(self) -> dict[str, str]:
        """Data items and their frequencies."""
        with self.store.transaction(write=False) as conn:
            return {k: v[1] for k, v in sorted(self.store.items(conn).items())}

    # -- formulas -----------------------------------------------------------------------------

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
        list of ``(name, expression[, description])`` pairs. Each formula is parsed once;
        the check reads only what the batch reaches (for a batch over 500 formulas, the
        whole catalog) and searches it for cycles once.

        Raises:
            ValidationError: every problem of the batch at once (each with its file row when
                the entries carry one); nothing is saved. A batch without rows that has one
                problem raises that problem's own error (``CycleError``, ...).
            UsageError: ``batch`` has none of the shapes above.

        Example:
            >>> eng.set_formulas({"gm": "(revenue - cogs) / revenue", "gm2": "gm * 2"})
            ... # doctest: +SKIP
        """
        batch = saving.entries(batch)
        with self.store.transaction() as conn:
            self.store.lock_catalog(conn)  # before reading: the cycle check sees every save
            return saving.save_batch(self.store, conn, self.facts, batch, self.user)

    def check_formula(self, name: str, expression: str, impact: bool = True) -> CheckReport:
        """Validate an edit and show its impact without saving anything.

        Returns a ``CheckReport``: ``is_valid`` and every problem, whether the edit is
        equivalent to the current definition (or to other formulas), the formulas that would
        be recomputed in order, and the number of (entity, period) records in scope. With
        ``impact=False`` only the validation is done (what a save checks): its cost follows
        the part of the graph upstream of the references, not the catalog's size.
        """
        saving.entries([{"name": name, "expression": expression}])  # the same refusals
        with self.store.transaction(write=False) as conn:
            return saving.check_one(self.store, conn, self.facts, name, expression, impact)

    def delete_formula(self, name: str) -> None:
        """Delete a formula and its records.

        Raises:
            NotFoundError: no such formula.
            DependentsError: other formulas use it (they are listed); nothing is deleted.
        """
        with self.store.transaction() as conn:
            self.store.lock_catalog(conn)
            saving.delete(self.store, conn, self.facts, name, self.user)

    def formula(self, name: str) -> FormulaInfo:
        """One formula as stored."""
        with self.store.transaction(write=False) as conn:
            cat = self._read(conn, [name], down=False)
            r = cat.row(name)
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
            cat = self._read(conn, [name], down=False)
            cat.row(name)
            if transitive:
                return cat.graph.topological_order(cat.graph.ancestors(name))
            return sorted(cat.graph.predecessors(name))

    def dependents(self, name: str, transitive: bool = False) -> list[str]:
        """Formulas that use ``name`` (all the way down, in recalculation order, with
        ``transitive``)."""
        with self.store.transaction(write=False) as conn:
            cat = self._read(conn, [name], up=False, items_down=True)
            if name not in cat.names:
                raise NotFoundError("formula or item", name,
                                    close_matches(name, cat.all_names()))
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
        return planning.plan(self.store, conn, self.facts, full=full, kind=kind,
                             user=self.user, holder=holder, verify=verify)

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
        ``states`` gives their state, ``stale_entities`` the entity marks of partial ones.
        Reads only the formulas that are not fresh."""
        return reading.status(self.store, self.facts)

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
        return reading.explain_record(self.store, self.facts, name, entity, period)

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
        return reading.records(self.store, self.facts, name, entities, start, end)

    def export(self, names: Iterable[str] | None = None):
        """Records of several formulas (all by default; data items by name too) as one
        DataFrame: formula, entity, period, value, read in one transaction.

        Like ``records``: periods are ``datetime64[s]``; ``df.attrs["stale"]`` maps each
        exported formula that is not fresh to its state, with a ``StaleWarning`` for each.

        Raises:
            NotFoundError: a name is neither a formula nor an item.
        """
        return reading.export(self.store, self.facts, names)


def _kind(full: bool, verify: bool) -> str:
    """The run log's kind of a run."""
    return ("full" if full else "incremental") if not verify else (
        "full-verify" if full else "verify")
