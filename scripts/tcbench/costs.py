"""Catalog-scale costs: what each command costs with a large catalog and little data.

Every timed command runs end to end through the CLI, one process each (``tracecalc --db URL
...``, startup and imports included; ``python -c 'import tracecalc.cli'`` is timed too, for
scale), on a temporary SQLite file holding a catalog of ``--formulas`` formulas over a few
items, entities and periods, so what is timed is the catalog's cost, not the data's.
"""

from __future__ import annotations

import csv
import io
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tracecalc.engine import Engine

from .model import CS, EW, TS

HUBS = 20  # the first formulas: many later ones use them (fan-out)
CHAIN = 40  # a chain's length before a new one starts
LINEAR_RATIO = 5.0  # load-formulas 5,000 deep / 1,000 deep, if linear
PROFILE_LINES = 20
# which functions the profile shows: the project's and the libraries it leans on
PROFILE_FILTER = r"tracecalc|sqlalchemy|rich|click|sympy|pandas"


def tracecalc_command() -> list[str]:
    """The project's console script next to this interpreter, else ``python -m``."""
    exe = Path(sys.executable).with_name("tracecalc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tracecalc"]


def make_catalog(n: int, n_items: int, seed: int) -> list[dict]:
    """``n`` formulas over ``n_items`` items: chains (each formula extends the one before,
    ``CHAIN`` long), fan-out from ``HUBS`` hub formulas, time-series and cross-sectional
    functions (``cs_rank``, ...) of recent formulas, and arithmetic of two of them."""
    rng = np.random.default_rng(seed)
    items = [f"item{i}" for i in range(n_items)]
    out: list[dict] = []
    names: list[str] = []
    head, length = None, 0  # the current chain
    for i in range(n):
        name = f"c{i}"
        pick = lambda: str(rng.choice(items + names[-30:]))  # noqa: E731
        r = rng.random()
        item = items[i % n_items]
        if i < HUBS:
            expr = f"{items[i % n_items]} * {1 + i / 100:g}"
        elif r < 0.2:  # a chain
            if head is None or length >= CHAIN:
                head, length = str(rng.choice(names)), 0
            expr = f"{head} * 1.01 + {item}"
            head, length = name, length + 1
        elif r < 0.45:  # fan-out from a hub
            expr = f"{names[int(rng.integers(HUBS))]} / ({item} + 1)"
        elif r < 0.65:
            expr = str(rng.choice(TS)).format(x=pick())
        elif r < 0.7:
            expr = str(rng.choice(CS)).format(x=pick())
        else:
            expr = str(rng.choice(EW)).format(x=pick(), y=pick())
        out.append({"name": name, "expression": expr})
        names.append(name)
    return out


def small_data(n_items: int, n_entities: int, n_periods: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2020-03-31", periods=n_periods, freq="QE").strftime("%Y-%m-%d")
    idx = pd.MultiIndex.from_product(
        [[f"item{i}" for i in range(n_items)], [f"E{e:03d}" for e in range(n_entities)],
         list(periods)], names=["item", "entity", "period"])
    return pd.DataFrame({"value": rng.lognormal(3, 1, len(idx))}, index=idx).reset_index()


class Costs:
    """One run: a temporary directory of SQLite files, the figures, and the profiles."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="tracecalc-costs-"))
        self.rows: list[dict] = []
        self.profiles: list[tuple[str, str]] = []
        self.data = small_data(args.items, args.entities, args.periods, args.seed)

    def fresh_db(self, label: str) -> str:
        url = f"sqlite:///{self.tmp / (label + '.db')}"
        eng = Engine(url, user="bench")
        eng.load_data(self.data, frequencies={i: "quarterly" for i in self.data["item"].unique()})
        eng.close()
        return url

    def cli(self, url: str | None, *args: str, profile: Path | None = None) -> float:
        """Run one command, check it succeeded, return its wall time."""
        cmd = tracecalc_command()
        if profile is not None:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "tracecalc"]
        cmd += (["--db", url, "--user", "bench"] if url else []) + list(args)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "120"})
        sec = time.perf_counter() - t0
        if p.returncode:
            raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): "
                             f"{(p.stderr or p.stdout).strip()[-800:]}")
        return sec

    def timed(self, label: str, url: str | None, *args: str, target: float | None = None,
              profile_args: tuple[str, ...] | None = None, profile: bool = True,
              **extra) -> float:
        """Time a command; when over its target and ``--profile``, run it again (or
        ``profile_args``, for a command that changes what it runs on) under cProfile."""
        sec = self.cli(url, *args)
        over = target is not None and sec > target
        self.rows.append({"step": label, "seconds": sec, "target_s": target,
                          "over": over, "command": " ".join(args), **extra})
        mark = "" if target is None else f"  (target < {target:g} s{', OVER' if over else ''})"
        print(f"  {label:46} {sec:9.2f} s{mark}", flush=True)
        if over and profile and self.args.profile:
            self.profile(label, url, *(profile_args or args))
        return sec

    def profile(self, label: str, url: str, *args: str) -> None:
        out = self.tmp / f"profile-{len(self.profiles)}.prof"
        sec = self.cli(url, *args, profile=out)
        buf = io.StringIO()
        st = pstats.Stats(str(out), stream=buf)
        st.sort_stats("cumulative").print_stats(PROFILE_FILTER, 10 * PROFILE_LINES)
        text = re.sub(r"/\S*?/(site-packages|src)/", "", buf.getvalue())
        lines = [ln for ln in text.splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
        # imports (<module>) and click's dispatch sit on top of every profile and say
        # nothing of the command: startup is timed on its own (tracecalc --version)
        body = [ln for ln in lines[start + 1:]
                if "(<module>)" not in ln and "click/" not in ln][:PROFILE_LINES]
        self.profiles.append((f"{label}: tracecalc {' '.join(args)} ({sec:.1f} s under "
                              "cProfile)", "\n".join([lines[start], *body])))

    def build(self, url: str) -> None:
        """The catalog, saved with Engine.set_formulas in batches (in process: the
        build is setup, timed only to show what a large catalog costs to make)."""
        cat = make_catalog(self.args.formulas, self.args.items, self.args.seed)
        self.catalog = cat
        eng = Engine(url, user="bench")
        t0 = time.perf_counter()
        batch, times = self.args.batch, []
        for lo in range(0, len(cat), batch):
            t1 = time.perf_counter()
            eng.set_formulas(cat[lo:lo + batch])
            times.append(time.perf_counter() - t1)
        eng.close()
        sec = time.perf_counter() - t0
        self.rows.append({"step": "build catalog (Engine.set_formulas)", "seconds": sec,
                          "target_s": None, "over": False, "batch_s": times})
        label = f"build: {len(cat):,} formulas, batches of {batch:,}"
        print(f"  {label:46} "
              f"{sec:9.2f} s  (first batch {times[0]:.1f} s, last {times[-1]:.1f} s)",
              flush=True)

    def chains(self, depths: list[int]) -> dict[int, float]:
        """load-formulas of one chain ``depth`` deep into a fresh database, per depth."""
        got: dict[int, float] = {}
        for d in depths:
            url = self.fresh_db(f"chain{d}")
            path = self.tmp / f"chain{d}.csv"
            write_chain(path, d)
            target = 10.0 if d >= 5000 else None
            sec = self.timed(f"load-formulas, a chain {d:,} deep", url, "load-formulas",
                             str(path), target=target,
                             profile=False)  # again would load into a full database
            self.rows[-1]["per_formula_ms"] = 1000 * sec / d
            print(f"  {'':46} {1000 * sec / d:9.2f} ms per formula", flush=True)
            got[d] = sec
        small = [x for x in depths if x <= 2000]
        if self.args.profile and small and got[max(small)] > 10.0 * max(small) / 5000:
            d = max(small)  # over 10 s at 5,000 deep, pro rata; the profile takes 2x
            self.profile(f"load-formulas, a chain {d:,} deep", self.fresh_db(f"p{d}"),
                         "load-formulas", str(self.tmp / f"chain{d}.csv"))
        return got

    def drop(self) -> None:
        for f in self.tmp.iterdir():
            f.unlink()
        os.rmdir(self.tmp)


def write_chain(path: Path, depth: int) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "expression", "description"])
        w.writerow(["k0", "item0 * 1.01", ""])
        for i in range(1, depth):
            w.writerow([f"k{i}", f"k{i - 1} * 1.01 + item{i % 2}", ""])


def costs_bench(args, results: dict) -> None:
    """Build the catalog, then time each command against its target (see module doc)."""
    c = Costs(args)
    n = args.formulas
    print(f"tracecalc costs on sqlite (through the CLI): {n:,} formulas over {args.items} "
          f"items, {args.entities} entities x {args.periods} periods", flush=True)
    try:
        t0 = time.perf_counter()  # startup: python and the CLI's imports
        subprocess.run([sys.executable, "-c", "import tracecalc.cli"], check=True)
        c.rows.append({"step": "process start + import tracecalc.cli", "target_s": None,
                       "seconds": time.perf_counter() - t0, "over": False})
        print(f"  {c.rows[-1]['step']:46} {c.rows[-1]['seconds']:9.2f} s", flush=True)
        url = c.fresh_db("catalog")
        c.build(url)
        c.timed("list", url, "list", target=2.0)
        c.timed("status (everything stale)", url, "status", target=2.0)
        mid = c.catalog[n // 2]
        c.timed(f"check an edit of {mid['name']}", url, "check", mid["name"],
                f"({mid['expression']}) * 1.01", target=0.3)
        c.timed("set one more formula", url, "set", "extra1", f"c{n - 1} + item0",
                target=0.3, profile_args=("set", "extra2", f"c{n - 2} + item1"))
        c.timed("recalc (everything stale; no target)", url, "recalc", "-q")
        c.timed("recalc, nothing stale (no-op)", url, "recalc", "-q", target=1.0)
        if args.costs_full:
            c.timed("recalc --full, nothing changes (no-op)", url, "recalc", "--full", "-q")
        depths = [int(x) for x in args.chains.split(",") if x.strip()]
        got = c.chains(depths)
        if len(got) > 1:
            lo, hi = min(got), max(got)
            ratio = got[hi] / got[lo]
            linear = hi / lo
            c.rows.append({"step": f"load-formulas {hi:,} / {lo:,} deep", "seconds": None,
                           "ratio": ratio, "linear_ratio": linear})
            print(f"  {f'load-formulas ratio {hi:,} / {lo:,} deep':46} {ratio:9.2f} x  "
                  f"(linear: {linear:g} x{', OVER' if ratio > 1.25 * linear else ''})")
    finally:
        c.drop()
    results["costs"] = {"formulas": n, "items": args.items, "entities": args.entities,
                        "periods": args.periods, "steps": c.rows}
    print_costs(c.rows)
    for title, text in c.profiles:
        print(f"\nprofile, {title}; top {PROFILE_LINES} by cumulative time "
              f"({PROFILE_FILTER}):\n{text}")


def print_costs(rows: list[dict]) -> None:
    print(f"\n{'step':48} {'seconds':>8} {'target':>8}  {'':4}")
    for r in rows:
        if r["seconds"] is None:
            print(f"{r['step'][:48]:48} {r['ratio']:7.2f}x {r['linear_ratio']:7.0f}x")
            continue
        t = f"< {r['target_s']:g}" if r.get("target_s") else ""
        flag = "OVER" if r.get("over") else ("ok" if t else "")
        per = (f"  {r['per_formula_ms']:.2f} ms/formula" if r.get("per_formula_ms")
               else "")
        print(f"{r['step'][:48]:48} {r['seconds']:8.2f} {t:>8}  {flag:4}{per}")
