"""Primitive types shared by every layer: enums, frozen records and the function signatures.

This module imports nothing from tracecalc but ``errors`` so that nothing imports in a circle.
The signature table is the language's definition; ``functions`` supplies a kernel for every
entry and ``parser`` checks calls against it (a test holds the two in step).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class Frequency(StrEnum):
    """The spacing of an item's periods; formulas inherit it from their inputs."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNUAL = "annual"


class FormulaState(StrEnum):
    """Whether a formula's stored records reflect its current text and inputs.

    STALE and PARTIAL must be recomputed (for every entity, or for the entities marked in
    the stale table); PENDING formulas are downstream of those and are recomputed only for
    the entities where an input's values actually change (early cutoff).
    """

    FRESH = "fresh"
    STALE = "stale"
    PARTIAL = "partial"
    PENDING = "pending"


class FunctionKind(StrEnum):
    """How a function consumes a panel; decides what a change at one record can reach."""

    ELEMENTWISE = "elementwise"  # record by record
    MISSING = "missing"  # record by record, NaN-aware (or along time for ffill)
    TIMESERIES = "timeseries"  # per entity, along periods, never ahead
    CROSS_SECTIONAL = "cross_sectional"  # per period, across entities


@dataclass(frozen=True)
class Param:
    """One parameter of a function: an expression, or an integer literal in [lo, hi]."""

    name: str
    literal: bool = False
    lo: int = 1
    hi: int = 10_000
    default: int | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """The signature of a formula-language function."""

    name: str
    kind: FunctionKind
    params: tuple[Param, ...]
    variadic: bool = False  # the last parameter repeats (min, max, coalesce)
    min_args: int = 0  # for variadic functions
    doc: str = ""

    @property
    def required(self) -> int:
        if self.variadic:
            return self.min_args
        return sum(1 for p in self.params if p.default is None)

    def arity_text(self) -> str:
        if self.variadic:
            return f"at least {self.min_args} arguments"
        lo, hi = self.required, len(self.params)
        if lo == hi:
            return f"exactly {lo} argument{'s' if lo != 1 else ''}"
        return f"{lo} to {hi} arguments"

    def signature(self) -> str:
        parts = []
        for p in self.params:
            parts.append(f"{p.name}={p.default}" if p.default is not None else p.name)
        if self.variadic:
            parts.append("...")
        return f"{self.name}({', '.join(parts)})"


_E = FunctionKind.ELEMENTWISE
_M = FunctionKind.MISSING
_T = FunctionKind.TIMESERIES
_C = FunctionKind.CROSS_SECTIONAL


def _x(name: str = "x") -> Param:
    return Param(name)


def _window(name: str = "n", default: int | None = None) -> Param:
    return Param(name, literal=True, lo=1, hi=10_000, default=default)


_SPECS = [
    # math
    FunctionSpec("abs", _E, (_x(),), doc="absolute value"),
    FunctionSpec("sign", _E, (_x(),), doc="-1, 0 or 1"),
    FunctionSpec("log", _E, (_x(),), doc="natural log; NaN for x <= 0"),
    FunctionSpec("exp", _E, (_x(),), doc="e**x; NaN on overflow"),
    FunctionSpec("sqrt", _E, (_x(),), doc="square root; NaN for x < 0"),
    FunctionSpec(
        "round",
        _E,
        (_x(), Param("d", literal=True, lo=-15, hi=15, default=0)),
        doc="round half away from zero to d decimals",
    ),
    FunctionSpec("min", _E, (_x("a"),), variadic=True, min_args=2, doc="smallest argument"),
    FunctionSpec("max", _E, (_x("a"),), variadic=True, min_args=2, doc="largest argument"),
    FunctionSpec("clip", _E, (_x(), _x("lo"), _x("hi")), doc="x bounded to [lo, hi]"),
    # logic
    FunctionSpec("if_", _E, (_x("c"), _x("a"), _x("b")), doc="a where c is true, b where false"),
    # missing data
    FunctionSpec("coalesce", _M, (_x("a"),), variadic=True, min_args=2, doc="first non-missing"),
    FunctionSpec("isnull", _M, (_x(),), doc="1 where x is missing, else 0"),
    FunctionSpec("div", _M, (_x("a"), _x("b"), _x("fill")),
                 doc="a / b, fill where that is missing"),
    FunctionSpec("ffill", _M, (_x(), _window("limit")),
                 doc="carry the last value forward up to limit periods"),
    # time series
    FunctionSpec("lag", _T, (_x(), _window("k", 1)), doc="x k periods ago"),
    FunctionSpec("diff", _T, (_x(), _window("k", 1)), doc="x[t] - x[t-k]"),
    FunctionSpec("growth", _T, (_x(), _window("k", 1)), doc="x[t] / x[t-k] - 1; NaN if base <= 0"),
    FunctionSpec("ts_sum", _T, (_x(), _window()), doc="sum of the last n values"),
    FunctionSpec("ts_mean", _T, (_x(), _window()), doc="mean of the last n values"),
    FunctionSpec("ts_min", _T, (_x(), _window()), doc="minimum of the last n values"),
    FunctionSpec("ts_max", _T, (_x(), _window()), doc="maximum of the last n values"),
    FunctionSpec(
        "ts_std",
        _T,
        (_x(), _window(), Param("ddof", literal=True, lo=0, hi=1, default=1)),
        doc="standard deviation of the last n values",
    ),
    FunctionSpec("ts_corr", _T, (_x(), _x("y"), _window()), doc="Pearson correlation over n"),
    FunctionSpec("ema", _T, (_x(), _window()), doc="exponential average, alpha = 2/(n+1)"),
    FunctionSpec("asof", _T, (_x(), Param("max_age", literal=True, lo=0, hi=100_000, default=0)),
                 doc="a coarser data item as known on each date: its latest period known "
                     "by then, at the version known then (max_age days; 0: no limit)"),
    FunctionSpec("wilder", _T, (_x(), _window()), doc="Wilder's average, alpha = 1/n"),
    FunctionSpec("ttm", _T, (_x(),), doc="trailing twelve months: sum of the last 4 periods"),
    FunctionSpec("avg_balance", _T, (_x(), _window("k", 1)), doc="(x[t] + x[t-k]) / 2"),
    # cross-sectional
    FunctionSpec("cs_rank", _C, (_x(),), doc="average rank / count within the period, in (0, 1]"),
    FunctionSpec("cs_zscore", _C, (_x(),), doc="(x - mean) / population std within the period"),
    FunctionSpec("cs_demean", _C, (_x(),), doc="x - mean within the period"),
]

SIGNATURES: dict[str, FunctionSpec] = {s.name: s for s in _SPECS}
FUNCTION_NAMES: frozenset[str] = frozenset(SIGNATURES)


@dataclass(frozen=True)
class Problem:
    """One validation problem; a report collects them all instead of stopping at the first."""

    name: str
    message: str
    row: int | None = None  # where the formula stands in the file it was loaded from


@dataclass(frozen=True)
class FormulaInfo:
    """A formula as stored in the catalog."""

    name: str
    expression: str
    canonical: str
    frequency: Frequency
    version: int
    state: FormulaState
    description: str = ""
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemInfo:
    """A data item: its frequency, how much data it has and which formulas use it."""

    name: str
    frequency: Frequency
    points: int
    entities: int
    first: dt.date | None  # earliest period with a value
    last: dt.date | None
    used_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckReport:
    """What saving an expression would do, computed without saving anything."""

    name: str
    expression: str
    is_valid: bool
    problems: tuple[Problem, ...] = ()
    is_new: bool = True
    equivalent_to_current: bool = False
    equivalent_formulas: tuple[str, ...] = ()
    canonical: str = ""
    frequency: Frequency | None = None
    references: tuple[str, ...] = ()
    affected: tuple[str, ...] = ()  # in recalculation order, the formula itself first
    records_in_scope: int = 0


@dataclass(frozen=True)
class SaveResult:
    """What a formula save changed."""

    name: str
    version: int
    created: bool
    equivalent_to_previous: bool
    marked_stale: tuple[str, ...]
    described: bool = False  # only the description changed (the text is as it was)


@dataclass(frozen=True)
class LoadResult:
    """What a data load changed.

    ``new_periods`` and ``removed_periods`` give, per frequency, the periods its calendar
    gained and lost (every grid date from its first data point to its last); ``snapped``
    counts the points a ``snap`` load moved onto their calendar, ``versions`` the version
    rows written or deleted (report dates, restatements).
    """

    rows: int
    items: tuple[str, ...]
    new_items: tuple[str, ...]
    new_entities: int
    marked_stale: tuple[str, ...]
    new_entity_codes: tuple[str, ...] = ()  # sorted
    new_periods: dict[str, tuple[dt.date, ...]] = field(default_factory=dict)
    removed_periods: dict[str, tuple[dt.date, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    snapped: int = 0
    versions: int = 0


@dataclass(frozen=True)
class DeleteResult:
    """What deleting data points changed."""

    item: str
    frequency: str
    points: int  # data points deleted
    entities: tuple[str, ...]  # codes of the entities that lost points, sorted
    periods: tuple[dt.date, ...]  # periods of the points deleted, sorted
    item_deleted: bool  # the item itself is gone (a whole, unused item)
    removed_periods: tuple[dt.date, ...]  # left the frequency's calendar: no data there now
    marked_stale: tuple[str, ...]  # in recalculation order


@dataclass
class FormulaRunStats:
    """What one formula's recalculation did. Records are (entity, period) cells."""

    name: str
    entities: int = 0  # entities recomputed (0: nothing upstream changed, skipped)
    records_written: int = 0  # inserted + updated + deleted
    records_unchanged: int = 0
    seconds: float = 0.0  # evaluating and comparing, not waiting for the database
    changed_entities: int = 0
    write_seconds: float = 0.0  # writing its changes (not kept in the run log)

    @property
    def computed(self) -> bool:
        return self.entities > 0


@dataclass
class RunReport:
    """What a recalculation did."""

    run_id: int
    kind: str
    status: str = "running"
    formulas: list[FormulaRunStats] = field(default_factory=list)
    seconds: float = 0.0
    io_seconds: float = 0.0  # the database writer thread's busy time
    verify: bool = False  # records compared cell by cell, stored digests not trusted
    strays_removed: int = 0  # verify: records no formula, entity or period accounts for

    @property
    def eval_seconds(self) -> float:
        """Evaluation time summed over formulas (spread over the worker threads)."""
        return sum(f.seconds for f in self.formulas)

    @property
    def write_seconds(self) -> float:
        return sum(f.write_seconds for f in self.formulas)

    @property
    def formulas_computed(self) -> int:
        return sum(f.computed for f in self.formulas)

    @property
    def records_written(self) -> int:
        return sum(f.records_written for f in self.formulas)

    @property
    def records_unchanged(self) -> int:
        return sum(f.records_unchanged for f in self.formulas)

    @property
    def computed(self) -> list[str]:
        """Names of the formulas recomputed, in the order they finished."""
        return [f.name for f in self.formulas if f.computed]


@dataclass(frozen=True)
class VerifyFinding:
    """One thing ``Engine.verify`` found wrong with the stored records or digests.

    ``kind``: ``mismatch`` (the stored digest does not match the stored records),
    ``missing digest`` (records without a digest: harmless, the next run compares them cell
    by cell), ``stray digest`` / ``stray records`` (of a formula or entity that no longer
    exists, or at periods outside the formula's calendar), ``unreadable`` (the database
    failed reading them). ``formula`` and ``entity`` are names, or ``#id`` when the formula
    or entity no longer exists; ``entity`` is None for a finding about a whole formula.
    """

    kind: str
    formula: str
    entity: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """What ``Engine.verify`` checked and found.

    ``integrity_method`` names the database's own check and ``integrity`` lists what it
    reported (empty: clean); ``notes`` say what could not be checked. ``findings`` lists at
    most ``MAX_LISTED`` findings of each kind; ``counts`` gives every kind's full count.
    """

    MAX_LISTED = 1000

    database: str
    integrity_method: str
    integrity: tuple[str, ...]
    formulas: int  # formulas whose records were checked
    entities: int
    records: int  # records read
    digests: int  # digests read
    findings: tuple[VerifyFinding, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()  # (kind, count), every kind found
    outdated_digests: int = 0  # digests of a shorter calendar (periods added since): fine
    notes: tuple[str, ...] = ()
    corrupt: bool = False  # the database reported damaged files
    damaged_tables: tuple[str, ...] = ()  # where the damage is, as far as known
    seconds: float = 0.0

    def count(self, kind: str) -> int:
        return dict(self.counts).get(kind, 0)

    @property
    def problems(self) -> int:
        """Integrity problems plus findings, except missing digests (harmless)."""
        return len(self.integrity) + sum(n for k, n in self.counts if k != "missing digest")

    @property
    def ok(self) -> bool:
        return self.problems == 0
