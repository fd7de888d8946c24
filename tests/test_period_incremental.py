"""Period-incremental recalculation (issue 15): a change at period t recomputes each affected
formula from t on, reading its inputs only from its look-back window before t and the stored
records only from t on; the result is the one a full recalculation from scratch gives, bit
for bit, and the run log says where each formula started and how much it read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracecalc.engine import Engine
from tracecalc.model import FormulaState

DAYS = pd.bdate_range("2024-01-01", periods=60)
ENTITIES = ["A", "B", "C", "D"]
# name -> (expression, periods before t it reads)
FORMULAS = {
    "m5": ("ts_mean(close, 5)", 4),
    "d2": ("lag(close, 2) - close", 2),
    "r": ("cs_rank(m5)", 0),  # a cross-section of a formula of this run
    "v": ("ts_std(d2, 3) + m5", 2),
    "pe": ("close / asof(eps)", 0),
    "e": ("ema(close, 3)", 0),  # continues from its own last value
    "w": ("wilder(d2, 4)", 0),
}
USERS = {"m5": ["r", "v"], "d2": ["v", "w"]}  # who reads a formula's records
STATE = {"e", "w"}  # read their own record before the new day


def prices(days, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [("close", e, str(d.date()), round(float(100 + rng.normal()), 4))
            for d in days for e in ENTITIES]
    return pd.DataFrame(rows, columns=["item", "entity", "period", "value"])


def eps() -> pd.DataFrame:
    rows = [("eps", e, q, str((pd.Timestamp(q) + pd.Timedelta(days=30)).date()), 1.0 + i + j)
            for i, e in enumerate(ENTITIES) for j, q in enumerate(["2023-12-31"])]
    return pd.DataFrame(rows, columns=["item", "entity", "period", "known_at", "value"])


def build(url: str, days) -> Engine:
    eng = Engine(url)
    eng.load_data(prices(days), frequencies={"close": "daily"})
    eng.load_data(eps(), frequencies={"eps": "quarterly"})
    eng.set_formulas([{"name": n, "expression": x} for n, (x, _) in FORMULAS.items()])
    eng.recalc()
    return eng


def everything(eng: Engine) -> dict:
    return {n: eng.records(n).sort_values(["entity", "period"]).reset_index(drop=True)
            for n in FORMULAS}


class Reads:
    """The first period of every stored-record and data read of a run (None: all)."""

    def __init__(self, store, monkeypatch):
        self.records: list[tuple[int, object]] = []
        self.items: list[tuple[int, object]] = []
        for name, log in (("read_records", self.records), ("read_item", self.items)):
            real = getattr(store, name)

            def spy(conn, key, entity_ids=None, periods=None, real=real, log=log):
                start = periods[0] if isinstance(periods, tuple) else periods
                log.append((key, start))
                return real(conn, key, entity_ids, periods)
            monkeypatch.setattr(store, name, spy)


def test_appending_a_day_recomputes_from_it_and_reads_only_the_windows(db_url, monkeypatch,
                                                                       tmp_path):
    eng = build(db_url, DAYS[:-1])
    with eng.store.transaction(write=False) as conn:
        ids = {r.name: r.id for r in eng.store.formula_rows(conn)}
        close = eng.store.items_named(conn, ["close"])["close"][0]
    reads = Reads(eng.store, monkeypatch)
    eng.load_data(prices(DAYS)[lambda d: d["period"] == str(DAYS[-1].date())])
    run = eng.recalc()
    new_day = DAYS[-1].date()
    log = {r["formula_name"]: r for r in eng.run_log(run.run_id)}
    assert set(log) == set(FORMULAS)
    for name in FORMULAS:
        assert str(log[name]["first_period"])[:10] == str(new_day), name
        # nothing stored at the new day yet; a smoothing reads its last value
        assert log[name]["records_read"] == (len(ENTITIES) if name in STATE else 0), name
        assert log[name]["records_written"] == len(ENTITIES)
    # no stored record older than the look-back is read: a formula's own records from the
    # new day on, its formula inputs from its window before it
    back = {n: DAYS[-1 - k].date() for n, (_, k) in FORMULAS.items()}
    by_id = {v: k for k, v in ids.items()}
    assert reads.records
    for fid, start in reads.records:
        name = by_id[fid]
        assert start is not None, name
        earliest = min([DAYS[-2].date() if name in STATE else new_day]
                       + [back[u] for u in USERS.get(name, ())])
        assert pd.Timestamp(start).date() >= earliest, (name, start)
    # (asof reads the quarterly eps whole: the latest quarter known on a day can be any)
    close_reads = [start for key, start in reads.items if key == close]
    assert close_reads and all(s is not None for s in close_reads)
    assert min(pd.Timestamp(s).date() for s in close_reads) >= DAYS[-5].date()
    # and the records are those of a full recalculation from scratch, bit for bit
    got = everything(eng)
    eng.close()
    fresh = build(f"sqlite:///{tmp_path / 'scratch.db'}", DAYS)
    for name, want in everything(fresh).items():
        pd.testing.assert_frame_equal(got[name], want, check_exact=True)
    assert fresh.verify().ok
    fresh.close()


def test_a_late_value_recomputes_one_entity_from_its_day(engine, tmp_path):
    eng = engine
    eng.load_data(prices(DAYS), frequencies={"close": "daily"})
    eng.load_data(eps(), frequencies={"eps": "quarterly"})
    eng.set_formulas([{"name": n, "expression": x} for n, (x, _) in FORMULAS.items()
                      if n != "r"])  # (a rank would move every entity)
    eng.recalc()
    day = DAYS[-30]
    eng.load_data(pd.DataFrame({"item": ["close"], "entity": ["B"],
                                "period": [str(day.date())], "value": [123.0]}))
    run = eng.recalc()
    log = {r["formula_name"]: r for r in eng.run_log(run.run_id)}
    for name in ("m5", "d2", "pe"):
        assert log[name]["entities"] == 1
        assert str(log[name]["first_period"])[:10] == str(day.date())
        assert 0 < log[name]["records_read"] <= 30  # B's records from that day on
    assert log["m5"]["records_written"] == 5 and log["pe"]["records_written"] == 1
    assert log["d2"]["records_written"] == 2  # day and day + 2
    assert eng.verify().ok
    changed = prices(DAYS)
    changed.loc[(changed["entity"] == "B") & (changed["period"] == str(day.date())),
                "value"] = 123.0
    fresh = Engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    fresh.load_data(changed, frequencies={"close": "daily"})
    fresh.load_data(eps(), frequencies={"eps": "quarterly"})
    fresh.set_formulas([{"name": n, "expression": x} for n, (x, _) in FORMULAS.items()
                        if n != "r"])
    fresh.recalc()
    for name in ("m5", "d2", "v", "pe", "e", "w"):
        pd.testing.assert_frame_equal(eng.records(name), fresh.records(name), check_exact=True)
    fresh.close()


@pytest.mark.parametrize("edit", ["ts_mean(close, 5) + 0", "ts_mean(close, 6)"])
def test_a_formula_edit_still_recomputes_from_the_start(tmp_path, edit):
    eng = build(f"sqlite:///{tmp_path / 'e.db'}", DAYS)
    eng.set_formula("m5", edit)
    run = eng.recalc()
    log = {r["formula_name"]: r for r in eng.run_log(run.run_id)}
    assert log["m5"]["first_period"] is None and log["m5"]["entities"] == len(ENTITIES)
    eng.close()


def test_a_smoothing_without_a_recent_value_runs_over_its_whole_history(db_url, tmp_path):
    """B's last close is 80 days before the new one (beyond the 64 looked at), C's ema never
    seeded, D has nothing before: all still equal a run from scratch, bit for bit."""
    days = pd.bdate_range("2024-01-01", periods=101)
    full = prices(days)
    keep = ((full["entity"] == "A") | (full["period"] == str(days[-1].date()))
            | ((full["entity"] == "B") & (full["period"] <= str(days[20].date())))
            | ((full["entity"] == "C") & (full["period"] <= str(days[1].date()))))
    data = full[keep]
    formulas = [{"name": "e", "expression": "ema(close, 3)"},
                {"name": "macd", "expression": "ema(close, 3) - wilder(close, 5)"}]
    eng = Engine(db_url)
    eng.load_data(data[data["period"] < str(days[-1].date())], frequencies={"close": "daily"})
    eng.set_formulas(formulas)
    eng.recalc()
    eng.load_data(data[data["period"] == str(days[-1].date())])
    run = eng.recalc()
    log = {r["formula_name"]: r for r in eng.run_log(run.run_id)}
    assert str(log["e"]["first_period"])[:10] == str(days[-1].date())
    assert log["e"]["records_written"] == 3  # A, B, and C (its third value seeds it); not D
    scratch = Engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    scratch.load_data(data, frequencies={"close": "daily"})
    scratch.set_formulas(formulas)
    scratch.recalc()
    for name in ("e", "macd"):
        pd.testing.assert_frame_equal(eng.records(name), scratch.records(name),
                                      check_exact=True)
    assert eng.verify().ok
    eng.close()
    scratch.close()


def test_a_restatement_marks_the_asof_readers_from_its_filing_day(db_url, tmp_path):
    """Issue 13: a restatement of B's 2024-Q1 EPS filed on 2024-09-16 recomputes the daily
    asof formulas for B only, from that day on (not from the quarter); a new report for the
    latest quarter, from its filing day on. Equal, bit for bit, to a run from scratch."""
    days = pd.bdate_range("2024-01-01", "2024-12-31")
    quarters = ["2023-09-30", "2023-12-31", "2024-03-31", "2024-06-30"]
    base = prices(days)
    reports = pd.DataFrame(
        [("eps", e, q, str((pd.Timestamp(q) + pd.Timedelta(days=30)).date()), 1.0 + i + j)
         for i, e in enumerate(ENTITIES) for j, q in enumerate(quarters)],
        columns=["item", "entity", "period", "known_at", "value"])
    formulas = [{"name": "pe", "expression": "close / asof(eps)"},
                {"name": "eps_ttm", "expression": "ttm(eps)"},
                {"name": "pe_ttm", "expression": "close / asof(eps_ttm)"},
                {"name": "mom", "expression": "close / lag(close, 5)"}]
    restated = pd.DataFrame([("eps", "B", "2024-03-31", "2024-09-16", 9.5)],
                            columns=reports.columns)
    latest = pd.DataFrame([("eps", "C", "2024-09-30", "2024-11-04", 7.25)],
                          columns=reports.columns)
    eng = Engine(db_url)
    eng.load_data(base, frequencies={"close": "daily"})
    eng.load_data(reports, frequencies={"eps": "quarterly"})
    eng.set_formulas(formulas)
    eng.recalc()
    for change, entity, day in ((restated, "B", "2024-09-16"), (latest, "C", "2024-11-04")):
        eng.load_data(change)
        status = eng.status()
        assert "mom" not in status["stale"]
        log = {r["formula_name"]: r for r in eng.run_log(eng.recalc().run_id)}
        for name in ("pe", "pe_ttm"):
            assert log[name]["entities"] == 1, (name, log[name])
            assert str(log[name]["first_period"])[:10] == day, (name, log[name])
        # an older quarter's restatement moves the ttm, not the latest quarter's P/E
        assert log["pe_ttm"]["records_written"] > 0
        assert (log["pe"]["records_written"] > 0) == (entity == "C")
        assert log["eps_ttm"]["entities"] == 1
        assert "mom" not in log or not log["mom"]["entities"]
    scratch = Engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    scratch.load_data(base, frequencies={"close": "daily"})
    scratch.load_data(pd.concat([reports, restated, latest]), frequencies={"eps": "quarterly"})
    scratch.set_formulas(formulas)
    scratch.recalc()
    for f in formulas:
        for as_of in (None, "2024-10-01"):
            pd.testing.assert_frame_equal(eng.records(f["name"], as_of=as_of),
                                          scratch.records(f["name"], as_of=as_of),
                                          check_exact=True)
    eng.close()
    scratch.close()


def test_an_earlier_mark_on_a_stale_formula_moves_its_first_period_back_and_bumps(engine):
    """A run that planned a stale formula from a later period must leave it stale when a
    mark from an earlier period comes in meanwhile (its ``stale_seq`` moves)."""
    engine.load_data(prices(DAYS[:10]), frequencies={"close": "daily"})
    engine.set_formula("m5", "ts_mean(close, 5)")
    store = engine.store
    with store.transaction() as conn:
        fid = {r.name: r.id for r in store.formula_rows(conn)}["m5"]
        store.set_state(conn, ["m5"], FormulaState.FRESH)
        store.set_state(conn, ["m5"], FormulaState.STALE, since=np.datetime64(DAYS[8].date()))
        seq = store.current_marks(conn, fid)[1]
        store.mark_entities(conn, fid, np.array([1]), since=np.datetime64(DAYS[3].date()))
        row = next(r for r in store.formula_rows(conn) if r.name == "m5")
    assert str(row.stale_since)[:10] == str(DAYS[3].date()) and row.state == "stale"
    assert row.stale_seq == seq + 1
