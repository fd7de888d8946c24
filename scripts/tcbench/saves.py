"""Save validation: the time to check and save one edit in catalogs of many formulas."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from tracecalc.engine import Engine


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


def print_saves(rows: list[dict]) -> None:
    print(f"\n{'catalog':>9} {'validate (median, p90)':>24} {'check + impact':>15} "
          f"{'save':>10} {'edits':>6} {'refused (cycle)':>16}")
    for r in rows:
        save = "-" if r["save_median_ms"] is None else f"{r['save_median_ms']:.2f} ms"
        print(f"{r['formulas']:9,} {r['validate_median_ms']:11.2f} ms, "
              f"{r['validate_p90_ms']:6.2f} ms {r['check_median_ms']:12.2f} ms "
              f"{save:>10} {r['saves']:6} {r['refused_cycles']:16}")
    print("(medians over the edits; a save validates, writes, and marks what is "
          "downstream stale)")
