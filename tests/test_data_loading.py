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
    (HEADER + "revenue,A,2024-03-31,1,\n", None, "not a valid CSV"),
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
    assert [(r["name"], r["description"]) for r in rows] == [("gm", ""),
                                                              ("roe", "return on equity")]
    dup = tmp_path / "d.csv"
    dup.write_text("name,expression\na,x\nb,y\na,z\n")
    with pytest.raises(DataError) as info:
        read_formulas(dup)
    assert info.value.row == 4 and "defined twice (first on row 2)" in str(info.value)


_values = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 0.1,
     1 / 3, 123456789.123456789])
_dates = st.dates(min_value=pd.Timestamp("1900-01-01").date(),
                  max_value=pd.Timestamp("2199-12-31").date())


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
