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
    """One parameter of a function: an expression, or a literal in [lo, hi]: an integer,
    or with ``real`` any number (``ts_quantile``'s q, ``signed_power``'s a)."""

    name: str
    literal: bool = False
    lo: int | float = 1
    hi: int | float = 10_000
    default: int | float | None = None
    real: bool = False

    def bounds_text(self) -> str:
        return f"from {self.lo:g} to {self.hi:g}" if self.real else f"from {self.lo} to {self.hi}"


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


def _real(name: str, lo: float, hi: float, default: float | None = None) -> Param:
    return Param(name, literal=True, lo=lo, hi=hi, default=default, real=True)


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
    FunctionSpec("signed_power", _E, (_x(), _real("a", -16, 16)),
                 doc="sign(x) * abs(x) ** a"),
    FunctionSpec("log1p", _E, (_x(),), doc="log(1 + x); NaN for x <= -1"),
    FunctionSpec("tanh", _E, (_x(),), doc="hyperbolic tangent"),
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
    FunctionSpec("ts_rank", _T, (_x(), _window()),
                 doc="average rank of today's value among the last n, divided by n"),
    FunctionSpec("ts_argmax", _T, (_x(), _window()),
                 doc="position 1..n (1: oldest) of the largest of the last n values"),
    FunctionSpec("ts_argmin", _T, (_x(), _window()),
                 doc="position 1..n (1: oldest) of the smallest of the last n values"),
    FunctionSpec("ts_quantile", _T, (_x(), _window(), _real("q", 0, 1)),
                 doc="q-quantile of the last n values, linear interpolation"),
    FunctionSpec("ts_slope", _T, (_x(), _window()),
                 doc="least-squares slope of the last n values on time 1..n"),
    FunctionSpec("ts_rsquare", _T, (_x(), _window()),
                 doc="R-squared of the least-squares line through the last n values"),
    FunctionSpec("ts_resi", _T, (_x(), _window()),
                 doc="today's residual from the least-squares line of the last n values"),
    FunctionSpec("ts_cov", _T, (_x(), _x("y"), _window()),
                 doc="sample covariance (n - 1) of the last n pairs"),
    FunctionSpec("ts_product", _T, (_x(), _window()), doc="product of the last n values"),
    FunctionSpec("ts_skew", _T, (_x(), _window()),
                 doc="bias-corrected sample skewness of the last n values"),
    FunctionSpec("ts_kurt", _T, (_x(), _window()),
                 doc="bias-corrected sample excess kurtosis of the last n values"),
    FunctionSpec("decay_linear", _T, (_x(), _window()),
                 doc="weighted mean of the last n values, weights n (today) .. 1"),
    FunctionSpec("ts_count", _T, (_x("cond"), _window()),
                 doc="how many of the last n values are true (non-zero, not missing)"),
    # cross-sectional
    FunctionSpec("cs_rank", _C, (_x(),), doc="average rank / count within the period, in (0, 1]"),
    FunctionSpec("cs_zscore", _C, (_x(),), doc="(x - mean) / population std within the period"),
    FunctionSpec("cs_demean", _C, (_x(),), doc="x - mean within the period"),
    FunctionSpec("cs_scale", _C, (_x(), _real("a", -1e15, 1e15, 1)),
                 doc="x scaled so that the period's absolute values sum to a"),
    FunctionSpec("cs_winsorize", _C, (_x(), _real("k", 0, 100)),
                 doc="x clipped at the period's mean +- k population standard deviations"),
    FunctionSpec("cs_quantile", _C, (_x(), _window("q")),
                 doc="bucket 1..q of x's rank within the period (1: smallest)"),
    FunctionSpec("cs_resid", _C, (_x("y"), _x()),
                 doc="residual of the period's least-squares fit of y on x (with intercept)"),
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
