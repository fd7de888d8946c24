"""Benchmark: Qlib's Alpha158 (all 158 features) with Qlib's ``D.features`` and with
tracecalc's ``Engine.evaluate``, on the same generated daily data, in one run.

    python scripts/bench_qlib.py                       # 500 instruments x 1,000 days
    python scripts/bench_qlib.py --quick               # 20 x 250: a check in seconds
    python scripts/bench_qlib.py --workers 2 --recalc 'sqlite:///{tmp}/a.db' \\
        --recalc 'duckdb:///{tmp}/a.duckdb'
    python scripts/bench_qlib.py --profile 25          # then a profiled evaluate call

Needs the ``bench`` extra (``pip install -e ".[bench]"``: pyqlib). The daily open, high,
low, close, volume of ``bench_evaluate.bars`` (fixed seed) plus a vwap inside each day's
range are cast to float32 (what Qlib's binary format holds) and both engines get exactly
those values: Qlib as its file layout (calendars/day.txt, instruments/all.txt,
features/<inst>/<field>.day.bin: little-endian float32, the first float the start index in
the calendar), tracecalc loaded into a database (default a temporary SQLite file).

Qlib computes ``Alpha158DL.get_feature_config()``'s expressions with ``D.features`` over
every instrument (expression and dataset caches off, its in-memory cache cleared before the
timed call; ``kernels`` = ``--workers``), with its feature loader patched to hand float64 to
the operators (stock Qlib runs them in float32; its final per-expression cast to float32 is
left as is). tracecalc evaluates sample_data/catalogs/alpha158.yaml in one
``Engine.evaluate`` call (one thread). Every feature is compared after the warm-up (the
first 61 days of each instrument: tracecalc's windows are missing until full, Qlib's take
what there is): a cell agrees when both are missing, or
``|tc - qlib| <= rtol * max(|qlib|, scale)`` with ``scale`` the feature's mean ``|qlib|``
over the compared cells (so a value near 0 of a feature that is not near 0 is held to the
feature's size, not to its own).

Then, for each ``--recalc`` URL (repeatable; ``{tmp}`` is the run's temporary directory;
default: the evaluation's database), the 158 formulas are saved and recalculated in full
into it, with no records stored yet (a cold run, ``--workers`` threads), and timed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_evaluate import bars, long_frame  # noqa: E402

from tracecalc.engine import Engine  # noqa: E402
from tracecalc.storage.files import read_formulas  # noqa: E402

CATALOG = ROOT / "sample_data" / "catalogs" / "alpha158.yaml"
FIELDS = ("open", "high", "low", "close", "volume", "vwap")
WARM_UP = 61  # days of each instrument before every feature is defined in tracecalc
GROUPS = {"KBAR": ("KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"),
          "PRICE": ("OPEN0", "HIGH0", "LOW0", "VWAP0")}


def float32_bars(entities: int, days: int):
    """``bench_evaluate.bars`` plus a vwap, every array as float32 values in float64."""
    dates, codes, items = bars(entities, days)
    u = np.random.default_rng(43).uniform(0.3, 0.7, items["close"].shape)
    items["vwap"] = np.round(items["low"] + u * (items["high"] - items["low"]), 4)
    return dates, codes, {k: items[k].astype("<f4").astype(np.float64) for k in FIELDS}


def write_qlib(root: Path, dates: pd.DatetimeIndex, codes: list[str], items) -> None:
    """Qlib's file layout: every instrument from calendar index 0."""
    (root / "calendars").mkdir(parents=True)
    (root / "instruments").mkdir()
    days = dates.strftime("%Y-%m-%d")
    (root / "calendars" / "day.txt").write_text("\n".join(days) + "\n")
    (root / "instruments" / "all.txt").write_text(
        "".join(f"{c}\t{days[0]}\t{days[-1]}\n" for c in codes))
    for j, code in enumerate(codes):
        d = root / "features" / code.lower()
        d.mkdir(parents=True)
        for field in FIELDS:
            np.hstack([[0.0], items[field][:, j]]).astype("<f4").tofile(d / f"{field}.day.bin")


def qlib_setup(provider: Path, workers: int, float64: bool = True):
    """``qlib.init`` on ``provider`` (caches off), with the float64 feature loader unless
    ``float64`` is false (stock Qlib)."""
    import logging

    import qlib
    from qlib.constant import REG_US
    from qlib.data import data as qdata

    qlib.init(provider_uri=str(provider), region=REG_US, expression_cache=None,
              dataset_cache=None, kernels=workers, logging_level=logging.WARNING)
    if not float64:
        return
    stock = qdata.LocalFeatureProvider.feature

    def feature64(self, instrument, field, start_index, end_index, freq):
        return stock(self, instrument, field, start_index, end_index, freq).astype(np.float64)

    qdata.LocalFeatureProvider.feature = feature64  # forked workers inherit it


def qlib_features(codes, fields, start, end):
    from qlib.data import D
    from qlib.data.cache import H

    H.clear()  # no expression computed before counts
    return D.features(list(codes), fields, start_time=start, end_time=end, freq="day")


def cube_tc(df: pd.DataFrame, names, dates, codes) -> dict[str, np.ndarray]:
    full = pd.MultiIndex.from_product([dates.values.astype("datetime64[s]"), codes])
    df = df.set_index(["period", "entity"]).reindex(full)
    return {n: df[n].to_numpy(np.float64).reshape(len(dates), len(codes)) for n in names}


def cube_qlib(df: pd.DataFrame, fields, names, dates, codes) -> dict[str, np.ndarray]:
    df = df.reindex(pd.MultiIndex.from_product([codes, dates]))
    return {n: df[f].to_numpy(np.float64).reshape(len(codes), len(dates)).T
            for f, n in zip(fields, names)}


def samples(ts: list[float]) -> str:
    return "" if len(ts) == 1 else " (best of " + ", ".join(f"{t:.2f}" for t in ts) + ")"


def group_of(name: str) -> str:
    for g, members in GROUPS.items():
        if name in members:
            return g
    return name.rstrip("0123456789")


def compare(tc, ql, names, rtol: float) -> tuple[list[dict], list[str]]:
    """Per-feature agreement after the warm-up; the names that disagree."""
    rows, bad = [], []
    for n in names:
        a, b = tc[n][WARM_UP:], ql[n][WARM_UP:]
        both = ~np.isnan(a) & ~np.isnan(b)
        scale = float(np.abs(b[both]).mean()) if both.any() else 0.0
        err = np.abs(a - b)[both] / np.maximum(np.abs(b[both]), scale) if scale else \
            np.abs(a - b)[both]
        nan_mismatch = int((np.isnan(a) != np.isnan(b)).sum())
        worse = int((err > rtol).sum())
        rows.append({"name": n, "group": group_of(n), "cells": int(both.sum()),
                     "nan_mismatch": nan_mismatch, "over": worse,
                     "max_rel": float(err.max()) if err.size else 0.0})
        if worse or nan_mismatch:
            bad.append(n)
    return rows, bad


def print_agreement(rows, rtol: float) -> None:
    print(f"\nagreement after the {WARM_UP}-day warm-up, |tc - qlib| <= {rtol:g} * "
          "max(|qlib|, the feature's mean |qlib|):")
    print(f"  {'group':<7}{'features':>9}{'cells':>13}{'disagree':>10}{'missing on one side':>21}"
          f"{'max rel err':>13}")
    by = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    for g, rs in by.items():
        agree = sum(1 for r in rs if not r["over"] and not r["nan_mismatch"])
        print(f"  {g:<7}{f'{agree}/{len(rs)}':>9}{sum(r['cells'] for r in rs):>13,}"
              f"{sum(r['over'] for r in rs):>10,}{sum(r['nan_mismatch'] for r in rs):>21,}"
              f"{max(r['max_rel'] for r in rs):>13.1e}")
    agree = sum(1 for r in rows if not r["over"] and not r["nan_mismatch"])
    print(f"  {'all':<7}{f'{agree}/{len(rows)}':>9}{sum(r['cells'] for r in rows):>13,}"
          f"{sum(r['over'] for r in rows):>10,}{sum(r['nan_mismatch'] for r in rows):>21,}"
          f"{max(r['max_rel'] for r in rows):>13.1e}")


def recalc_into(url: str, eng: Engine | None, frame, formulas,
                workers: int) -> tuple[str, float]:
    load = 0.0
    own = eng is None
    if own:
        eng = Engine(url, user="bench")
        t0 = time.perf_counter()
        eng.load_data(frame, frequencies=dict.fromkeys(FIELDS, "daily"))
        load = time.perf_counter() - t0
    try:
        eng.set_formulas(formulas)
        t0 = time.perf_counter()
        rep = eng.recalc(full=True, workers=workers)
        took = time.perf_counter() - t0
    finally:
        if own:
            eng.close()
    loaded = f" (data loaded first in {load:.1f}s)" if own else ""
    return (f"{url.split(':')[0]}: cold full recalc of the {len(formulas)} formulas in "
            f"{took:.2f}s, {rep.records_written:,} records written, {workers} worker(s)"
            f"{loaded}"), took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entities", type=int, default=500)
    ap.add_argument("--days", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="20 instruments x 250 days")
    ap.add_argument("--db", default=None,
                    help="tracecalc database to evaluate from (default: a temporary SQLite file)")
    ap.add_argument("--workers", type=int, default=1,
                    help="Qlib's kernels and tracecalc's recalc threads (evaluate uses one)")
    ap.add_argument("--recalc", action="append", default=None, metavar="URL",
                    help="database to recalculate the 158 formulas into, cold (repeatable; "
                         "'{tmp}' is the temporary directory; default: the --db database)")
    ap.add_argument("--no-recalc", action="store_true")
    ap.add_argument("--stock-qlib", action="store_true",
                    help="leave Qlib's float32 operators (no float64 loader patch)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time both N times, alternating; report the best of each")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="at the end, profile one more evaluate call and print its top N functions")
    args = ap.parse_args()
    if args.quick:
        args.entities, args.days = 20, 250

    from qlib.contrib.data.loader import Alpha158DL

    fields, qnames = Alpha158DL.get_feature_config()
    formulas = read_formulas(CATALOG)
    exprs = {r["name"]: r["expression"] for r in formulas}
    assert list(exprs) == list(qnames), "alpha158.yaml and Qlib name different features"

    with tempfile.TemporaryDirectory() as tmp:
        dates, codes, items = float32_bars(args.entities, args.days)
        start, end = dates[0].strftime("%Y-%m-%d"), dates[-1].strftime("%Y-%m-%d")
        t0 = time.perf_counter()
        write_qlib(Path(tmp) / "qlib", dates, codes, items)
        qwrite = time.perf_counter() - t0
        url = args.db or f"sqlite:///{Path(tmp) / 'tc.db'}"
        eng = Engine(url, user="bench")
        frame = long_frame(dates, codes, items)
        t0 = time.perf_counter()
        eng.load_data(frame, frequencies=dict.fromkeys(FIELDS, "daily"))
        tload = time.perf_counter() - t0
        print(f"data: {args.entities:,} instruments x {args.days:,} business days x "
              f"{len(FIELDS)} fields ({len(FIELDS) * args.entities * args.days:,} float32 "
              f"values); Qlib files written in {qwrite:.1f}s, tracecalc ({url.split(':')[0]}) "
              f"loaded in {tload:.1f}s")

        qlib_setup(Path(tmp) / "qlib", args.workers, float64=not args.stock_qlib)
        qlib_features(codes[:1], ["$close"], start, end)  # warm: imports, calendar
        eng.evaluate(["close"], start=start, end=dates[5].strftime("%Y-%m-%d"))  # warm
        tq, tt = [], []
        for _ in range(args.repeat):  # alternating, so both see the same machine
            t0 = time.perf_counter()
            qdf = qlib_features(codes, fields, start, end)
            tq.append(time.perf_counter() - t0)
            qdf = None if len(tq) < args.repeat else qdf
            t0 = time.perf_counter()
            tdf = eng.evaluate(exprs)
            tt.append(time.perf_counter() - t0)
        print(f"Qlib {__import__('qlib').__version__} D.features: {len(fields)} features in "
              f"{min(tq):.2f}s{samples(tq)}; {args.workers} kernel(s), joblib "
              f"multiprocessing, {'float32' if args.stock_qlib else 'float64'} operators, "
              f"caches off; {len(qdf):,} rows")
        print(f"tracecalc Engine.evaluate: {len(exprs)} features in {min(tt):.2f}s"
              f"{samples(tt)}; one thread; {len(tdf):,} rows")
        ratio = f"{min(tq) / min(tt):.1f}x"
        if len(tq) > 1:
            ratio += f" (medians: {np.median(tq) / np.median(tt):.1f}x)"
        print(f"speed: evaluate is {ratio} faster than D.features (target >= 5x)")
        tq = min(tq)

        names = list(exprs)
        rows, bad = compare(cube_tc(tdf, names, dates, codes),
                            cube_qlib(qdf, fields, names, dates, codes), names, args.rtol)
        del qdf, tdf
        print_agreement(rows, args.rtol)
        for r in rows:
            if r["name"] in bad:
                print(f"  DISAGREE {r['name']}: {r['over']:,} cells over, "
                      f"{r['nan_mismatch']:,} missing on one side, max rel err "
                      f"{r['max_rel']:.2e}")

        if not args.no_recalc:
            print()
            for target in args.recalc or [url]:
                target = target.replace("{tmp}", tmp)
                line, took = recalc_into(target, eng if target == url else None, frame,
                                         formulas, args.workers)
                print(f"{line}; Qlib's D.features / this: {tq / took:.2f}")
        if args.profile:  # a second call, so the timed one above ran unprofiled
            prof = cProfile.Profile()
            prof.runcall(eng.evaluate, exprs)
            print(f"\nprofile of a second Engine.evaluate call (top {args.profile} by own "
                  "time):")
            pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        eng.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
