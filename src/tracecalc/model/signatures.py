"""The formula language's functions: every signature, its kind and its literal bounds.

The table is the language's definition; ``functions`` supplies a kernel for every entry and
``parser`` checks calls against it (a test holds the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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

# From a finer frequency to a coarser one: FREQUENCY_HOW(x) of a finer item or formula x is
# HOW over the dates of each period of FREQUENCY (quarterly_last(close)); the formula is of
# that frequency. docs/formula-language.md "Frequency conversion" pins them.
DOWNSAMPLE_TO = ("weekly", "monthly", "quarterly", "annual")
DOWNSAMPLE_HOW = {
    "last": "the latest present value",
    "sum": "the sum of the present values (NaN if none)",
    "mean": "the mean of the present values (NaN if none)",
    "min": "the smallest present value",
    "max": "the largest present value",
    "count": "how many values are present (0 if none)",
}
DOWNSAMPLES: dict[str, tuple[str, str]] = {
    f"{to}_{how}": (to, how) for to in DOWNSAMPLE_TO for how in DOWNSAMPLE_HOW}
_SPECS += [FunctionSpec(name, _T, (_x(),), doc=f"{DOWNSAMPLE_HOW[how]} of a finer x in each "
                        f"{to} period (complete periods only)")
           for name, (to, how) in DOWNSAMPLES.items()]

SIGNATURES: dict[str, FunctionSpec] = {s.name: s for s in _SPECS}
FUNCTION_NAMES: frozenset[str] = frozenset(SIGNATURES)
