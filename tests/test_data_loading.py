"""Loading data: every bad file is refused with its row and reason, and nothing is written."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracecalc.errors import DataError
from tracecalc.storage.files import infer_frequency, read_data, read_formulas

HEADER = "item,entity,period,value\n"
GOOD = HEADER + "revenue,A,2024-03-31,10\nrevenue,A,2024-06-30,12\n"


@pytest.mark.parametrize("body, row, fragment", [
    (HEADER + "revenue,A,2024-03-31,ten\n", 2, "bad value 'ten'"),
    (HEADER + "revenue,A,2024-03-31,1\nrevenue,A,2024-06-30,1,5\n", 3, "5 fields where"),
    (HEADER + "revenue,A,2024-03-31,1\nrevenue,A,2024-02-30,1\n", 3, "bad period '2024-02-30'"),
    (HEADER + "revenue,A,31/03/2024,1\n", 2, "bad period"),
    (HEADER + "revenue,A,,1\n", 2, "bad period ''"),
    (HEADER + "revenue,A,2024-03-31,1\nrevenue,A,2024-03-31,2\n", 2, "duplicate key"),
    (HEADER + "revenue,A,2024-03-31,1\nrev enue,A,2024-06-30,1\n", 3, "bad item name"),
    (HEADER + "1revenue,A,2024-03-31,1\n", 2, "bad item name"),
    (HEADER + "log,A,2024-03-31,1\n", 2, "is a function name"),
    (HEADER + "revenue, A,2024-03-31,1\n", 2, "bad entity code ' A'"),
    (HEADER + "revenue,,2024-03-31,1\n", 2, "bad entity code ''"),
    (HEADER + "revenue," + "X" * 65 + ",2024-03-31,1\n", 2, "bad entity code"),
    (HEADER + "revenue,A,2024-03-31,inf\n", 2, "bad value 'inf'"),
    (HEADER + "revenue,A,2024-03-31,nan\n", 2, "bad value 'nan'"),
    (HEADER + "revenue,A,2024-03-31,1e999\n", 2, "bad value"),
    (HEADER + "revenue,A,2024-03-31,0x10\n", 2, "bad value"),
    ("item,entity,date,value\nrevenue,A,2024-03-31,1\n", 1, "missing ['period']"),
    ("item,entity,period,value,extra\nrevenue,A,2024-03-31,1,2\n", 1, "unexpected ['extra']"),
    (HEADER, None, "no data rows"),
    ("", None, "empty"),
    (HEADER + "revenue,A,2024-03-31,1,\n", 2, "not a valid CSV"),
])
def test_bad_files_name_the_row(tmp_path, body, row, fragment):
    path = tmp_path / "data.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_data(path)
    assert fragment in str(info.value)
    assert info.value.row == row
    if row is not None:
        assert f"row {row}" in str(info.value)


def test_other_encodings_are_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "revenue,Société,2024-03-31,1\n").encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_data(path)
    path.write_bytes((HEADER + "revenue,Société,2024-03-31,1\n").encode("utf-8-sig"))
    batch = read_data(path)  # a BOM is fine
    assert batch.entities.tolist() == ["Société"]


def test_empty_values_mean_missing_and_frequency_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("item,entity,period,value,frequency\nx,A,2024-03-31,,Quarterly\n"
                    "x,A,2024-06-30, 2.5 ,\n")
    b = read_data(path)
    assert math.isnan(b.values[0]) and b.values[1] == 2.5
    assert b.frequencies == {"x": "quarterly"}


def test_a_bad_file_writes_nothing(engine, tmp_path):
    engine.load_data(pd.DataFrame({"item": "revenue", "entity": ["A", "B"],
                                   "period": "2024-03-31", "value": [1.0, 2.0]}),
                     frequencies={"revenue": "quarterly"})
    before = engine.status()
    path = tmp_path / "bad.csv"
    lines = [f"cogs,E{i},2024-03-31,{i}" for i in range(500)] + ["cogs,E9,2024-06-30,oops"]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        engine.load_data(path)
    assert info.value.row == 502
    assert engine.status() == before
    assert set(engine.items()) == {"revenue"}


def test_frequency_that_cannot_be_inferred_rolls_back(engine):
    df = pd.DataFrame({"item": ["a", "a", "b"], "entity": ["A", "A", "B"],
                       "period": ["2024-03-31", "2024-06-30", "2024-03-31"],
                       "value": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match="cannot infer the frequency of new item 'b'"):
        engine.load_data(df)
    assert engine.items() == {} and engine.status()["entities"] == 0
    engine.load_data(df, frequencies={"b": "quarterly"})
    assert engine.items() == {"a": "quarterly", "b": "quarterly"}


def test_reload_updates_inserts_and_deletes(engine):
    base = pd.DataFrame({"item": "x", "entity": ["A", "A", "B"],
                         "period": ["2024-03-31", "2024-06-30", "2024-03-31"],
                         "value": [1.0, 2.0, 3.0]})
    engine.load_data(base)
    change = pd.DataFrame({"item": "x", "entity": ["A", "A", "B"],
                           "period": ["2024-03-31", "2024-06-30", "2024-06-30"],
                           "value": [1.0, float("nan"), 4.0]})
    engine.load_data(change)
    got = engine.records("x")
    assert [(r.entity, r.period.strftime("%Y-%m-%d"), r.value) for r in got.itertuples()] == [
        ("A", "2024-03-31", 1.0), ("B", "2024-03-31", 3.0), ("B", "2024-06-30", 4.0)]


@pytest.mark.parametrize("dates, freq", [
    (["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-08"], "daily"),
    (["2024-01-05", "2024-01-12", "2024-01-19"], "weekly"),
    (["2024-01-31", "2024-02-29", "2024-03-31"], "monthly"),
    (["2024-03-31", "2024-06-30", "2024-09-30"], "quarterly"),
    (["2022-12-31", "2023-12-31", "2024-12-31"], "annual"),
    (["2024-01-31"], None),
    (["2024-01-01", "2024-03-15"], None),
])
def test_infer_frequency(dates, freq):
    assert infer_frequency(pd.to_datetime(dates).to_numpy().astype("datetime64[D]")) == freq


def test_read_formulas_csv_and_yaml(tmp_path):
    csv = tmp_path / "f.csv"
    csv.write_text('name,expression,description\ngm,"(revenue - cogs) / revenue",margin\n')
    assert read_formulas(csv) == [{"name": "gm", "expression": "(revenue - cogs) / revenue",
                                   "description": "margin", "row": 2}]
    yml = tmp_path / "f.yaml"
    yml.write_text("formulas:\n  gm: (revenue - cogs) / revenue\n"
                   "  roe:\n    expression: ttm(net_income) / avg_balance(equity, 4)\n"
                   "    description: return on equity\n")
    rows = read_formulas(yml)
    # no description: None, so that a save keeps the stored one
    assert [(r["name"], r["description"]) for r in rows] == [("gm", None),
                                                              ("roe", "return on equity")]
    dup = tmp_path / "d.csv"
    dup.write_text("name,expression\na,x\nb,y\na,z\n")
    with pytest.raises(DataError) as info:
        read_formulas(dup)
    assert info.value.row == 4 and "defined twice (first on row 2)" in str(info.value)


_values = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 0.1,
     1 / 3, 123456789.123456789])
_dates = st.dates(min_value=pd.Timestamp("1990-01-01").date(),
                  max_value=pd.Timestamp("2029-12-31").date()).filter(lambda d: d.weekday() < 5)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "x'); DROP TABLE tc_data;--"]), _dates,
                          _values), min_size=1, max_size=40,
                unique_by=lambda t: (t[0], t[1])))
def test_values_round_trip_bitwise(engine, points):
    """Storage round trip: what goes in comes back bit for bit, on every database
    (but -0.0, stored as 0.0 everywhere because SQLite and MariaDB drop the sign)."""
    df = pd.DataFrame({"item": "v", "entity": [p[0] for p in points],
                       "period": [p[1].isoformat() for p in points],
                       "value": [p[2] for p in points]})
    engine.load_data(df, frequencies={"v": "daily"})
    got = engine.records("v")
    want = {(p[0], pd.Timestamp(p[1])): p[2] for p in points}
    have = {(r.entity, r.period): r.value for r in got.itertuples()}
    assert set(have) >= set(want)
    for k, v in want.items():
        assert math.copysign(1, have[k]) == math.copysign(1, v + 0.0) and have[k] == v, k


# -- calendars, new entities, deleting data (issue 11: defects 4, 8, 10) --------------------

import datetime as dt  # noqa: E402

import numpy as np  # noqa: E402

from tracecalc.errors import DependentsError, NotFoundError  # noqa: E402

QUARTERS = ["2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31", "2025-03-31"]


def _points(item, entities, periods, start=1.0):
    rows = [(item, e, p, start + 10 * i + j) for i, e in enumerate(entities)
            for j, p in enumerate(periods)]
    return pd.DataFrame(rows, columns=["item", "entity", "period", "value"])


def _base(engine):
    """Quarterly revenue and cogs of A, B, C, and formulas of every kind of reach."""
    data = pd.concat([_points("revenue", ["A", "B", "C"], QUARTERS, 100.0),
                      _points("cogs", ["A", "B", "C"], QUARTERS, 30.0)], ignore_index=True)
    engine.load_data(data)
    engine.set_formulas([
        {"name": "gm", "expression": "(revenue - cogs) / revenue"},
        {"name": "g", "expression": "growth(revenue)"},
        {"name": "prev", "expression": "lag(revenue)"},
        {"name": "rk", "expression": "cs_rank(revenue)"},
        {"name": "filled", "expression": "coalesce(cogs, 0)"},
        {"name": "g2", "expression": "prev + gm"},
    ])
    engine.recalc()
    return data


def _expected(data: pd.DataFrame, entities) -> dict[str, pd.Series]:
    """The formulas of ``_base`` in plain pandas: panels over the quarterly calendar (every
    quarter end from the first period with data to the last) and every entity."""
    days = pd.to_datetime(data["period"])
    cal = [d for d in pd.date_range(days.min(), days.max(), freq="D")
           if d.is_month_end and d.month % 3 == 0]
    d = data.assign(period=pd.to_datetime(data["period"]))

    def panel(item):
        p = d[d["item"] == item].pivot(index="period", columns="entity", values="value")
        return p.reindex(index=cal, columns=sorted(entities))

    rev, cogs = panel("revenue"), panel("cogs")
    base = rev.shift(1)
    out = {"gm": (rev - cogs) / rev, "g": (rev / base - 1).where(base > 0),
           "prev": base, "rk": rev.rank(axis=1).div(rev.count(axis=1), axis=0),
           "filled": cogs.fillna(0.0)}
    out["g2"] = out["prev"] + out["gm"]
    return {k: v.stack().dropna() for k, v in out.items()}


def _check_against_reference(engine, data):
    want = _expected(data, engine.entities()["code"])
    for name, series in want.items():
        got = engine.records(name).set_index(["entity", "period"])["value"].sort_index()
        series = series.swaplevel().sort_index()
        assert len(got) == len(series), name
        np.testing.assert_allclose(got.to_numpy(), series.to_numpy(), rtol=1e-12,
                                   err_msg=name)
        assert list(got.index) == list(series.index), name


# -- calendars (issue 13): a fixed grid per frequency, never the dates loaded ---------------

def test_an_off_calendar_date_is_refused_with_the_nearest_dates(engine):
    _base(engine)
    before = engine.status()
    with pytest.raises(DataError) as info:
        engine.load_data(pd.DataFrame({"item": ["revenue", "revenue"], "entity": ["A", "CHIP"],
                                       "period": ["2025-03-31", "2025-01-15"],
                                       "value": [1.0, 99.0]}))
    assert info.value.row == 3
    assert str(info.value) == (
        "data frame, row 3: period 2025-01-15 of item 'revenue' is not on the quarterly "
        "(Mar 31, Jun 30, Sep 30 and Dec 31) calendar (nearest: 2024-12-31 and 2025-03-31); "
        "fix the date, or load with snapping (--snap, snap=True) to move it to 2024-12-31, "
        "the nearest quarter end (a tie goes to the earlier)")
    assert engine.status() == before and "CHIP" not in set(engine.entities()["code"])


def test_history_before_the_calendar_and_the_next_quarter(engine):
    _base(engine)
    res = engine.load_data(_points("revenue", ["A"], ["2023-09-30"]))
    assert res.new_periods == {"quarterly": (dt.date(2023, 9, 30), dt.date(2023, 12, 31))}
    assert res.warnings == ()  # the gap at 2023-12-31 is a missing value, not a warning
    res = engine.load_data(_points("revenue", ["A", "B"], ["2025-06-30"]))
    assert res.new_periods == {"quarterly": (dt.date(2025, 6, 30),)}
    res = engine.load_data(_points("revenue", ["A"], ["2025-06-30"], 5.0))  # nothing new
    assert res.new_periods == {}


def test_a_holiday_inside_the_daily_calendar_is_a_missing_value(engine):
    """Both entities lack 2024-06-19 (a weekday): it stays in the calendar, so lag steps
    from 06-18 to a missing 06-19, and 06-20's lag is missing, not 06-18's value."""
    days = [d for d in pd.bdate_range("2024-06-03", "2024-06-28").strftime("%Y-%m-%d")
            if d != "2024-06-19"]
    res = engine.load_data(_points("close", ["A", "B"], days))
    assert dt.date(2024, 6, 19) in res.new_periods["daily"]
    assert len(res.new_periods["daily"]) == 20
    engine.set_formula("prev", "lag(close)")
    engine.recalc()
    got = engine.records("prev", entities="A").set_index("period")["value"]
    assert pd.Timestamp("2024-06-19") in got.index and pd.Timestamp("2024-06-20") not in got.index
    assert got[pd.Timestamp("2024-06-21")] == 1.0 + days.index("2024-06-20")


def test_a_weekend_in_daily_data_is_refused_or_snapped_to_the_friday(engine):
    days = pd.bdate_range("2024-06-03", "2024-06-27").strftime("%Y-%m-%d").tolist()
    engine.load_data(_points("close", ["A", "B"], days))
    sat = pd.DataFrame({"item": ["close"], "entity": ["A"], "period": ["2024-06-29"],
                        "value": [7.0]})
    with pytest.raises(DataError, match=r"period 2024-06-29 of item 'close' is not on the "
                       r"daily \(Monday to Friday\) calendar \(nearest: 2024-06-28 and "
                       r"2024-07-01\); .* to move it to 2024-06-28, the calendar day on or "
                       r"before it"):
        engine.load_data(sat)
    res = engine.load_data(sat, snap=True)
    assert res.snapped == 1 and res.new_periods == {"daily": (dt.date(2024, 6, 28),)}
    got = engine.records("close", entities="A")
    assert got["period"].max() == pd.Timestamp("2024-06-28") and got["value"].iloc[-1] == 7.0
    assert engine.history_data("close", "A", "2024-06-28")[0]["loaded_as"] == "2024-06-29"


def test_fiscal_quarters_snap_to_the_calendar_quarter_and_keep_their_date(engine):
    """Calendarization: a fiscal quarter ending Jan 31 belongs to the quarter ending Dec 31
    (nearer), one ending Feb 29 to Mar 31; two dates snapping together are refused."""
    fiscal = pd.DataFrame({"item": "sales", "entity": "WMT",
                           "period": ["2023-10-31", "2024-01-31", "2024-04-30", "2024-07-31"],
                           "value": [1.0, 2.0, 3.0, 4.0]})
    res = engine.load_data(fiscal, frequencies={"sales": "quarterly"}, snap=True)
    assert res.snapped == 4
    got = engine.records("sales")
    assert got["period"].dt.strftime("%Y-%m-%d").tolist() == [
        "2023-09-30", "2023-12-31", "2024-03-31", "2024-06-30"]
    assert engine.history_data("sales", "WMT", "2023-12-31") == [
        {"known_at": "2023-12-31", "value": 2.0, "latest": True, "loaded_as": "2024-01-31"}]
    clash = pd.DataFrame({"item": "sales", "entity": "X", "period": ["2024-02-20",
                                                                     "2024-02-29"],
                          "value": [1.0, 2.0]})
    with pytest.raises(DataError) as info:
        engine.load_data(clash, snap=True)
    assert info.value.row == 3 and ("snapping moves item 'sales' period 2024-02-29 onto "
                                    "2024-03-31, where row 2 (period 2024-02-20) already is "
                                    "for the same entity") in str(info.value)


@pytest.mark.parametrize("freq, days, want", [
    ("daily", ["2024-06-28", "2024-06-29", "2024-06-30", "2024-07-01"],
     ["2024-06-28", "2024-06-28", "2024-06-28", "2024-07-01"]),
    ("weekly", ["2024-01-01", "2024-01-05", "2024-01-06", "2024-01-07"],
     ["2024-01-05", "2024-01-05", "2024-01-05", "2024-01-05"]),
    ("monthly", ["2024-02-01", "2024-02-29", "2023-02-15"],
     ["2024-02-29", "2024-02-29", "2023-02-28"]),
    # Feb 14 2024 is 45 days after Dec 31 and 46 before Mar 31; Feb 15 is 46 and 45
    ("quarterly", ["2024-02-14", "2024-02-15", "2024-12-28", "2024-03-31", "1960-02-01"],
     ["2023-12-31", "2024-03-31", "2024-12-31", "2024-03-31", "1959-12-31"]),
    # 2023-07-02 is 183 days after 2022-12-31 and 182 before 2023-12-31: a tie needs 2 July
    # of a leap year: 2024-07-01 is 183 days from either end
    ("annual", ["2024-07-01", "2024-07-02", "2025-01-31", "2023-06-30"],
     ["2023-12-31", "2024-12-31", "2024-12-31", "2022-12-31"]),
])
def test_the_snapping_rule(freq, days, want):
    from tracecalc.storage import calendars

    got = calendars.snap(freq, np.array(days, dtype="datetime64[D]"))
    assert [str(d) for d in got] == want
    assert calendars.on_calendar(freq, got).all()


def test_an_exchange_calendar_leaves_its_holidays_out(engine):
    engine.set_daily_calendar("xnys")
    assert engine.daily_calendar == "XNYS"
    days = ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05", "2024-07-08"]
    res = engine.load_data(_points("close", ["A"], days))
    assert res.new_periods["daily"] == tuple(dt.date.fromisoformat(d) for d in days)
    with pytest.raises(DataError, match=r"2024-07-04 of item 'close' is not on the daily "
                       r"\(XNYS sessions\) calendar \(nearest: 2024-07-03 and 2024-07-05\)"):
        engine.load_data(_points("close", ["B"], ["2024-07-04"]))
    engine.set_daily_calendar("weekdays")  # every XNYS session is a weekday: allowed
    engine.load_data(_points("close", ["B"], ["2024-07-04"]))
    with pytest.raises(DataError, match="item 'close' has data at 2024-07-04, which is not an "
                       "XNYS session"):
        engine.set_daily_calendar("XNYS")
    assert engine.daily_calendar == "weekdays"
    with pytest.raises(DataError, match="unknown daily calendar 'XNYZ'.*XNYS"):
        engine.set_daily_calendar("XNYZ")


def test_new_entities_are_listed_or_refused(engine):
    _base(engine)
    before = engine.status()
    new = _points("revenue", ["ACME", "B", "ZED"], ["2025-06-30"])
    with pytest.raises(DataError) as info:
        engine.load_data(new, allow_new_entities=False)
    assert info.value.row == 2
    assert "unknown entity 'ACME' (2 new entities in the file: ACME, ZED)" in str(info.value)
    assert "load-entities" in str(info.value) and "--no-new-entities" in str(info.value)
    assert engine.status() == before  # nothing written, not even the known entity's point
    engine.load_entities(pd.DataFrame({"code": ["ACME", "ZED"]}))
    res = engine.load_data(new, allow_new_entities=False)
    assert res.new_entity_codes == () and res.new_entities == 0
    res = engine.load_data(_points("cash", ["Q2", "Q1", "B"], QUARTERS))
    assert res.new_entity_codes == ("Q1", "Q2") and res.new_items == ("cash",)


def test_load_progress_reports_phases_and_rows(engine, tmp_path):
    path = tmp_path / "d.csv"
    data = pd.concat([_points("revenue", ["A", "B"], QUARTERS),
                      _points("cogs", ["A"], QUARTERS)])
    data.to_csv(path, index=False)
    calls = []
    engine.load_data(path, progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 0, f"reading {path}")
    assert calls[1] == (0, 0, "checking against the catalog")
    assert calls[2:] == [(0, 15, "writing cogs"), (5, 15, "writing revenue"),
                         (15, 15, "updating the calendars"), (15, 15, "marking dependents stale")]


def test_delete_a_point_an_entity_and_a_period(engine):
    data = _base(engine)
    _check_against_reference(engine, data)
    key = ["item", "entity", "period"]

    res = engine.delete_data("revenue", "B", "2024-09-30")
    assert (res.points, res.entities, res.periods) == (1, ("B",), (dt.date(2024, 9, 30),))
    assert not res.item_deleted and res.removed_periods == ()
    assert set(res.marked_stale) == {"gm", "g", "prev", "rk", "g2"}
    states = engine.status()["states"]
    assert states["rk"] == "stale" and states["gm"] == "partial"  # cross-sectional: all
    assert engine.status()["stale_entities"]["gm"] == 1
    data = data[~((data["item"] == "revenue") & (data["entity"] == "B")
                  & (data["period"] == "2024-09-30"))]
    engine.recalc()
    _check_against_reference(engine, data)

    res = engine.delete_data("cogs", entity="C")
    assert (res.points, res.entities) == (5, ("C",))
    assert set(res.marked_stale) == {"gm", "filled", "g2"}
    data = data[~((data["item"] == "cogs") & (data["entity"] == "C"))]
    engine.recalc()
    _check_against_reference(engine, data)

    res = engine.delete_data("revenue", period=["2024-06-30", dt.date(2024, 3, 31)])
    assert res.points == 6 and res.entities == ("A", "B", "C")
    assert res.removed_periods == ()  # cogs still has data there
    data = data[~((data["item"] == "revenue") & data["period"].isin(["2024-03-31",
                                                                     "2024-06-30"]))]
    engine.recalc()
    _check_against_reference(engine, data)
    assert engine.status()["data_points"] == len(data.drop_duplicates(key))


def test_delete_a_whole_item(engine):
    data = _base(engine)
    with pytest.raises(DependentsError, match="cannot delete 'cogs': used by filled, gm"):
        engine.delete_data("cogs")
    engine.load_data(_points("cash", ["A", "B"], [*QUARTERS, "2025-06-30"]))
    engine.recalc()
    res = engine.delete_data("cash")
    assert res.item_deleted and res.points == 12
    assert res.removed_periods == (dt.date(2025, 6, 30),)  # only cash had data there
    assert set(res.marked_stale) == {"g", "prev", "g2"}  # they look along time
    assert "cash" not in engine.items()
    engine.recalc()
    _check_against_reference(engine, data)
    assert engine.records("prev")["period"].max() == pd.Timestamp("2025-03-31")


def test_delete_data_is_all_or_nothing(engine):
    _base(engine)
    before = engine.status()
    records = engine.records("gm")
    cases = [
        (("revenu",), NotFoundError, "no data item named 'revenu'. Did you mean 'revenue'?"),
        (("gm",), NotFoundError, "'gm' is a formula"),
        (("revenue", ["A", "BB"]), NotFoundError,
         "no entity named 'BB'. Did you mean 'B'?"),
        (("revenue", ["A"], ["2024-03-31", "2024-04-30"]), NotFoundError,
         "no quarterly period with revenue data for A named '2024-04-30'. Did you mean "
         "'2024-03-31' or '2024-06-30'?"),
        (("revenue", None, "2024-13-01"), DataError, "bad period '2024-13-01'"),
    ]
    for args, kind, message in cases:
        with pytest.raises(kind) as info:
            engine.delete_data(*args)
        assert message in str(info.value)
    engine.load_entities(pd.DataFrame({"code": ["NEW"]}))
    with pytest.raises(NotFoundError, match="no entity with revenue data named 'NEW'"):
        engine.delete_data("revenue", ["A", "NEW"])
    assert engine.status() == {**before, "entities": 4}
    pd.testing.assert_frame_equal(engine.records("gm"), records)


def test_a_mistaken_date_is_undone_completely(engine):
    data = _base(engine)
    lagged, growth = engine.records("prev"), engine.records("g")
    engine.load_data(pd.DataFrame({"item": ["revenue"], "entity": ["CHIP"],
                                   "period": ["2025-09-30"], "value": [99.0]}))
    engine.recalc()
    shifted = engine.records("prev")
    assert (shifted["period"] == pd.Timestamp("2025-06-30")).sum() == 3  # A, B, C lag into it
    assert (engine.records("filled")["period"] == pd.Timestamp("2025-09-30")).sum() == 4

    res = engine.delete_data("revenue", "CHIP", "2025-09-30")
    assert res.removed_periods == (dt.date(2025, 6, 30), dt.date(2025, 9, 30))
    assert {"prev", "g", "g2"} <= set(res.marked_stale)
    # records at the lost periods are gone at once, even for formulas that stay fresh
    assert (engine.records("filled")["period"] > pd.Timestamp("2025-03-31")).sum() == 0
    engine.recalc()
    pd.testing.assert_frame_equal(engine.records("prev"), lagged)
    pd.testing.assert_frame_equal(engine.records("g"), growth)
    _check_against_reference(engine, data)
    full = engine.recalc(full=True)
    assert full.records_written == 0  # what the increments left equals a full run


def test_an_empty_value_also_takes_a_date_out_of_the_calendar(engine):
    _base(engine)
    lagged = engine.records("prev")
    engine.load_data(pd.DataFrame({"item": ["revenue"], "entity": ["A"],
                                   "period": ["2025-06-30"], "value": [99.0]}))
    engine.recalc()
    res = engine.load_data(pd.DataFrame({"item": ["revenue"], "entity": ["A"],
                                         "period": ["2025-06-30"], "value": [float("nan")]}))
    assert res.removed_periods == {"quarterly": (dt.date(2025, 6, 30),)}
    assert res.warnings == ()
    engine.recalc()
    pd.testing.assert_frame_equal(engine.records("prev"), lagged)


def test_the_last_points_of_a_frequency_take_its_calendar_with_them(engine):
    days = pd.bdate_range("2024-06-03", "2024-06-07").strftime("%Y-%m-%d").tolist()
    engine.load_data(_points("close", ["A"], days))
    res = engine.delete_data("close", "A")
    assert res.removed_periods == tuple(dt.date.fromisoformat(d) for d in days)
    engine.load_data(_points("close", ["A"], ["2025-01-06"]))  # a fresh calendar, not a gap
    res = engine.load_data(_points("close", ["A"], ["2025-01-08"]))
    assert res.new_periods == {"daily": (dt.date(2025, 1, 7), dt.date(2025, 1, 8))}
