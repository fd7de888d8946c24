"""The load benchmark (``--loads``): ``Engine.load_data`` of a CSV file into a fresh
database, the same file again unchanged, the same rows as a typed DataFrame into another
fresh database, and a large file in a child process for its peak RSS; each next to the
floor, the raw driver's bulk insert of the same rows in key order."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tracecalc.engine import Engine

from . import bulkio
from .databases import Database, create_table, driver_engine
from .report import step

BENCH = Path(__file__).resolve().parent.parent / "bench.py"
ITEMS = 4
DAYS = 250  # business days from 2020-01-01
SLICE = 1_000_000


def shape(n_rows: int) -> tuple[int, int, int]:
    """(items, entities, days) of a file of about ``n_rows`` rows."""
    return ITEMS, max(1, n_rows // (ITEMS * DAYS)), DAYS


def write_csv(path: Path, n_rows: int, seed: int) -> int:
    """A daily file as a feed sends it: day after day, every entity, every item (so not in
    the table's key order), values with four decimals. Written a day block at a time."""
    n_items, n_ents, n_days = shape(n_rows)
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=n_days).strftime("%Y-%m-%d")
    ents = np.array([f"E{i:06d}" for i in range(n_ents)], dtype=object)
    names = np.array([f"item{i}" for i in range(n_items)], dtype=object)
    per_day = n_ents * n_items
    with open(path, "w") as f:
        f.write("item,entity,period,value\n")
        for lo in range(0, n_days, max(1, SLICE // per_day)):
            block = days[lo:lo + max(1, SLICE // per_day)]
            n = len(block) * per_day
            frame = pd.DataFrame({
                "item": np.tile(names, len(block) * n_ents),
                "entity": np.tile(np.repeat(ents, n_items), len(block)),
                "period": np.repeat(np.asarray(block, dtype=object), per_day),
                "value": rng.normal(100, 20, n).round(4)})
            frame.to_csv(f, header=False, index=False)
    return n_items * n_ents * n_days


def load_floor(url: str, kind: str, n_rows: int, seed: int) -> float:
    """Seconds to bulk-insert the same number of (item, entity, period, value) rows into a
    table shaped like tc_data, in key order, in one transaction (tracecalc's bulk writer)."""
    n_items, n_ents, n_days = shape(n_rows)
    rng = np.random.default_rng(seed)
    cal = np.asarray(pd.bdate_range("2020-01-01", periods=n_days), "datetime64[D]")
    per_item = n_ents * n_days
    total = n_items * per_item
    eng = driver_engine(url, kind)
    create_table(eng, kind, "floor_data")
    try:
        t0 = time.perf_counter()
        with eng.begin() as conn:
            for lo in range(0, total, SLICE):
                idx = np.arange(lo, min(total, lo + SLICE))
                bulkio.write_rows(conn, "floor_data", "formula_id",
                                  (idx // per_item + 1).astype(np.int64),
                                  (idx % per_item // n_days + 1).astype(np.int64),
                                  cal[idx % n_days], rng.normal(100, 20, len(idx)).round(4))
        sec = time.perf_counter() - t0
        with eng.begin() as conn:
            conn.exec_driver_sql("DROP TABLE floor_data")
    finally:
        eng.dispose()
    return sec


def loads_bench(args, results: dict) -> None:
    """Fresh load, unchanged reload and their floor at ``--rows``; then ``--big-rows`` in a
    child process (time and peak RSS) with its floor."""
    tmp = Path(tempfile.mkdtemp(prefix="tracecalc-loads-"))
    steps: list[dict] = []
    results["steps"] = steps
    try:
        path = tmp / "data.csv"
        n = write_csv(path, args.rows, args.seed)
        db = Database(args.db)
        results["db"] = db.kind
        print(f"tracecalc --loads on {db.kind}: {n:,} rows ({ITEMS} items x "
              f"{shape(args.rows)[1]:,} entities x {DAYS} days), file "
              f"{path.stat().st_size / 1e6:.0f} MB", flush=True)
        try:
            eng = Engine(db.url, user="bench")
            db.settle()
            step(steps, "load_data: fresh database", lambda: eng.load_data(str(path)),
                 lambda r: r.rows)
            db.settle()
            step(steps, "load_data: the same file, unchanged", lambda: eng.load_data(str(path)),
                 lambda r: r.rows)
            eng.close()
        finally:
            db.drop()
        frame = pd.read_csv(path, dtype={"period": str})  # typed: float values
        db = Database(args.db)
        try:
            eng = Engine(db.url, user="bench")
            db.settle()
            step(steps, "load_data: a DataFrame, fresh database", lambda: eng.load_data(frame),
                 lambda r: r.rows)
            eng.close()
            db.settle()
            fl = load_floor(db.url, db.kind, args.rows, args.seed)
            steps.append({"step": "floor: bulk insert in key order", "seconds": fl,
                          "records": n, "rows_per_s": n / fl})
            print(f"  {'floor: bulk insert in key order':46} {fl:9.2f} s", flush=True)
        finally:
            db.drop()
        if args.big_rows:
            big = tmp / "big.csv"
            nb = write_csv(big, args.big_rows, args.seed + 1)
            path.unlink()
            db = Database(args.db)
            try:
                out = subprocess.run([sys.executable, str(BENCH), "--child-loads", db.url,
                                      "--json", str(big)], check=True, capture_output=True,
                                     text=True).stdout
                got = json.loads(out.strip().splitlines()[-1])
                steps.append({"step": f"load_data: {nb:,} rows (child process)",
                              "seconds": got["seconds"], "records": nb,
                              "rows_per_s": nb / got["seconds"],
                              "peak_rss_mb": got["peak_rss_mb"]})
                print(f"  {'load_data: big file (child process)':46} {got['seconds']:9.2f} s"
                      f"  peak RSS {got['peak_rss_mb']:.0f} MB", flush=True)
                db.settle()
                fb = load_floor(db.url, db.kind, args.big_rows, args.seed + 1)
                steps.append({"step": "floor: big file's rows in key order", "seconds": fb,
                              "records": nb, "rows_per_s": nb / fb})
                print(f"  {'floor: big file in key order':46} {fb:9.2f} s", flush=True)
            finally:
                db.drop()
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    report_loads(results, steps)


def report_loads(results: dict, steps: list[dict]) -> None:
    print(f"\n{'step':46} {'seconds':>8} {'rows':>11} {'rows/s':>10} {'RSS MB':>7}")
    for s in steps:
        rss = f"{s['peak_rss_mb']:7.0f}" if s.get("peak_rss_mb") else f"{'':7}"
        print(f"{s['step'][:46]:46} {s['seconds']:8.2f} {s['records']:11,} "
              f"{s['rows_per_s']:10,.0f} {rss}")
    fresh, same, frame, fl = (s["seconds"] for s in steps[:4])
    t = {"floor_vs_load": fl / fresh, "reload_vs_load": same / fresh,
         "floor_vs_frame": fl / frame}
    print("\ntargets")
    print(f"  load throughput / floor's          {t['floor_vs_load']:6.2f}  (at least 0.5)")
    print(f"     (a DataFrame, no CSV to parse)  {t['floor_vs_frame']:6.2f}")
    print(f"  unchanged reload / fresh load      {t['reload_vs_load']:6.2f}  (at most 0.25)")
    if len(steps) > 4:
        t["big_floor_vs_load"] = steps[5]["seconds"] / steps[4]["seconds"]
        t["big_peak_rss_mb"] = steps[4]["peak_rss_mb"]
        print(f"  big file: throughput / floor's     {t['big_floor_vs_load']:6.2f}")
        print(f"  big file: peak RSS MB          {t['big_peak_rss_mb']:10.0f}  (under 1,500)")
    results["targets"] = t


def child_loads(url: str, path: str) -> None:
    """--child-loads URL --json FILE: load FILE into URL; print seconds and peak RSS."""
    eng = Engine(url, user="bench")
    t0 = time.perf_counter()
    res = eng.load_data(path)
    sec = time.perf_counter() - t0
    eng.close()
    print(json.dumps({"rows": res.rows, "seconds": sec,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
