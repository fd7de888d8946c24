"""Timing one step (seconds, peak RSS) and the recalculation benchmark's table and targets."""

from __future__ import annotations

import gc
import resource
import time

import numpy as np


class Peak:
    """Peak RSS of one step: the kernel's high-water mark, reset before the step."""

    @staticmethod
    def reset() -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:  # not Linux: the process peak instead
            pass

    @staticmethod
    def mb(field: str = "VmHWM") -> float:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(steps: list[dict], label: str, fn, records=None, **extra):
    """Run and time one step; ``records`` maps its result to the rows it moved."""
    gc.collect()
    Peak.reset()
    t0 = time.perf_counter()
    res = fn()
    sec = time.perf_counter() - t0
    n = records(res) if callable(records) else records
    steps.append({"step": label, "seconds": sec, "records": n,
                  "rows_per_s": n / sec if n and sec else None,
                  "peak_rss_mb": Peak.mb(), **extra})
    print(f"  {label:46} {sec:9.2f} s", flush=True)
    return res


def report(results: dict, steps: list[dict]) -> None:
    by = {s["step"].split(" (")[0].split(",")[0]: s for s in steps}
    floor_s = by["floor: bulk write"]["seconds"]
    base = by.get("baseline: pandas read")
    base_s = base["seconds"] if base else None
    print(f"\n{'step':58} {'seconds':>8} {'records':>12} {'rows/s':>10} {'RSS MB':>7} "
          f"{'x floor':>8} {'baseline/x':>10}")
    for s in steps:
        tc = s["step"].startswith("tracecalc")
        s["vs_floor"] = s["seconds"] / floor_s if tc else None
        s["baseline_speedup"] = base_s / s["seconds"] if tc and base_s else None
        rate = f"{s['rows_per_s']:10,.0f}" if s.get("rows_per_s") else f"{'':10}"
        rss = f"{s['peak_rss_mb']:7.0f}" if s.get("peak_rss_mb") else f"{'':7}"
        vf = f"{s['vs_floor']:8.2f}" if s["vs_floor"] is not None else f"{'':8}"
        vb = f"{s['baseline_speedup']:10.1f}" if s["baseline_speedup"] else f"{'':10}"
        n = f"{s['records']:12,}" if s["records"] is not None else f"{'':12}"
        print(f"{s['step'][:58]:58} {s['seconds']:8.2f} {n} {rate} {rss} {vf} {vb}")
        if len(s.get("samples", ())) > 1:
            print(f"{'   best of: ' + ', '.join(f'{x:.2f}' for x in s['samples']):58}")
    cold = by["tracecalc: cold full recalc"]
    same = by["tracecalc: no-change full recalc"]
    t = {"cold_vs_floor": cold["seconds"] / floor_s,
         "no_change_vs_cold": same["seconds"] / cold["seconds"],
         "cold_eval_s": cold["eval_s"], "cold_io_s": cold["io_s"],
         "cold_write_s": cold["write_s"]}
    if base_s:
        t["baseline_vs_cold"] = base_s / cold["seconds"]
    results["targets"] = t
    print("\ntargets")
    print(f"  1. cold full recalc / floor write     {t['cold_vs_floor']:6.2f}  (at most 1.25)")
    if len(cold.get("samples", ())) > 1:
        t["cold_vs_floor_median"] = (float(np.median(cold["samples"]))
                                     / float(np.median(by["floor: bulk write"]["samples"])))
        print(f"     (medians of {len(cold['samples'])} runs each: "
              f"{t['cold_vs_floor_median']:.2f})")
    if base_s:
        print(f"     baseline / cold full recalc        {t['baseline_vs_cold']:6.2f}  "
              "(at least 5)")
    print(f"  2. no-change full / cold full         {t['no_change_vs_cold']:6.2f}  "
          "(at most 0.25)")
    w = cold.get("workers", 1)
    slower = max(t["cold_io_s"], t["cold_eval_s"] / w)
    print(f"  4. cold run {cold['seconds']:.1f} s wall; database writer busy "
          f"{t['cold_io_s']:.1f} s (writes {t['cold_write_s']:.1f} s, commits and reads the "
          f"rest); evaluation {t['cold_eval_s']:.1f} s on {w} threads. One after the other: "
          f"{t['cold_io_s'] + t['cold_eval_s']:.1f} s; wall / slower = "
          f"{cold['seconds'] / slower:.2f}")
