"""Benchmark: tracecalc next to the database's write floor and a hand-written pandas script.

    python scripts/bench.py                                   # SQLite, 200 x 2,000 x 40
    python scripts/bench.py --db duckdb                       # a temporary DuckDB file
    python scripts/bench.py --db postgresql://postgres@127.0.0.1:5432/test
    python scripts/bench.py --large                           # 500 x 5,000 x 80, no baseline
    python scripts/bench.py --rss-entities 1000,5000,20000    # memory as entities grow
    python scripts/bench.py --formulas 50 --entities 500 --json out.json
    python scripts/bench.py --costs [--formulas 50000] [--costs-full] [--chains 1000,2000]
    python scripts/bench.py --loads [--rows 1000000] [--big-rows 5000000] [--db URL]
    python scripts/bench.py --daily [--formulas 100] [--entities 1000] [--days 1000,2500]

Everything runs in one process and one run, against one fresh database (a temporary SQLite
or DuckDB file, or a fresh PostgreSQL schema / MariaDB database that is dropped afterwards), on a
model generated from the parameters (formulas, chain depth, input items, entities, periods,
shares of time-series and cross-sectional functions; fixed seed):

- tracecalc: loading the inputs, saving the formulas, a cold full recalculation (no records
  yet), a full recalculation where nothing changed, an incremental recalculation after
  editing a formula with few dependents, and one after changing one entity's data;
- floor: the same number of (formula, entity, period, value) rows bulk-written into a table
  shaped like the records table with the database's best raw path (SQLite multi-row VALUES
  in one transaction, PostgreSQL COPY binary, MariaDB LOAD DATA LOCAL INFILE, DuckDB a registered
  frame into a keyless table, as tc_records is there, and once more with the key declared),
  through tracecalc's own bulk writer, and read back;
- baseline: what a user would otherwise write: pandas reads the inputs (read_sql), pivots
  them to an (entity, period) frame, evaluates each formula in dependency order with
  DataFrame.eval, numpy and groupby time-series / per-period operations, and writes the
  results with DataFrame.to_sql;
- save validation: median time to check and save one formula edit in catalogs of 1k, 10k
  and 100k formulas;
- costs (--costs, alone): set, check, list, status, recalc and load-formulas through the CLI
  with a catalog of 50,000 formulas and little data, each next to its target.

It prints a table (time, rows, rows/s, peak RSS of the step, ratios to the floor and to the
baseline) and the targets, and writes the same as JSON with --json. Peak RSS is per step:
the kernel's high-water mark is reset before each one (/proc/self/clear_refs).

The code is the tcbench package beside this file (model, databases, floor, baseline, saves,
runs, report, costs; bulkio is the one module calling tracecalc's bulk writers).
"""

import sys

from tcbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
