"""Benchmark: full recalculation of a generated model next to the database's write floor.

    python scripts/bench.py                                   # SQLite, 200 x 2,000 x 40
    python scripts/bench.py --db postgresql://postgres@127.0.0.1:5432/test
    python scripts/bench.py --formulas 50 --entities 500 --json out.json

Everything runs in one process and one run, against one fresh database (a temporary SQLite
file, or a fresh PostgreSQL schema / MariaDB database that is dropped afterwards):

- floor: the same number of (formula, entity, period, value) rows bulk-written into a table
  shaped like the records table with the database's best raw path (SQLite multi-row VALUES
  in one transaction, PostgreSQL COPY binary, MariaDB LOAD DATA LOCAL INFILE), written here
  directly against the driver, and read back;
- tracecalc: loading the inputs, saving the formulas, a cold full recalculation (no
  records yet) with 1 and with 2 evaluation threads (the records are emptied in between),
  a full recalculation where nothing changed (nothing is written) with 1 and 2 threads, an
  incremental recalculation after editing a formula with few dependents, and one after
  changing one entity's data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tracecalc.engine import Engine
from tracecalc.storage import normalise_url

TS = ["ts_mean({x}, 4)", "lag({x}, 1)", "growth({x}, 4)", "ema({x}, 6)", "ttm({x})",
      "diff({x}, 1)", "ts_std({x}, 8)", "avg_balance({x}, 4)"]
CS = ["cs_rank({x})", "cs_zscore({x})", "cs_demean({x})"]
EW = ["{x} + {y}", "{x} - {y}", "{x} * {y}", "{x} / {y}", "({x} - {y}) / {y}",
      "max({x}, {y})", "if_({x} > {y}, {x}, {y})", "coalesce({x}, {y})", "log(abs({x}) + 1)",
      "sqrt(abs({x})) * sign({y})", "div({x}, {y}, 0)"]


def make_model(n_formulas: int, n_items: int, n_entities: int, n_periods: int,
               ts_share: float, cs_share: float, seed: int):
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2000-03-31", periods=n_periods, freq="QE").strftime("%Y-%m-%d")
    items = [f"item{i}" for i in range(n_items)]
    ent = np.array([f"E{i:06d}" for i in range(n_entities)], dtype=object)
    rows = n_items * n_entities * n_periods
    values = rng.lognormal(3, 1, rows) * rng.choice([1, -1], rows, p=[0.9, 0.1])
    values[rng.random(rows) < 0.02] = np.nan
    data = pd.DataFrame({
        "item": np.repeat(items, n_entities * n_periods),
        "entity": np.tile(np.repeat(ent, n_periods), n_items),
        "period": np.tile(periods.to_numpy(), n_items * n_entities),
        "value": values,
    }).dropna()
    formulas = []
    names: list[str] = []
    for i in range(n_formulas):
        # Mostly recent formulas as inputs: chains get deep, like real indicator catalogs.
        pool = items + names[-20:]
        x, y = rng.choice(pool, 2, replace=len(pool) < 2)
        r = rng.random()
        if r < cs_share:
            expr = str(rng.choice(CS)).format(x=x)
        elif r < cs_share + ts_share:
            expr = str(rng.choice(TS)).format(x=x)
        else:
            expr = str(rng.choice(EW)).format(x=x, y=y)
        name = f"f{i}"
        formulas.append({"name": name, "expression": expr})
        names.append(name)
    return data, formulas


class Database:
    """A fresh database for the run: a temporary SQLite file, a PostgreSQL schema or a
    MariaDB database; dropped afterwards."""

    def __init__(self, url: str | None):
        self.kind = "sqlite" if not url else make_url(normalise_url(url)).get_backend_name()
        self.name = f"tc_bench_{uuid.uuid4().hex[:10]}"
        if self.kind == "sqlite":
            self.tmp = tempfile.mkdtemp(prefix="tracecalc-bench-")
            self.url = f"sqlite:///{Path(self.tmp) / 'bench.db'}"
            return
        base = normalise_url(url)
        self.admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            if self.kind == "postgresql":
                c.execute(text(f'CREATE SCHEMA "{self.name}"'))
                u = make_url(base).update_query_dict({"options": f"-csearch_path={self.name}"})
            else:
                c.execute(text(f"CREATE DATABASE `{self.name}`"))
                u = make_url(base).set(database=self.name)
        self.url = u.render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.kind == "sqlite":
            for f in Path(self.tmp).iterdir():
                f.unlink()
            os.rmdir(self.tmp)
            return
        with self.admin.connect() as c:
            if self.kind == "postgresql":
                c.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
            else:
                c.execute(text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        self.admin.dispose()


FLOOR_DDL = ("CREATE TABLE floor_records (formula_id INTEGER NOT NULL, entity_id INTEGER NOT "
             "NULL, period DATE NOT NULL, value {dbl} NOT NULL, PRIMARY KEY (formula_id, "
             "entity_id, period))")


def floor(url: str, kind: str, n_formulas: int, n_entities: int, n_periods: int,
          n_rows: int) -> dict:
    """Write and read back ``n_rows`` rows with the database's best raw path."""
    rng = np.random.default_rng(1)
    cells = n_entities * n_periods
    idx = np.arange(n_rows)
    fid = (idx // cells + 1).astype(np.int64)
    eid = (idx % cells // n_periods + 1).astype(np.int64)
    per = np.datetime64("2000-03-31") + (idx % n_periods * 91).astype("timedelta64[D]")
    val = rng.normal(size=n_rows)
    eng = create_engine(normalise_url(url),
                        connect_args={"local_infile": True} if kind == "mysql" else {})
    dbl = "DOUBLE PRECISION" if kind == "postgresql" else ("DOUBLE" if kind == "mysql"
                                                           else "REAL")
    with eng.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS floor_records"))
        c.execute(text(FLOOR_DDL.format(dbl=dbl)))
    raw = eng.raw_connection()
    try:
        t0 = time.perf_counter()
        cur = raw.cursor()
        if kind == "sqlite":
            sql = "INSERT INTO floor_records VALUES " + ",".join(["(?,?,?,?)"] * 1000)
            for lo in range(0, n_rows, 100_000):  # chunks keep the Python lists small
                hi = min(n_rows, lo + 100_000)
                per_s = np.datetime_as_string(per[lo:hi], unit="D").tolist()
                flat = [v for row in zip(fid[lo:hi].tolist(), eid[lo:hi].tolist(), per_s,
                                         val[lo:hi].tolist()) for v in row]
                n = hi - lo
                whole = n - n % 1000
                for i in range(0, whole, 1000):
                    cur.execute(sql, flat[4 * i:4 * i + 4000])
                if whole < n:
                    cur.execute("INSERT INTO floor_records VALUES "
                                + ",".join(["(?,?,?,?)"] * (n - whole)), flat[4 * whole:])
        elif kind == "postgresql":
            dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("f", ">i4"), ("l2", ">i4"),
                           ("e", ">i4"), ("l3", ">i4"), ("d", ">i4"), ("l4", ">i4"),
                           ("v", ">f8")])
            buf = np.empty(n_rows, dtype=dt)
            buf["nf"], buf["l1"], buf["l2"], buf["l3"], buf["l4"] = 4, 4, 4, 4, 8
            buf["f"], buf["e"], buf["v"] = fid, eid, val
            buf["d"] = (per - np.datetime64("2000-01-01")).astype(np.int64)
            with cur.copy("COPY floor_records FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
                cp.write(buf.tobytes())
                cp.write(b"\xff\xff")
        else:
            per_s = np.datetime_as_string(per, unit="D").tolist()
            fd, path = tempfile.mkstemp(suffix=".csv")
            with os.fdopen(fd, "w") as f:
                f.write("\n".join(f"{a},{b},{c},{d!r}" for a, b, c, d in
                                  zip(fid.tolist(), eid.tolist(), per_s, val.tolist())))
            cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE floor_records FIELDS "
                        "TERMINATED BY ','", (path,))
            os.unlink(path)
        raw.commit()
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        cur.execute("SELECT formula_id, entity_id, period, value FROM floor_records")
        got = 0
        while True:
            rows = cur.fetchmany(100_000)
            if not rows:
                break
            got += len(np.array([r[3] for r in rows]))
        read = time.perf_counter() - t0
        assert got == n_rows
        cur.execute("DROP TABLE floor_records")
        raw.commit()
    finally:
        raw.close()
        eng.dispose()
    return {"write_s": write, "read_s": read}


def empty_records(eng: Engine) -> None:
    """Back to no records, every formula stale: the state before a cold run."""
    with eng.store.engine.begin() as c:
        c.execute(text("DELETE FROM tc_records"))
        c.execute(text("DELETE FROM tc_stale"))
        c.execute(text("UPDATE tc_formulas SET state = 'stale'"))


def few_dependents(eng: Engine) -> tuple[str, int]:
    """A formula with few (but some) formulas downstream of it."""
    counts = {n: len(eng.dependents(n, transitive=True)) for n in eng.formulas()["name"]}
    name = min((c, n) for n, c in counts.items() if c > 0)[1] if any(counts.values()) \
        else next(iter(counts))
    return name, counts[name]


def seed_catalog(eng: Engine, n: int, seed: int) -> list[str]:
    """A catalog of ``n`` formulas written straight into the tables (parsing and sympy for
    100k formulas would take minutes and measure nothing of interest): wide and shallow like
    real indicator catalogs, each formula using an item and up to two formulas of depth <= 6.
    """
    from sqlalchemy import insert

    from tracecalc.storage.schema import formula_items, formula_links, formulas
    from tracecalc.storage.store import canonical_key, now

    rng = np.random.default_rng(seed)
    depth = np.zeros(n, dtype=np.int64)
    shallow: list[int] = []
    rows, links, refs = [], [], []
    with eng.store.transaction(write=False) as c:
        item_id = eng.store.items_named(c, ["item0"])["item0"][0]
    for i in range(n):
        deps = []
        if shallow:
            deps = sorted({shallow[j] for j in rng.integers(0, len(shallow), rng.integers(0, 3))})
        depth[i] = 1 + max((depth[d] for d in deps), default=0)
        if depth[i] <= 6:
            shallow.append(i)
        expr = " + ".join([f"f{d}" for d in deps] + ["item0"])
        rows.append({"id": i + 1, "name": f"f{i}", "expression": expr, "canonical": expr,
                     "canonical_key": canonical_key(expr),
                     "description": "", "frequency": "quarterly", "version": 1,
                     "state": "fresh", "stale_seq": 0, "changed": False, "updated_at": now(),
                     "updated_by": "bench"})
        links += [{"node_id": i + 1, "depends_on_id": d + 1} for d in deps]
        refs.append({"formula_id": i + 1, "item_id": item_id})
    with eng.store.transaction() as c:
        for table, data in ((formulas, rows), (formula_links, links), (formula_items, refs)):
            for k in range(0, len(data), 5000):
                c.execute(insert(table), data[k:k + 5000])
    return [r["name"] for r in rows]


def save_bench(url_factory, sizes: list[int], saves: int, seed: int) -> list[dict]:
    """Median time to validate (check) and to save one formula edit, per catalog size."""
    out = []
    for n in sizes:
        db = url_factory()
        try:
            eng = Engine(db.url, user="bench")
            eng.load_data(pd.DataFrame({"item": "item0", "entity": "E0",
                                        "period": ["2024-03-31", "2024-06-30"],
                                        "value": [1.0, 2.0]}))
            names = seed_catalog(eng, n, seed)
            rng = np.random.default_rng(seed + 1)
            checks, impacts, sets, cycles = [], [], [], 0
            for _ in range(saves):
                a, b = (names[int(i)] for i in rng.integers(0, n, 2))
                expr = f"{b} * 2 + item0"
                t0 = time.perf_counter()
                rep = eng.check_formula(a, expr, impact=False)
                checks.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                eng.check_formula(a, expr)
                impacts.append(time.perf_counter() - t0)
                if not rep.is_valid:
                    cycles += 1
                    continue
                t0 = time.perf_counter()
                eng.set_formula(a, expr)
                sets.append(time.perf_counter() - t0)
            eng.close()
        finally:
            db.drop()
        out.append({"formulas": n, "validate_median_ms": 1000 * float(np.median(checks)),
                    "validate_p90_ms": 1000 * float(np.percentile(checks, 90)),
                    "check_median_ms": 1000 * float(np.median(impacts)),
                    "save_median_ms": 1000 * float(np.median(sets)) if sets else None,
                    "saves": len(sets), "refused_cycles": cycles})
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--formulas", type=int, default=200)
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--periods", type=int, default=40)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--ts-share", type=float, default=0.3)
    ap.add_argument("--cs-share", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2, help="evaluation threads (cold run)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--save-sizes", default="1000,10000,100000",
                    help="catalog sizes for the save-validation benchmark ('' to skip)")
    ap.add_argument("--saves", type=int, default=60, help="edits timed per catalog size")
    ap.add_argument("--skip-recalc", action="store_true", help="only the save benchmark")
    args = ap.parse_args(argv)
    results: dict = {}
    if not args.skip_recalc:
        recalc_bench(args, results)
    sizes = [int(x) for x in args.save_sizes.split(",") if x.strip()]
    if sizes:
        rows = save_bench(lambda: Database(args.db), sizes, args.saves, args.seed)
        results["save_validation"] = rows
        print(f"\n{'catalog':>9} {'validate (median, p90)':>24} {'check + impact':>15} "
              f"{'save':>10} {'edits':>6} {'refused (cycle)':>16}")
        for r in rows:
            save = "-" if r["save_median_ms"] is None else f"{r['save_median_ms']:.2f} ms"
            print(f"{r['formulas']:9,} {r['validate_median_ms']:11.2f} ms, "
                  f"{r['validate_p90_ms']:6.2f} ms {r['check_median_ms']:12.2f} ms "
                  f"{save:>10} {r['saves']:6} {r['refused_cycles']:16}")
        print("(medians over the edits; a save validates, writes, and marks what is "
              "downstream stale)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


def recalc_bench(args, results: dict) -> None:

    data, formulas = make_model(args.formulas, args.items, args.entities, args.periods,
                                args.ts_share, args.cs_share, args.seed)
    db = Database(args.db)
    results.update({"db": db.kind, "formulas": args.formulas, "entities": args.entities,
                    "periods": args.periods, "items": args.items})
    print(f"tracecalc bench on {db.kind}: {args.formulas} formulas x {args.entities:,} "
          f"entities x {args.periods} periods ({args.items} input items, "
          f"{len(data):,} data points)", flush=True)
    rows: list[tuple[str, float, int]] = []  # label, seconds, records written
    try:
        eng = Engine(db.url, user="bench")
        t0 = time.perf_counter()
        eng.load_data(data, frequencies={i: "quarterly" for i in data["item"].unique()})
        rows.append(("load inputs", time.perf_counter() - t0, len(data)))
        t0 = time.perf_counter()
        eng.set_formulas(formulas)
        rows.append(("save + validate formulas", time.perf_counter() - t0, args.formulas))
        records = 0
        for w in (1, 2):  # the cold run twice, emptying the records in between
            if records:
                empty_records(eng)
            cold = eng.recalc(full=True, workers=w)
            records = cold.records_written
            rows.append((f"cold full recalc, {w} worker{'s' * (w > 1)}", cold.seconds, records))
        results["records"] = records
        for w in (1, 2):
            same = eng.recalc(full=True, workers=w)
            assert same.records_written == 0
            rows.append((f"no-change full recalc, {w} worker{'s' * (w > 1)}", same.seconds,
                         same.records_written))
        name, n_down = few_dependents(eng)
        eng.set_formula(name, f"({eng.formula(name).expression}) * 1.01")
        inc = eng.recalc()
        rows.append((f"edit {name} ({n_down} dependents), recalc", inc.seconds,
                     inc.records_written))
        results["edit_formula"] = {"name": name, "dependents": n_down,
                                   "computed": inc.formulas_computed}
        item = max(data["item"].unique(), key=lambda i: len(eng.dependents(i, True)))
        entity = str(data["entity"].iloc[0])
        one = data[(data["entity"] == entity) & (data["item"] == item)].tail(1).copy()
        one["value"] = one["value"] * 1.5 + 1
        eng.load_data(one)
        inc = eng.recalc()
        rows.append((f"1 entity's {item} changed ({len(eng.dependents(item, True))} "
                     "downstream), recalc", inc.seconds, inc.records_written))
        results["tracecalc_peak_rss_mb"] = peak_rss_mb()
        eng.close()
        fl = floor(db.url, db.kind, args.formulas, args.entities, args.periods, records)
        rows.insert(2, ("floor: bulk write (raw driver)", fl["write_s"], records))
        rows.insert(3, ("floor: read back", fl["read_s"], records))
        results["floor_write_s"] = fl["write_s"]
    finally:
        db.drop()
    results["peak_rss_mb"] = peak_rss_mb()
    results["steps"] = [{"step": label, "seconds": sec, "records_written": n}
                        for label, sec, n in rows]
    floor_s = results["floor_write_s"]
    print(f"\n{'step':44} {'seconds':>9} {'written':>12} {'rows/s':>11} {'x floor':>8}")
    for label, sec, n in rows:
        ratio = f"{sec / floor_s:8.2f}" if "recalc" in label else ""
        rate = f"{n / sec:11,.0f}" if sec and n else f"{'':11}"
        print(f"{label:44} {sec:9.2f} {n:12,} {rate} {ratio}")
    cold2 = next(sec for label, sec, _ in rows if label.startswith("cold full recalc, 2"))
    results["cold_vs_floor"] = cold2 / floor_s
    print(f"\ncold full recalc (2 workers) / floor write = {results['cold_vs_floor']:.2f}; peak "
          f"RSS {results['tracecalc_peak_rss_mb']:.0f} MB after the tracecalc steps, "
          f"{results['peak_rss_mb']:.0f} MB after the floor")


if __name__ == "__main__":
    sys.exit(main())
