"""The generated model: input data and a formula catalog with deep chains."""

from __future__ import annotations

import numpy as np
import pandas as pd

TS = ["ts_mean({x}, 4)", "lag({x}, 1)", "growth({x}, 4)", "ema({x}, 6)", "ttm({x})",
      "diff({x}, 1)", "ts_std({x}, 8)", "avg_balance({x}, 4)"]
CS = ["cs_rank({x})", "cs_zscore({x})", "cs_demean({x})"]
EW = ["{x} + {y}", "{x} - {y}", "{x} * {y}", "{x} / {y}", "({x} - {y}) / {y}",
      "max({x}, {y})", "if_({x} > {y}, {x}, {y})", "coalesce({x}, {y})", "log(abs({x}) + 1)",
      "sqrt(abs({x})) * sign({y})", "div({x}, {y}, 0)"]


def make_model(n_formulas: int, n_items: int, n_entities: int, n_periods: int,
               ts_share: float, cs_share: float, seed: int, depth: int = 12):
    """Inputs (a long frame) and formulas, each with its template: (kind, template, x, y).
    Formulas mostly use recent formulas, so chains get deep (at most ``depth``), like real
    indicator catalogs."""
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2000-03-31", periods=n_periods, freq="QE").strftime("%Y-%m-%d")
    items = [f"item{i}" for i in range(n_items)]
    ent = np.array([f"E{i:06d}" for i in range(n_entities)], dtype=object)
    rows = n_items * n_entities * n_periods
    values = rng.lognormal(3, 1, rows) * rng.choice([1, -1], rows, p=[0.9, 0.1])
    values[rng.random(rows) < 0.02] = np.nan
    data = pd.DataFrame({
        "item": np.repeat(np.array(items, dtype=object), n_entities * n_periods),
        "entity": np.tile(np.repeat(ent, n_periods), n_items),
        "period": np.tile(periods.to_numpy(), n_items * n_entities),
        "value": values,
    }).dropna()
    formulas = []
    names: list[str] = []
    level = {i: 0 for i in items}
    for i in range(n_formulas):
        pool = items + [n for n in names[-20:] if level[n] < depth]
        x, y = (str(v) for v in rng.choice(pool, 2, replace=len(pool) < 2))
        r = rng.random()
        kind, group = (("cs", CS) if r < cs_share else ("ts", TS) if r < cs_share + ts_share
                       else ("ew", EW))
        template = str(rng.choice(group))
        name = f"f{i}"
        level[name] = 1 + max(level[x], level[y] if kind == "ew" else 0)
        formulas.append({"name": name, "expression": template.format(x=x, y=y),
                         "spec": (kind, template, x, y)})
        names.append(name)
    return data, formulas
