"""Primitive types shared by every layer: enums and frozen records (the function signatures
live in ``model.signatures`` and are re-exported here).

This package imports nothing from tracecalc but ``errors`` so that nothing imports in a circle.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum

from tracecalc.model.signatures import (  # noqa: F401  (re-exported)
    DOWNSAMPLES,
    FUNCTION_NAMES,
    SIGNATURES,
    FunctionKind,
    FunctionSpec,
    Param,
)

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
    first_period: object = None  # the first period recomputed (None: the first one)
    records_read: int = 0  # stored records read to compare

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
