"""The command line of scripts/bench.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .costs import costs_bench
from .daily import daily_bench
from .databases import Database
from .loads import child_loads, loads_bench
from .pit import pit_bench
from .runs import child, recalc_bench, rss_scaling
from .saves import print_saves, save_bench

DESCRIPTION = ("Benchmark: tracecalc next to the database's write floor and a hand-written "
               "pandas script.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--db", default=None, help="database URL, or sqlite / duckdb for a "
                    "temporary file of that kind (default: sqlite)")
    ap.add_argument("--formulas", type=int, default=None,
                    help="formulas in the model (default 200; 50,000 with --costs)")
    ap.add_argument("--entities", type=int, default=None, help="default 2,000 (5 with --costs)")
    ap.add_argument("--periods", type=int, default=None, help="default 40 (8 with --costs)")
    ap.add_argument("--items", type=int, default=None, help="default 20 (4 with --costs)")
    ap.add_argument("--depth", type=int, default=12, help="longest chain of formulas")
    ap.add_argument("--ts-share", type=float, default=0.3)
    ap.add_argument("--cs-share", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2, help="evaluation threads")
    ap.add_argument("--chunk-entities", type=int, default=None,
                    help="entities per chunk (default: tracecalc's, by periods)")
    ap.add_argument("--large", action="store_true",
                    help="500 formulas x 5,000 entities x 80 periods; no baseline, no save "
                         "benchmark, no floor read-back")
    ap.add_argument("--no-baseline", action="store_true", help="skip the pandas baseline")
    ap.add_argument("--repeat", type=int, default=None,
                    help="cold full recalculations and floor writes, alternating (the "
                         "table shows the best of each and every sample; default 3, "
                         "1 with --large)")
    ap.add_argument("--rss-entities", default=None,
                    help="only: cold-run peak RSS at these entity counts (e.g. 1000,5000,20000)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--save-sizes", default="1000,10000,100000",
                    help="catalog sizes for the save-validation benchmark ('' to skip)")
    ap.add_argument("--saves", type=int, default=60, help="edits timed per catalog size")
    ap.add_argument("--skip-recalc", action="store_true", help="only the save benchmark")
    costs = ap.add_argument_group("catalog-scale costs (--costs; SQLite, through the CLI)")
    costs.add_argument("--costs", action="store_true",
                       help="only: time set, check, list, status, recalc and load-formulas "
                            "with a large catalog and little data")
    costs.add_argument("--costs-full", action="store_true",
                       help="also a no-op recalc --full (minutes before issue 12)")
    costs.add_argument("--chains", default="1000,2000,5000",
                       help="load-formulas of one chain this deep, each into a fresh "
                            "database ('' to skip; 5,000 took minutes before issue 12)")
    costs.add_argument("--batch", type=int, default=5000,
                       help="formulas per Engine.set_formulas call building the catalog")
    costs.add_argument("--profile", action="store_true",
                       help="run each command over its target again under cProfile and "
                            "print where the time goes")
    pit = ap.add_argument_group("point-in-time data (--pit)")
    pit.add_argument("--pit", action="store_true",
                     help="only: daily prices and quarterly fundamentals with report dates and "
                          "5%% restatements, daily asof formulas; cold full recalc vs floor")
    pit.add_argument("--years", type=int, default=5, help="business years of prices (--pit)")
    daily = ap.add_argument_group("the nightly batch at daily scale (--daily)")
    daily.add_argument("--daily", action="store_true",
                       help="only: a daily model; load, cold full, one new day, a late "
                            "value 30 days back, no-change full, next to the floor")
    daily.add_argument("--days", default="1000,2500",
                       help="history lengths in business days (--daily)")
    loads = ap.add_argument_group("data loads (--loads)")
    loads.add_argument("--loads", action="store_true",
                       help="only: load_data of a CSV into a fresh database, the same file "
                            "again unchanged, and a big file's peak RSS, next to the floor")
    loads.add_argument("--rows", type=int, default=1_000_000, help="rows of the file (--loads)")
    loads.add_argument("--big-rows", type=int, default=5_000_000,
                       help="rows of the big file, loaded in a child process (0: skip)")
    ap.add_argument("--child-loads", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-load", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-recalc", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = ((50_000, 5, 8, 4) if args.costs else (100, 1000, 40, 20) if args.daily
             else (200, 2000, 40, 20))
    for name, default in zip(("formulas", "entities", "periods", "items"), sizes):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.child_loads:
        child_loads(args.child_loads, args.json)
        return 0
    if args.child_load or args.child_recalc:
        child(args)
        return 0
    results: dict = {"argv": sys.argv[1:]}
    if args.pit:
        if args.entities == 2000 and "--entities" not in " ".join(sys.argv):
            args.entities = 500
        args.repeat = args.repeat or 3
        pit_bench(args, results)
        _write_json(args, results)
        return 0
    if args.daily:
        daily_bench(args, results)
        _write_json(args, results)
        return 0
    if args.loads:
        loads_bench(args, results)
        _write_json(args, results)
        return 0
    if args.costs:
        costs_bench(args, results)
        _write_json(args, results)
        return 0
    if args.large:
        args.formulas, args.entities, args.periods = 500, 5000, 80
        args.no_baseline, args.save_sizes = True, ""
    if args.repeat is None:
        args.repeat = 1 if args.large else 3
    if args.rss_entities:
        rss_scaling(args, results, [int(x) for x in args.rss_entities.split(",")])
    elif not args.skip_recalc:
        recalc_bench(args, results)
    sizes = [int(x) for x in args.save_sizes.split(",") if x.strip()]
    if sizes and not args.rss_entities:
        rows = save_bench(lambda: Database(args.db), sizes, args.saves, args.seed)
        results["save_validation"] = rows
        print_saves(rows)
    _write_json(args, results)
    return 0


def _write_json(args, results: dict) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
