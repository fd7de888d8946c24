"""Benchmark: the function kernels alone, on one generated daily panel (no database).

    python scripts/bench_kernels.py                          # 1,000 periods x 500 entities
    python scripts/bench_kernels.py --periods 250 --entities 3000 --window 60 --groups 69

Each kernel runs ``--repeat`` times on a float64 panel (normal values, 2% missing, fixed
seed); the best time is reported with the cells per second it gives. The cross-sectional
kernels also run group-wise (``groups=``, ``--groups`` groups of random sizes), next to
their whole-period time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tracecalc.functions import KERNELS

TIME_SERIES = ["ts_sum", "ts_std", "ts_rank", "ts_argmax", "ts_argmin", "ts_quantile",
               "ts_slope", "ts_rsquare", "ts_resi", "ts_cov", "ts_corr", "ts_product",
               "ts_skew", "ts_kurt", "decay_linear", "ts_count"]
CROSS = ["cs_rank", "cs_zscore", "cs_demean", "cs_scale", "cs_winsorize", "cs_quantile",
         "cs_resid"]
ELEMENTWISE = ["signed_power", "log1p", "tanh"]


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--periods", type=int, default=1000)
    ap.add_argument("--entities", type=int, default=500)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--groups", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(14)
    x = rng.normal(100, 10, size=(a.periods, a.entities))
    y = rng.normal(0, 1, size=x.shape)
    x[rng.random(x.shape) < 0.02] = np.nan
    groups = rng.integers(0, a.groups, size=a.entities)
    cells = x.size
    n = a.window
    literal = {"ts_quantile": (n, 0.25), "ts_cov": None, "ts_corr": None}
    print(f"{a.periods} periods x {a.entities} entities, window {n}, {a.groups} groups; "
          f"best of {a.repeat}")
    print(f"{'kernel':<14} {'seconds':>9} {'Mcells/s':>9} {'grouped s':>10}")
    for name in TIME_SERIES + ELEMENTWISE + CROSS:
        if name in ("ts_cov", "ts_corr"):
            args = (x, y, n)
        elif name in literal:
            args = (x, *literal[name])
        elif name in TIME_SERIES:
            args = (x, n)
        elif name == "signed_power":
            args = (x, 0.5)
        elif name == "cs_resid":
            args = (y, x)
        elif name in ("cs_winsorize", "cs_quantile"):
            args = (x, 3 if name == "cs_winsorize" else 5)
        else:
            args = (x,)
        s = best(lambda: KERNELS[name](*args), a.repeat)  # noqa: B023
        grouped = ""
        if name in CROSS:
            g = best(lambda: KERNELS[name](*args, groups=groups), a.repeat)  # noqa: B023
            grouped = f"{g:10.4f}"
        print(f"{name:<14} {s:9.4f} {cells / s / 1e6:9.1f} {grouped}")


if __name__ == "__main__":
    main()
