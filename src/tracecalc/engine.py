"""The composition root and the one public facade: ``Engine``.

``Engine`` wires storage, the catalog, the tracer and the evaluator together and delegates
each job to its module: ``saving`` (check and save formulas), ``loads`` (data changes),
``planning`` and ``recalc`` (runs), ``reading`` (records, status, explain), ``integrity``
(verify). Every public method runs in one database transaction (recalculation: one per
formula group), so a rejected save or a bad data file changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from tracecalc import catalog, evaluating, integrity, loads, planning, reading, running, saving
from tracecalc.facts import FactsCache
from tracecalc.model import (
    CheckReport,
    DeleteResult,
    FormulaInfo,
    ItemInfo,
    LoadResult,
    RunReport,
    SaveResult,
    VerifyReport,
)
from tracecalc.storage import DEFAULT_URL, Store, files
from tracecalc.work import RunPlan

Progress = Callable[[int, int, str], None]


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
        self.user = user or running.default_user()
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
        return catalog.read(self.store, conn, self.facts, names, **how)  # scoped by default

    # -- data ---------------------------------------------------------------------------------

    def load_data(self, data, *, frequencies: dict[str, str] | None = None,
                  label: str = "", allow_new_entities: bool = True, snap: bool = False,
                  progress: Progress | None = None, chunk_rows: int | None = None
                  ) -> LoadResult:
        """Load data points (a CSV path or a DataFrame: item, entity, period, value
        [, frequency] [, known_at]); all or nothing, the first bad row raises ``DataError``.

        An empty value deletes a point. Frequencies come from a ``frequency`` column,
        ``frequencies``, or the periods. A period off its calendar is refused, or with
        ``snap`` moved onto it (docs/formula-language.md, "Calendars"). A later ``known_at``
        adds a version, the same one replaces it (``history_data``). Unknown entities are
        added unless ``allow_new_entities`` is false. ``progress(done, total, what)``. The
        whole file is checked first, ``chunk_rows`` rows at a time (default 500,000).

        Raises:
            DataError: a bad file or row, or an unknown entity with ``allow_new_entities``
                false; nothing is written.
        """
        return loads.load(self.store, self.facts, data, frequencies, label, allow_new_entities,
                          progress or (lambda done, total, what: None), snap, chunk_rows)

    def delete_data(self, item: str, entity: str | Sequence[str] | None = None,
                    period=None) -> DeleteResult:
        """Delete data points of ``item``: of some entities, at some periods, or (neither
        given) the whole item with all its points.

        ``entity`` and ``period`` are one value or a list (dates or ISO text). All or
        nothing: every entity and period given must match points of the item. Its users go
        stale for the entities that lost points (all for cross-sectional ones); periods
        left without data leave the calendar (a mistaken date is undone: what looks along
        time goes stale, records at those periods go).

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
        """Load entities and their attributes (code, name, sector, and any other column:
        industry, country); returns how many rows were read. Formulas grouping by an
        attribute that changed (``by=industry``) become stale."""
        return loads.load_entities(self.store, self.facts, data)

    def entities(self):
        """A DataFrame of entities: code, name, sector, then their other attributes."""
        with self.store.transaction(write=False) as conn:
            rows, names = self.store.entities_table(conn)
        return files.frame(rows, ["code", "name", "sector", *names])

    def item(self, name: str) -> ItemInfo:
        """One data item: frequency, data points, entities, first and last period, and the
        formulas that use it directly. Raises ``NotFoundError`` (with close matches)."""
        return reading.item(self.store, self.facts, name)

    def history_data(self, item: str, entity: str, period) -> list[dict]:
        """Every version of one data point, oldest first: ``known_at`` (ISO), ``value``
        (None: known to be missing from then), ``latest``, and ``loaded_as``, the date it
        was loaded with when a ``snap`` load moved it. Raises ``NotFoundError``."""
        return reading.history_data(self.store, item, entity, period)

    @property
    def daily_calendar(self) -> str:
        """The daily calendar: ``weekdays`` (Monday to Friday) or an exchange's code."""
        with self.store.transaction(write=False) as conn:
            return self.store.daily_calendar(conn)

    def set_daily_calendar(self, name: str) -> list[str]:
        """Choose the daily calendar (``weekdays`` or an exchange code such as ``XNYS``);
        refused while daily data sits off it. Returns the formulas marked stale."""
        return loads.set_daily_calendar(self.store, self.facts, name)

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

        ``batch``: ``{name: expression}`` (or ``{name: {"expression", "description"}}``),
        a list of mappings with ``name``, ``expression``, optional ``description`` (and
        ``row``, its place in a file), or ``(name, expression[, description])`` pairs. Each
        formula is parsed once; the check reads what the batch reaches (the whole catalog
        past 500 formulas) and searches it for cycles once.

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
        equivalent to the current definition (or other formulas), the formulas a save would
        recompute in order, and the (entity, period) records in scope; ``impact=False``
        only validates. Its cost follows what the edit reaches, not the catalog's size.
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
        return reading.formula(self.store, self.facts, name)

    def formulas(self, canonical: bool = True):
        """A DataFrame, one row per formula: name, expression, description, frequency,
        version, state, canonical (not with ``canonical=False``: no sympy then)."""
        return reading.formulas(self.store, self.facts, canonical)

    def dependencies(self, name: str, transitive: bool = False) -> list[str]:
        """What ``name`` references (all the way up with ``transitive``)."""
        return reading.dependencies(self.store, self.facts, name, transitive)

    def dependents(self, name: str, transitive: bool = False) -> list[str]:
        """Formulas that use ``name`` (all the way down, in recalculation order, with
        ``transitive``)."""
        return reading.dependents(self.store, self.facts, name, transitive)

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

        Stale formulas are recomputed for their stale entities, pending ones only where an
        input changed in this run; new values are compared with the stored ones by digest,
        then cell by cell, and only changed cells are written (early cutoff: a full run
        over unchanged data writes nothing). ``workers`` evaluation threads (default
        ``TRACECALC_WORKERS``, else the cores, at most 4) overlap one writer thread.
        Entities go in chunks of ``chunk_entities`` (default ``TRACECALC_CHUNK_ENTITIES``,
        else about 400,000 cells); cross-sectional formulas see every entity at once. With
        ``dask`` (a scheduler address or a ``distributed.Client``, the ``dask`` extra) the
        entities are partitioned across the cluster.

        One run at a time per database: another waits up to ``wait`` seconds, then raises
        ``BusyError``. Each formula's changes, fresh state, users' marks and run-log line
        commit together, so a killed run leaves consistent data and exactly the rest stale;
        with ``atomic`` the whole run is one transaction. With ``verify`` stored digests
        are not trusted: every recomputed entity is compared cell by cell and repaired (see
        ``verify`` and docs/operations.md). A run whose lock connection dies stops at its
        next commit (``LockLostError``). ``progress(done, total, name)`` is called once
        planned (``0, total, ""``), then after each formula. The details are in
        ``tracecalc.running.recalc`` and docs/architecture.md.

        Returns:
            A ``RunReport``: per formula, entities recomputed, records written and unchanged.

        Raises:
            BusyError: another recalculation holds the lock past ``wait``.
            LockLostError: the run lost its lock (its connection was closed) and stopped;
                what it committed before is kept, the rest is left stale.
        """
        return running.recalc(self, full, progress, workers, wait, atomic, dask,
                              chunk_entities, verify)

    def _plan(self, conn, full: bool, kind: str, holder: int | None,
              verify: bool = False) -> RunPlan:
        return planning.plan(self.store, conn, self.facts, full=full, kind=kind,
                             user=self.user, holder=holder, verify=verify)

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
        """Check that the database and its stored records can be trusted; read-only.

        Two checks: the database's own integrity check (SQLite ``PRAGMA integrity_check``,
        MariaDB ``CHECK TABLE``, on PostgreSQL a read of every row and, where installed,
        ``amcheck``), then every stored digest recomputed from the stored records, in
        chunks of ``chunk_entities`` entities (memory stays bounded): what finds records
        changed behind an intact digest, records without a digest, and records or digests
        nothing accounts for. A damaged file is a finding (``corrupt``), not an exception.
        It reads the whole database once and holds the recalculation lock (waiting up to
        ``wait`` seconds for a run). The details are in ``tracecalc.integrity.verify``.

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
            return integrity.verify(self.store, chunk_entities or running.default_chunk_entities(),
                                    progress)

    def explain(self, name: str, entity: str, period, as_of=None) -> dict:
        """How one record came about (as known on ``as_of``): the formula's text and
        version, and the tree of its sub-expressions with their values there.

        Returns a dict: ``formula``, ``version``, ``expression``, ``entity``, ``period``,
        ``stored`` (the stored value, None if missing) and ``tree`` (nested dicts with
        ``text``, ``value``, ``kind``, ``window`` and ``children``).

        Raises:
            NotFoundError: no such formula, entity or period.
        """
        return reading.explain_record(self.store, self.facts, name, entity, period, as_of)

    def evaluate(self, expressions, entities: Iterable[str] | str | None = None, start=None,
                 end=None, as_of=None):
        """Evaluate formulas (by name) or ad-hoc expressions (``"close / ts_mean(close, 20)"``,
        ``"pe * 2"``) over the stored data, in memory: nothing is written.

        ``expressions``: one text, a list, or ``{label: text}``. Saved formulas they read are
        evaluated with their upstream closure from the data items, never from stored records
        (docs/formula-language.md, "Evaluating in memory"); with ``as_of``, the data as known
        on that date.

        Returns:
            A DataFrame: period (``datetime64[s]``), entity, one column per expression; a
            row per (period, entity) of ``entities`` (default all) from ``start`` to ``end``
            where one has a value, by period then entity; ``attrs["frequencies"]``.

        Raises:
            The errors of ``check`` (several bad expressions: ``ValidationError``);
            ``NotFoundError`` for an unknown entity, ``DataError`` for a bad date.
        """
        return evaluating.evaluate(self.store, self.facts, expressions, entities, start, end,
                                   as_of)

    def records(self, name: str, entities: Iterable[str] | str | None = None, start=None,
                end=None, as_of=None):
        """A formula's (or a data item's) stored records as a DataFrame: entity, period,
        value; with ``as_of`` the view known on that date (docs/formula-language.md).

        Missing values do not appear. ``entities`` is one code or several; ``start``/``end``
        bound the periods (inclusive). Periods are ``datetime64[s]``, exact from 0001-01-01
        to 9999-12-31, so the frame (with an ``item`` column) loads back unchanged.
        ``df.attrs["stale"]`` maps the formula to its state when it is not fresh, and a
        ``StaleWarning`` says so.

        Raises:
            NotFoundError: no formula or item ``name``.
            DataError: ``start`` or ``end`` is not a date in the supported range.
        """
        return reading.records(self.store, self.facts, name, entities, start, end, as_of)

    def export(self, names: Iterable[str] | None = None, as_of=None):
        """Records of several formulas (all by default; data items by name too) as one
        DataFrame: formula, entity, period, value, read in one transaction (``as_of``: as
        in ``records``).

        Like ``records``: periods are ``datetime64[s]``; ``df.attrs["stale"]`` maps each
        exported formula that is not fresh to its state, with a ``StaleWarning`` for each.

        Raises:
            NotFoundError: a name is neither a formula nor an item.
        """
        return reading.export(self.store, self.facts, names, as_of)
