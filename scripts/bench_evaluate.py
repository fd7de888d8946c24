"""Benchmark: ``Engine.evaluate`` of an Alpha158-style feature set, in memory, next to the
same features saved as formulas and recalculated into the database.

    python scripts/bench_evaluate.py                         # SQLite, 200 entities x 1,000 days
    python scripts/bench_evaluate.py --entities 500 --days 1000 --recalc
    python scripts/bench_evaluate.py --db postgresql://postgres@127.0.0.1:5432/test
    python scripts/bench_evaluate.py --alpha101 --entities 1000 --days 1000

Daily open/high/low/close/volume are generated (fixed seed) and loaded into a fresh database
(a temporary SQLite file, or the given server database, whose tables it creates: use an
empty one). The features are the kinds of Qlib's Alpha158 that tracecalc's functions
express today (K-bar shapes, ROC, MA, STD, MAX, MIN, CORR, VMA, VSTD over 5 to 60 days)
plus a few cross-sectional ranks. It reports, for one ``evaluate`` call over every feature:
wall time, output cells and cells/s, the time spent reading the items, and the step's peak
RSS; with ``--recalc`` the same features saved as formulas and fully recalculated (what
writing the records costs on top), and their records read back.

With ``--alpha101`` the features are instead the expressible 101 Formulaic Alphas of
sample_data/catalogs/alpha101.yaml (82 alphas over open/high/low/close/volume/vwap and the
helpers returns and adv{d}): the catalog is saved as formulas (they are computed, not read,
by ``evaluate``) and the 82 alphas are evaluated in one call; the data gets a vwap inside
[low, high] (drawn after the other items, which stay as they are).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tracecalc.engine import Engine  # noqa: E402

WINDOWS = (5, 10, 20, 30, 60)


def features() -> dict[str, str]:
    f = {
        "KMID": "(close - open) / open",
        "KLEN": "(high - low) / open",
        "KMID2": "(close - open) / (high - low + 1e-12)",
        "KUP": "(high - max(open, close)) / open",
        "KLOW": "(min(open, close) - low) / open",
    }
    for d in WINDOWS:
        f[f"ROC{d}"] = f"lag(close, {d}) / close"
        f[f"MA{d}"] = f"ts_mean(close, {d}) / close"
        f[f"STD{d}"] = f"ts_std(close, {d}) / close"
        f[f"MAX{d}"] = f"ts_max(high, {d}) / close"
        f[f"MIN{d}"] = f"ts_min(low, {d}) / close"
        f[f"CORR{d}"] = f"ts_corr(close, log(volume + 1), {d})"
        f[f"VMA{d}"] = f"ts_mean(volume, {d}) / (volume + 1e-12)"
        f[f"VSTD{d}"] = f"ts_std(volume, {d}) / (volume + 1e-12)"
    f["RANK_ROC20"] = "cs_rank(lag(close, 20) / close)"
    f["RANK_VOL"] = "cs_rank(ts_std(close / lag(close) - 1, 20))"
    f["EMA12"] = "ema(close, 12) / close"
    return f


CATALOG = Path(__file__).resolve().parents[1] / "sample_data" / "catalogs" / "alpha101.yaml"


def alpha101() -> tuple[list[dict], list[str]]:
    """The catalog's rows, and the names of its alphas (not the helpers)."""
    from tracecalc.storage.files import read_formulas

    rows = read_formulas(CATALOG)
    return rows, [r["name"] for r in rows if r["name"].startswith("alpha")]


def bars(entities: int, days: int, vwap: bool = False
         ) -> tuple[pd.DatetimeIndex, list[str], dict[str, np.ndarray]]:
    """Business days, entity codes and (days x entities) arrays of open, high, low, close,
    volume (and with ``vwap`` a vwap inside each day's range; fixed seed; prices rounded to
    4 decimals)."""
    rng = np.random.default_rng(42)
    dates = pd.bdate_range("2020-01-01", periods=days)
    ret = rng.normal(0, 0.02, (days, entities))
    close = 50 * np.exp(np.cumsum(ret, axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, close.shape)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, close.shape)))
    volume = np.round(rng.lognormal(12, 0.5, close.shape))
    codes = [f"S{j:04d}" for j in range(entities)]
    items = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    if vwap:
        low4, high4 = np.round(low, 4), np.round(high, 4)
        items["vwap"] = low4 + rng.uniform(0.2, 0.8, close.shape) * (high4 - low4)
    return dates, codes, {k: np.round(v, 4) for k, v in items.items()}


def long_frame(dates: pd.DatetimeIndex, codes: list[str],
               items: dict[str, np.ndarray]) -> pd.DataFrame:
    """The arrays of ``bars`` as item, entity, period, value rows (``Engine.load_data``)."""
    days = dates.strftime("%Y-%m-%d")
    parts = [pd.DataFrame({"item": item, "entity": np.tile(codes, len(days)),
                           "period": np.repeat(days, len(codes)), "value": v.ravel()})
             for item, v in items.items()]
    return pd.concat(parts, ignore_index=True)


def data(entities: int, days: int, vwap: bool = False) -> pd.DataFrame:
    return long_frame(*bars(entities, days, vwap))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--entities", type=int, default=200)
    ap.add_argument("--days", type=int, default=1000)
    ap.add_argument("--recalc", action="store_true", help="also save and recalculate them")
    ap.add_argument("--alpha101", action="store_true",
                    help="evaluate the 101 Formulaic Alphas catalog instead")
    args = ap.parse_args()
    items = ["open", "high", "low", "close", "volume"] + (["vwap"] if args.alpha101 else [])
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        eng = Engine(url, user="bench")
        t0 = time.perf_counter()
        eng.load_data(data(args.entities, args.days, vwap=args.alpha101),
                      frequencies=dict.fromkeys(items, "daily"))
        load = time.perf_counter() - t0
        if args.alpha101:
            rows, feats = alpha101()
            eng.set_formulas(rows)
        else:
            feats = features()
        reads = [0.0]
        real = eng.store.read_item

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                reads[0] += time.perf_counter() - t

        eng.store.read_item = timed
        eng.evaluate(["close"], start="2020-01-01", end="2020-01-10")  # warm: imports
        reads[0] = 0.0
        reset_peak()
        t0 = time.perf_counter()
        df = eng.evaluate(feats)
        wall = time.perf_counter() - t0
        rss = peak_rss_mb()
        eng.store.read_item = real
        cells = int(df[list(feats)].notna().to_numpy().sum())
        print(f"data: {args.entities:,} entities x {args.days:,} days, {len(items)} items "
              f"({len(items) * args.entities * args.days:,} points) loaded in {load:.1f}s on "
              f"{url.split(':')[0]}")
        what = (f"alphas (and their {len(rows) - len(feats)} helpers)" if args.alpha101
                else "features")
        print(f"evaluate: {len(feats)} {what} in {wall:.2f}s (items read in {reads[0]:.2f}s), "
              f"{len(df):,} rows, {cells:,} cells with a value "
              f"({len(df) * len(feats):,} in all), {cells / wall:,.0f} cells/s, "
              f"peak RSS {rss:,.0f} MB")
        if args.recalc:
            if not args.alpha101:
                eng.set_formulas(feats)
            t0 = time.perf_counter()
            rep = eng.recalc()
            print(f"recalc: the same {len(eng.formulas(canonical=False))} formulas, full run in "
                  f"{time.perf_counter() - t0:.2f}s, {rep.records_written:,} records written")
            t0 = time.perf_counter()
            with eng.store.transaction(write=False) as conn:
                ids = {r.name: r.id for r in eng.store.formula_rows(conn)}
                n = sum(len(eng.store.read_records(conn, ids[f])[2]) for f in feats)
            print(f"reading those records back (what evaluating from stored records would "
                  f"read): {n:,} in {time.perf_counter() - t0:.2f}s")
        eng.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
