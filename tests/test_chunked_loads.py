"""Loading a file a chunk of rows at a time gives what loading it whole gives, refuses the
same bad rows, and an unchanged file reloaded writes nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_database
from tracecalc.engine import Engine
from tracecalc.errors import DataError
from tracecalc.storage import bulk
from tracecalc.storage.files import read_data

HEADER = "item,entity,period,value\n"
QUARTERS = ["2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31"]


def _file(tmp_path, n_ents: int = 7, name: str = "d.csv"):
    """Quarterly revenue and cogs for E0..E{n-1}, in period order (not the key's), with an
    empty value, a value with spaces around it and a negative zero."""
    rows = []
    for q in QUARTERS:
        for i in range(n_ents):
            for item, base in (("revenue", 100), ("cogs", 40)):
                rows.append(f"{item},E{i},{q},{base + i + QUARTERS.index(q) / 4}")
    rows[3] = rows[3].rsplit(",", 1)[0] + ","
    rows[5] = rows[5].rsplit(",", 1)[0] + ", 2.5 "
    rows[8] = rows[8].rsplit(",", 1)[0] + ",-0.0"
    path = tmp_path / name
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


def _state(eng: Engine) -> dict:
    return {"export": eng.export(), "items": eng.items(), "entities": eng.entities(),
            "status": eng.status()}


@pytest.mark.parametrize("chunk", [1, 3, 10, 1000])
def test_read_in_chunks_equals_read_whole(tmp_path, chunk):
    path = _file(tmp_path)
    whole, parts = read_data(path), read_data(path, chunk_rows=chunk)
    for col in ("items", "entities"):
        assert getattr(parts, col).tolist() == getattr(whole, col).tolist()
    assert np.array_equal(parts.periods, whole.periods)
    assert np.array_equal(parts.values, whole.values, equal_nan=True)
    # against the file itself, read by plain pandas
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert parts.items.tolist() == df["item"].tolist()
    assert parts.periods.astype(str).tolist() == df["period"].tolist()
    expect = [float(v) if v.strip() else np.nan for v in df["value"]]
    assert np.array_equal(parts.values, np.array(expect), equal_nan=True)


def test_chunked_load_equals_whole_load(db_url, tmp_path):
    first = _file(tmp_path, 5, "first.csv")
    path = _file(tmp_path, 7)  # two new entities, changed values, deletions, -0.0
    other, cleanup = make_database("sqlite", tmp_path / "whole")
    (tmp_path / "whole").mkdir()
    calls = []
    with Engine(db_url, user="t") as eng, Engine(other, user="t") as ref:
        for e in (eng, ref):
            e.load_data(first)
            e.set_formulas([{"name": "gm", "expression": "(revenue - cogs) / revenue"},
                            {"name": "g", "expression": "growth(revenue)"},
                            {"name": "rk", "expression": "cs_rank(revenue)"}])
            e.recalc()
        got = eng.load_data(path, chunk_rows=5, progress=lambda *a: calls.append(a))
        want = ref.load_data(path)
        assert got == want and set(got.marked_stale) == {"g", "gm", "rk"}
        eng.recalc()
        ref.recalc()
        a, b = _state(eng), _state(ref)
        pd.testing.assert_frame_equal(a.pop("export"), b.pop("export"))
        pd.testing.assert_frame_equal(a.pop("entities"), b.pop("entities"))
        assert a == b
    cleanup()
    reading = [c for c in calls if c[2] == f"reading {path}" and c[1]]
    assert [c[0] for c in reading] == list(range(5, 56, 5)) + [56]
    assert all(c[1] == 56 for c in reading)


def test_a_bad_row_in_a_later_chunk_writes_nothing(engine, tmp_path):
    good = _file(tmp_path)
    engine.load_data(good)
    before = engine.export()
    lines = good.read_text().splitlines()
    lines[40] = lines[40].rsplit(",", 1)[0] + ",oops"  # row 41
    lines[2] = lines[2].rsplit(",", 1)[0] + ",999"  # a change in the first chunk
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        engine.load_data(bad, chunk_rows=4)
    assert info.value.row == 41 and "bad value 'oops'" in str(info.value)
    pd.testing.assert_frame_equal(engine.export(), before)


def test_duplicates_and_frequencies_across_chunks(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + "x,A,2024-03-31,1\nx,B,2024-03-31,2\nx,C,2024-03-31,3\n"
                    "x,A,2024-03-31,4\n")
    with pytest.raises(DataError, match=r"duplicate key \(item 'x', entity 'A', period "
                                         r"2024-03-31\) also on row 5") as info:
        read_data(path, chunk_rows=2)
    assert info.value.row == 2
    path.write_text("item,entity,period,value,frequency\nx,A,2024-03-31,1,quarterly\n"
                    "x,B,2024-03-31,2,\nx,C,2024-03-31,3,annual\n")
    with pytest.raises(DataError, match="item 'x' declared both quarterly and annual") as info:
        read_data(path, chunk_rows=1)
    assert info.value.row == 4


def test_off_calendar_row_in_a_later_chunk_is_named(engine, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + "".join(f"x,E{i},2024-03-31,{i}\n" for i in range(6))
                    + "x,E1,2024-06-30,1\nx,E2,2024-05-15,2\n")
    with pytest.raises(DataError, match=r"period 2024-05-15 of item 'x' is not on the "
                       r"quarterly .*nearest: 2024-03-31 and 2024-06-30") as info:
        engine.load_data(path, frequencies={"x": "quarterly"}, chunk_rows=3)
    assert info.value.row == 9
    assert engine.items() == {}


class _Spy:
    """Counts the rows the bulk writer is asked to write to tc_data."""

    def __init__(self, monkeypatch):
        self.rows = 0
        for name in ("insert_rows", "update_values", "delete_keys"):
            real = getattr(bulk.BulkWriter, name)

            def spy(writer, conn, table, *a, _real=real, **kw):
                if table.name == "tc_data":
                    self.rows += len(a[-1])
                return _real(writer, conn, table, *a, **kw)

            monkeypatch.setattr(bulk.BulkWriter, name, spy)


def test_an_unchanged_reload_writes_nothing(engine, tmp_path, monkeypatch):
    path = _file(tmp_path)
    first = engine.load_data(path)
    engine.set_formulas([{"name": "gm", "expression": "(revenue - cogs) / revenue"}])
    engine.recalc()
    spy = _Spy(monkeypatch)
    again = engine.load_data(path, chunk_rows=6)
    assert spy.rows == 0
    assert again.marked_stale == () and again.new_items == () and again.new_entities == 0
    assert again.rows == first.rows == 56
    assert engine.status()["stale"] == [] and engine.status()["states"] == {}
    # one changed value: one row written, and its entity's users go stale
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",1234.5"
    path.write_text("\n".join(lines) + "\n")
    res = engine.load_data(path, chunk_rows=6)
    assert spy.rows == 1 and res.marked_stale == ("gm",)
    got = engine.records("revenue")
    assert got[(got.entity == "E0") & (got.period == "2024-03-31")].value.tolist() == [1234.5]


def test_unchanged_reload_writes_nothing_on_sqlite_triggers(tmp_path):
    """The same, seen by the database itself: a trigger counts every change to tc_data."""
    path = _file(tmp_path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with Engine(url, user="t") as eng:
        eng.load_data(path)
        with eng.store.engine.begin() as c:
            c.exec_driver_sql("CREATE TABLE seen (n INTEGER)")
            for what in ("INSERT", "UPDATE", "DELETE"):
                c.exec_driver_sql(f"CREATE TRIGGER seen_{what} AFTER {what} ON tc_data "
                                  "BEGIN INSERT INTO seen VALUES (1); END")
        eng.load_data(path, chunk_rows=9)
        eng.load_data(path)
        with eng.store.engine.begin() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM seen").scalar() == 0


def test_bulk_reads_give_back_every_double_and_date(engine):
    """The per-database read paths (SQLite tuples, PostgreSQL server-packed bytea, MariaDB
    server-written text) give back the very bits written, in the box asked for."""
    rng = np.random.default_rng(3)
    n = 3000
    vals = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64).view(np.float64)
    vals = np.where(np.isfinite(vals), vals, 1.5)
    vals[:8] = [5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1,
                0.30000000000000004, 1 / 3, 0.0]
    eids = np.repeat(np.arange(1, 31), n // 30)
    days = np.tile(np.array(["0001-01-01", "0999-12-31", "1582-10-04", "1582-10-15",
                             "1970-01-01", "2024-02-29", "9999-12-31"], "datetime64[D]"),
                   n // 7 + 1)[:n]
    days = days + ((np.arange(n) // 7 * 3) % 1000).astype("timedelta64[D]")
    days = np.minimum(days, np.datetime64("9999-12-31"))
    key = eids.astype(np.int64) * 10**7 + (days - np.datetime64("0001-01-01")).astype(np.int64)
    keep = np.unique(key, return_index=True)[1]
    eids, days, vals = eids[keep], days[keep], vals[keep]
    store = engine.store
    with store.transaction() as conn:
        store.insert_data(conn, 7, eids, days, vals)
    with store.transaction(write=False) as conn:
        e, p, v = store.read_item(conn, 7)
        box = store.read_item(conn, 7, np.array([3, 4, 5]),
                              (np.datetime64("1000-01-01"), np.datetime64("2024-12-31")))
    o = np.lexsort((p, e))
    assert np.array_equal(e[o], eids) and np.array_equal(p[o], days)
    assert np.array_equal(v[o].view(np.int64), (vals + 0.0).view(np.int64))
    inside = np.isin(eids, [3, 4, 5]) & (days >= np.datetime64("1000-01-01")) & \
        (days <= np.datetime64("2024-12-31"))
    ob = np.lexsort((box[1], box[0]))
    assert inside.sum() > 10
    assert np.array_equal(box[0][ob], eids[inside]) and np.array_equal(box[1][ob], days[inside])
    assert np.array_equal(box[2][ob].view(np.int64), (vals[inside] + 0.0).view(np.int64))


def test_progress_moves_inside_a_large_item(engine, tmp_path, monkeypatch):
    from tracecalc.storage import loading

    monkeypatch.setattr(loading, "WRITE_STEP", 10)
    path = _file(tmp_path)  # 28 rows of each item, one cogs value empty
    calls = []
    engine.load_data(path, progress=lambda *a: calls.append(a))
    writing = [c for c in calls if c[2].startswith("writing")]
    assert writing == [(0, 56, "writing cogs"), (10, 56, "writing cogs"),
                       (20, 56, "writing cogs"), (27, 56, "writing cogs"),
                       (28, 56, "writing revenue"), (38, 56, "writing revenue"),
                       (48, 56, "writing revenue"), (56, 56, "writing revenue")]
    assert len(engine.records("revenue")) == 28 and len(engine.records("cogs")) == 27
