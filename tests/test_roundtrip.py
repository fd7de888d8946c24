"""What comes out loads back unchanged: ``records()`` -> ``load_data()`` and ``export`` ->
``load-data``, for values (every finite float64), dates (0001-01-01 to 9999-12-31) and entity
codes with odd characters; and the edges of what goes in (issue 11, defects 3, 7, 13, 16).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracecalc import DataError, Engine, StaleWarning, TracecalcError
from tracecalc.cli import main
from tracecalc.storage.files import _good_code

# Annual periods (Dec 31) at the edges: the first and last years, both sides of pandas'
# nanosecond range (1677-09-21 to 2262-04-11), the epoch, the Gregorian reform. Annual, so
# that a calendar spanning ten thousand years has ten thousand dates (issue 13: a calendar
# is every grid date from its first period to its last).
SENTINELS = [dt.date(y, 12, 31) for y in (1, 1000, 9999, 1676, 1677, 2261, 2262, 1970, 1582)]
ODD_CODES = ["=SUM(A1:A9)", "+1", "-2", "@cmd", 'say "hi", then', "it's", "a,b", "ü ß 漢字 🙂",
             "two  spaces", "NA", "null", "007", "1e5", "x'); DROP TABLE tc_data;--", "\\"]

values = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
     1.7976931348623157e308, -1.7976931348623157e308, 36.7861, 0.1, 1 / 3, 1e15 + 0.3])
dates = st.integers(1, 9999).map(lambda y: dt.date(y, 12, 31)) | st.sampled_from(SENTINELS)
codes = st.sampled_from(ODD_CODES) | st.text(
    st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=64).filter(_good_code)


def points_strategy(codes=codes, max_size=25):
    return st.lists(st.tuples(codes, dates, values), min_size=1, max_size=max_size,
                    unique_by=lambda t: (t[0], t[1]))


def frame(points, item="close") -> pd.DataFrame:
    return pd.DataFrame({"item": item, "entity": [p[0] for p in points],
                         "period": [p[1].isoformat() for p in points],
                         "value": [p[2] for p in points]})


def as_stored(points) -> dict:
    """The expected content: -0.0 is stored as 0.0 (bulk.canonical_zero)."""
    return {(p[0], p[1]): p[2] + 0.0 for p in points}


def content(df: pd.DataFrame) -> dict:
    return {(r.entity, r.period.date()): r.value for r in df.itertuples()}


def same_bits(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].hex() == b[k].hex(), k


def fresh(tmp_path, name: str) -> Engine:
    return Engine(f"sqlite:///{tmp_path / name}")


def check_round_trips(first: Engine, second: Engine, third: Engine, points) -> None:
    first.load_data(frame(points), frequencies={"close": "annual"})
    got = first.records("close")
    assert got["period"].dtype == "datetime64[s]"
    same_bits(content(got), as_stored(points))
    # records() -> load_data(): the frame with an item column loads back as it was
    second.load_data(got.assign(item="close"), frequencies={"close": "annual"})
    pd.testing.assert_frame_equal(second.records("close"), got)
    # export() -> load_data(): its formula column names the item
    out = first.export(["close"])
    assert list(out.columns) == ["formula", "entity", "period", "value"]
    third.load_data(out, frequencies={"close": "annual"})
    pd.testing.assert_frame_equal(third.export(["close"]), out)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points_strategy())
def test_records_and_export_load_back_unchanged(tmp_path_factory, points):
    tmp = tmp_path_factory.mktemp("rt")
    with fresh(tmp, "a.db") as a, fresh(tmp, "b.db") as b, fresh(tmp, "c.db") as c:
        check_round_trips(a, b, c, points)


# Codes that differ only in case or accents: one key under a case-insensitive collation
# (MariaDB's default); byte for byte on every database since schema 8.
server_codes = st.sampled_from(ODD_CODES + ["A", "a", "b", "B", "Ωmega", "ωmega", "e", "é"])


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=points_strategy(server_codes, max_size=12))
def test_records_load_back_unchanged_on_servers(kind, tmp_path_factory, points):
    from conftest import make_database

    tmp = tmp_path_factory.mktemp("rt")
    made = [make_database(kind, tmp) for _ in range(3)]
    engines = []
    try:
        engines.extend(Engine(url) for url, _ in made)
        check_round_trips(*engines, points)
    finally:
        for eng in engines:
            eng.close()
        for _, drop in made:
            drop()


def read_csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points_strategy())
def test_export_csv_loads_back_unchanged(tmp_path_factory, points):
    """CLI: load-data -> export -> load-data into a fresh database -> export: the same bytes,
    each value the shortest text of its float64, each date ISO."""
    tmp = tmp_path_factory.mktemp("csv")
    src = tmp / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["item", "entity", "period", "value"])
        w.writerows(["close", e, d.isoformat(), repr(v)] for e, d, v in points)
    runner = CliRunner()

    def run(db, *args):
        res = runner.invoke(main, ["--db", f"sqlite:///{tmp / db}", *args],
                            catch_exceptions=False)
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output
        return res

    run("a.db", "load-data", str(src), "-f", "close=annual")
    first = run("a.db", "export", "close").stdout
    rows = read_csv_rows(first)
    got = {(r["entity"], dt.date.fromisoformat(r["period"])): float(r["value"]) for r in rows}
    same_bits(got, as_stored(points))
    assert all(r["value"] == repr(float(r["value"])) for r in rows)
    (tmp / "out.csv").write_text(first, encoding="utf-8")
    run("b.db", "load-data", str(tmp / "out.csv"), "-f", "close=annual")
    assert run("b.db", "export", "close").stdout == first


# -- defect 3: what records() gives back loads back, in every date form -------------------------

def test_load_data_takes_timestamps_dates_and_datetime64(tmp_path):
    # quarter ends (a quarterly calendar from year 1 to 9999 has 40,000 dates; a daily one
    # would have 2.6 million)
    days = [dt.date(2025, 6, 30), dt.date(9999, 12, 31), dt.date(1, 3, 31)]
    forms = {
        "timestamps": [pd.Timestamp(d) for d in days[:1]] + [np.datetime64(d, "s")
                                                             for d in days[1:]],
        "datetime.date": days,
        "datetime.datetime": [dt.datetime(d.year, d.month, d.day) for d in days],
        "datetime64[s]": np.array(days, dtype="datetime64[s]"),
        "datetime64[us]": np.array(days, dtype="datetime64[us]"),
        "datetime64 objects": [np.datetime64(d, "D") for d in days],
        "ISO text with midnight": ["2025-06-30T00:00:00", "9999-12-31 00:00", "0001-03-31"],
        "mixed": [pd.Timestamp("2025-06-30"), "9999-12-31", dt.date(1, 3, 31)],
    }
    for i, (name, col) in enumerate(forms.items()):
        with fresh(tmp_path, f"{i}.db") as eng:
            eng.load_data(pd.DataFrame({"item": "close", "entity": ["A", "B", "C"],
                                        "period": col, "value": [36.7861, 1.0, 2.0]}),
                          frequencies={"close": "quarterly"})
            assert content(eng.records("close")) == {
                ("A", days[0]): 36.7861, ("B", days[1]): 1.0, ("C", days[2]): 2.0}, name


def test_records_frame_loads_back_into_the_same_database(sqlite_engine):
    eng = sqlite_engine
    eng.load_data(frame([("A", dt.date(2025, 6, 30), 36.7861)]),
                  frequencies={"close": "daily"})
    got = eng.records("close")
    assert isinstance(got["period"].iloc[0], pd.Timestamp)
    res = eng.load_data(got.assign(item="close", value=got["value"] * 2))
    assert res.rows == 1
    assert content(eng.records("close")) == {("A", dt.date(2025, 6, 30)): 73.5722}


@pytest.mark.parametrize("col, row, why", [
    ([pd.Timestamp("2025-06-30"), pd.Timestamp("2025-06-30 12:00")], 3, "has a time of day"),
    (np.array(["2025-06-30", "2025-07-01T00:00:01"], dtype="datetime64[s]"), 3,
     "has a time of day"),
    (["2025-06-30", "2025-06-30 09:30"], 3, "has a time of day"),
    ([dt.datetime(2025, 6, 30, 0, 0, 0, 1), dt.date(2025, 1, 1)], 2, "has a time of day"),
    ([pd.Timestamp("2025-06-30"), pd.NaT], 3, "empty"),
    ([dt.date(2025, 6, 30), 20250630], 3, "not a date"),
    (["2025-06-30", "0000-01-01"], 3, "out of range"),
    (np.array(["2025-06-30", "10000-01-01"], dtype="datetime64[s]"), 3, "out of range"),
    ([dt.date(2025, 6, 30), np.datetime64("-0001-12-31")], 3, "out of range"),
])
def test_a_period_with_a_time_of_day_or_out_of_range_is_refused_with_its_row(
        sqlite_engine, col, row, why):
    df = pd.DataFrame({"item": "close", "entity": ["A", "B"], "period": col, "value": 1.0})
    with pytest.raises(DataError) as info:
        sqlite_engine.load_data(df, frequencies={"close": "daily"})
    assert info.value.row == row and why in str(info.value)
    assert "expected a date YYYY-MM-DD from 0001-01-01 to 9999-12-31" in str(info.value)
    assert sqlite_engine.items() == {}  # nothing half-saved


def test_a_time_zone_aware_period_counts_by_its_wall_clock_date(sqlite_engine):
    col = pd.to_datetime(["2025-06-30", "2025-07-01"]).tz_localize("Europe/Paris")
    df = pd.DataFrame({"item": "close", "entity": "A", "period": col, "value": [1.0, 2.0]})
    sqlite_engine.load_data(df, frequencies={"close": "daily"})
    assert sorted(content(sqlite_engine.records("close"))) == [
        ("A", dt.date(2025, 6, 30)), ("A", dt.date(2025, 7, 1))]


# -- defect 13: dates outside pandas' nanosecond range come back exactly -----------------------

def test_dates_outside_the_nanosecond_range_come_back_exactly(engine):
    days = [dt.date(9999, 12, 31), dt.date(3000, 12, 31), dt.date(1000, 12, 31),
            dt.date(1, 12, 31), dt.date(2025, 12, 31)]
    engine.load_data(pd.DataFrame({"item": "close", "entity": "A",
                                   "period": [d.isoformat() for d in days],
                                   "value": [1.0, 2.0, 3.0, 4.0, 5.0]}),
                     frequencies={"close": "annual"})
    engine.set_formula("twice", "close * 2")
    engine.recalc()
    got = engine.records("twice")
    assert got["period"].dt.strftime("%Y-%m-%d").tolist() == [
        "0001-12-31", "1000-12-31", "2025-12-31", "3000-12-31", "9999-12-31"]
    assert got["value"].tolist() == [8.0, 6.0, 10.0, 4.0, 2.0]
    out = engine.export()
    assert [p.date() for p in out["period"]] == sorted(days)
    # bounds and explain work out there too
    late = engine.records("twice", start="3000-01-01", end=dt.date(9999, 12, 31))
    assert late["value"].tolist() == [4.0, 2.0]
    for period in ("9999-12-31", pd.Timestamp("9999-12-31"), dt.date(9999, 12, 31),
                   np.datetime64("9999-12-31")):
        ex = engine.explain("twice", "A", period)
        assert ex["period"] == "9999-12-31" and ex["stored"] == 2.0


# -- defect 7: shortest digits; stale records say so -------------------------------------------

def test_stale_records_and_export_say_so(sqlite_engine):
    eng = sqlite_engine
    eng.load_data(frame([("A", dt.date(2025, 6, 30), 1.0), ("B", dt.date(2025, 6, 30), 2.0)]),
                  frequencies={"close": "daily"})
    eng.set_formula("twice", "close * 2")
    eng.set_formula("more", "twice + 1")
    with pytest.warns(StaleWarning) as caught:
        df = eng.records("twice")
    assert df.empty and df.attrs["stale"] == {"twice": "stale"}
    w = caught[0].message
    assert (w.formula, w.state, w.entities) == ("twice", "stale", 2)
    assert "twice is stale (2 entities to recompute)" in str(w) and "recalc" in str(w)
    eng.recalc()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fresh: no warning
        assert eng.records("twice").attrs["stale"] == {}
        assert eng.records("close").attrs["stale"] == {}  # data is never stale
        assert eng.export().attrs["stale"] == {}
    eng.load_data(frame([("A", dt.date(2025, 6, 30), 5.0)]))
    with pytest.warns(StaleWarning) as caught:
        out = eng.export()
    assert out.attrs["stale"] == {"twice": "partial", "more": "pending"}
    got = {(m.message.formula, m.message.state, m.message.entities) for m in caught}
    assert got == {("twice", "partial", 1), ("more", "pending", None)}
    # the old values are still what comes back, flagged
    assert out[out.formula == "twice"]["value"].tolist() == [2.0, 4.0]


# -- defect 16: bad arguments are TracecalcErrors; one entity code is one entity ----------------

@pytest.mark.parametrize("arg", ["start", "end"])
@pytest.mark.parametrize("bad", ["garbage", "2025-13-01", "2025-06-30 10:00", "10000-01-01"])
def test_bad_start_or_end_is_a_data_error_naming_the_argument(sqlite_engine, arg, bad):
    sqlite_engine.load_data(frame([("A", dt.date(2025, 6, 30), 1.0)]),
                            frequencies={"close": "daily"})
    with pytest.raises(DataError) as info:
        sqlite_engine.records("close", **{arg: bad})
    assert isinstance(info.value, TracecalcError)
    assert f"bad {arg} {bad!r}" in str(info.value) and "records of 'close'" in str(info.value)


def test_entities_given_as_one_string_mean_one_entity(sqlite_engine):
    pts = [("=B", dt.date(2025, 6, 30), 1.0), ("=", dt.date(2025, 6, 30), 2.0),
           ("B", dt.date(2025, 6, 30), 3.0)]
    sqlite_engine.load_data(frame(pts), frequencies={"close": "daily"})
    assert sqlite_engine.records("close", entities="=B")["value"].tolist() == [1.0]
    assert sqlite_engine.records("close", entities=["=", "B"])["value"].tolist() == [2.0, 3.0]


def test_values_keep_their_sign_bits_but_zero(sqlite_engine):
    """-0.0 is canonicalised to 0.0 everywhere (bulk.canonical_zero); the round trips above
    therefore compare that; every other value keeps its bits."""
    sqlite_engine.load_data(frame([("A", dt.date(2025, 6, 30), -0.0),
                                   ("A", dt.date(2025, 7, 1), -5e-324)]),
                            frequencies={"close": "daily"})
    got = sqlite_engine.records("close")["value"].tolist()
    assert [math.copysign(1, v) for v in got] == [1.0, -1.0] and got[1] == -5e-324
