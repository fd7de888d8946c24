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
from tracecalc.functions.cross_sectional import (
    cs_demean,
    cs_quantile,
    cs_rank,
    cs_resid,
    cs_scale,
    cs_winsorize,
    cs_zscore,
)
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
    log1p,
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
    signed_power,
    sqrt,
    sub,
    tanh,
    truediv,
)
from tracecalc.functions.moments import ts_kurt, ts_resi, ts_rsquare, ts_skew, ts_slope
from tracecalc.functions.order import ts_argmax, ts_argmin, ts_quantile, ts_rank
from tracecalc.functions.sections import group_codes
from tracecalc.functions.timeseries import (
    avg_balance,
    decay_linear,
    diff,
    ema,
    growth,
    lag,
    smooth_from,
    ts_corr,
    ts_count,
    ts_cov,
    ts_max,
    ts_mean,
    ts_min,
    ts_product,
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
    "signed_power": signed_power, "log1p": log1p, "tanh": tanh,
    "ts_rank": ts_rank, "ts_argmax": ts_argmax, "ts_argmin": ts_argmin,
    "ts_quantile": ts_quantile, "ts_slope": ts_slope, "ts_rsquare": ts_rsquare,
    "ts_resi": ts_resi, "ts_cov": ts_cov, "ts_product": ts_product, "ts_skew": ts_skew,
    "ts_kurt": ts_kurt, "decay_linear": decay_linear, "ts_count": ts_count,
    "cs_rank": cs_rank, "cs_zscore": cs_zscore, "cs_demean": cs_demean,
    "cs_scale": cs_scale, "cs_winsorize": cs_winsorize, "cs_quantile": cs_quantile,
    "cs_resid": cs_resid,
    **{name: converted(name) for name in DOWNSAMPLES},
}


__all__ = ["KERNELS", "finite", "abs_", "add", "and_", "asof", "asof_panel", "avg_balance",
    "clip", "coalesce", "converted", "cs_demean", "cs_quantile", "cs_rank", "cs_resid",
    "cs_scale", "cs_winsorize", "cs_zscore", "decay_linear", "diff", "div", "downsample_panel",
    "ema", "eq", "exp", "ffill", "ge", "group_codes", "growth", "gt", "if_", "isnull", "lag",
    "le", "log",
    "log1p", "lt", "max_", "min_", "mul", "ne", "neg", "not_", "or_", "power", "round_", "sign",
    "signed_power", "smooth_from", "sqrt", "sub", "tanh", "truediv", "ts_argmax",
    "ts_argmin", "ts_corr",
    "ts_count", "ts_cov", "ts_kurt", "ts_max", "ts_mean", "ts_min", "ts_product",
    "ts_quantile", "ts_rank", "ts_resi", "ts_rsquare", "ts_skew", "ts_slope", "ts_std",
    "ts_sum", "ttm", "wilder"]
