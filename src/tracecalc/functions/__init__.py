"""Numpy kernels for every function and operator of the formula language.

A panel is a float64 array shaped (periods, entities), oldest period first; NaN is missing.
Each kernel takes panels or scalars (which broadcast) plus integer literals, returns a new
float64 array and never returns +-inf. docs/formula-language.md pins the semantics; the
golden tests in tests/test_functions.py hold them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tracecalc.functions.common import finite
from tracecalc.functions.conversion import asof, asof_panel, converted, downsample_panel
from tracecalc.functions.cross_sectional import cs_demean, cs_rank, cs_zscore
from tracecalc.functions.elementwise import (
    abs_,
    add,
    and_,
    clip,
    coalesce,
    div,
    eq,
    exp,
    ffill,
    ge,
    gt,
    if_,
    isnull,
    le,
    log,
    lt,
    max_,
    min_,
    mul,
    ne,
    neg,
    not_,
    or_,
    power,
    round_,
    sign,
    sqrt,
    sub,
    truediv,
)
from tracecalc.functions.timeseries import (
    avg_balance,
    diff,
    ema,
    growth,
    lag,
    ts_corr,
    ts_max,
    ts_mean,
    ts_min,
    ts_std,
    ts_sum,
    ttm,
    wilder,
)
from tracecalc.model import DOWNSAMPLES

KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "abs": abs_, "sign": sign, "log": log, "exp": exp, "sqrt": sqrt, "round": round_,
    "min": min_, "max": max_, "clip": clip, "if_": if_,
    "coalesce": coalesce, "isnull": isnull, "div": div, "ffill": ffill,
    "lag": lag, "diff": diff, "growth": growth,
    "ts_sum": ts_sum, "ts_mean": ts_mean, "ts_min": ts_min, "ts_max": ts_max,
    "ts_std": ts_std, "ts_corr": ts_corr, "ema": ema, "wilder": wilder,
    "ttm": ttm, "avg_balance": avg_balance, "asof": asof,
    "cs_rank": cs_rank, "cs_zscore": cs_zscore, "cs_demean": cs_demean,
    **{name: converted(name) for name in DOWNSAMPLES},
}


__all__ = ["KERNELS", "finite", "abs_", "add", "and_", "asof", "asof_panel", "avg_balance",
    "clip", "coalesce", "converted", "downsample_panel",
    "cs_demean", "cs_rank", "cs_zscore", "diff", "div", "ema", "eq", "exp", "ffill", "ge",
    "growth", "gt", "if_", "isnull", "lag", "le", "log", "lt", "max_", "min_", "mul", "ne", "neg",
    "not_", "or_", "power", "round_", "sign", "sqrt", "sub", "truediv", "ts_corr", "ts_max",
    "ts_mean", "ts_min", "ts_std", "ts_sum", "ttm", "wilder"]
