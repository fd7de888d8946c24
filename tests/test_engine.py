"""The Engine facade on SQLite, PostgreSQL and MariaDB (the ``engine`` fixture runs each)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE
from tracecalc.errors import (
    ArityError,
    CycleError,
    DependentsError,
    FormulaSyntaxError,
    FrequencyError,
    InvalidNameError,
    NotFoundError,
    UnknownReferenceError,
    ValidationError,
)
from tracecalc.storage.files import read_formulas
from tracecalc.storage.schema import SCHEMA_VERSION

QUARTERS = ["2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31"]


def small_data() -> pd.DataFrame:
    rows = []
    rev = {"A": [10, 12, 14, 16], "B": [5, 5, 0, 7]}
    cogs = {"A": [4, 5, 6, 7], "B": [1, 2, 3, None]}
    for item, table in (("revenue", rev), ("cogs", cogs)):
        for ent, vals in table.items():
            for q, v in zip(QUARTERS, vals):
                rows.append((item, ent, q, "" if v is None else str(v)))
    return pd.DataFrame(rows, columns=["item", "entity", "period", "value"])


def values(eng, name) -> dict:
    df = eng.records(name)
    return {(r.entity, r.period.strftime("%Y-%m-%d")): r.value for r in df.itertuples()}


def assert_cycle(path, members):
    """``path`` is the cycle of ``members`` (in depends-on order), from any starting node."""
    assert path[0] == path[-1]
    body = path[:-1]
    assert sorted(body) == sorted(members)
    i = body.index(members[0])
    assert body[i:] + body[:i] == list(members)


def test_small_model_end_to_end(engine):
    engine.load_data(small_data())
    engine.set_formula("gm", "(revenue - cogs) / revenue")
    engine.set_formula("gm2", "ts_sum(gm, 2) + cs_rank(revenue)")
    rep = engine.recalc()
    assert [f.name for f in rep.formulas] == ["gm", "gm2"]
    assert rep.records_written == 10
    gm = values(engine, "gm")
    assert gm == {
        ("A", "2024-03-31"): 0.6, ("A", "2024-06-30"): 7 / 12, ("A", "2024-09-30"): 8 / 14,
        ("A", "2024-12-31"): 9 / 16, ("B", "2024-03-31"): 0.8, ("B", "2024-06-30"): 0.6,
    }  # B: revenue 0 -> NaN; cogs missing -> NaN; neither stored
    gm2 = values(engine, "gm2")
    assert gm2[("A", "2024-06-30")] == pytest.approx(0.6 + 7 / 12 + 1.0)
    assert gm2[("B", "2024-06-30")] == pytest.approx(0.8 + 0.6 + 0.5)
    assert len(gm2) == 4
    st = engine.status()
    assert st["stale"] == [] and st["records"] == 10 and st["entities"] == 2


def test_sample_data_matches_pandas(engine):
    engine.load_entities(SAMPLE / "entities.csv")
    engine.load_data(SAMPLE / "data.csv")
    engine.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    rep = engine.recalc(full=True)
    assert rep.formulas_computed == len(engine.formulas()) >= 40

    data = pd.read_csv(SAMPLE / "data.csv", parse_dates=["period"])
    wide = data.pivot_table(index=["entity", "period"], columns="item", values="value")
    wide = wide.reindex(pd.MultiIndex.from_product(
        [sorted(data.entity.unique()), sorted(data.period.unique())], names=["entity", "period"]))

    def check(name, expected: pd.Series):
        expected = expected.replace([np.inf, -np.inf], np.nan).dropna()
        got = engine.records(name).set_index(["entity", "period"])["value"]
        assert len(got) == len(expected), name
        pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(),
                                       check_names=False, check_index_type=False, rtol=1e-12)

    rev = wide["revenue"].where(wide["revenue"] != 0)
    check("gross_margin", (wide["revenue"] - wide["cogs"]) / rev)
    by = wide.groupby(level="entity")
    ttm = by["net_income"].transform(lambda s: s.rolling(4, min_periods=4).sum())
    avg_eq = (wide["equity"] + by["equity"].shift(4)) / 2
    check("roe", ttm / avg_eq.where(avg_eq != 0))
    assert rep.records_written == engine.status()["records"]


def test_cycle_is_refused_with_its_path_and_nothing_changes(engine):
    engine.load_data(small_data())
    engine.set_formula("a", "revenue + 1")
    engine.set_formula("b", "a * 2")
    engine.set_formula("c", "b - cogs")
    before = (engine.formula("a"), engine.history("a"), engine.dependencies("a"))
    with pytest.raises(CycleError) as info:
        engine.set_formula("a", "c / 2")
    assert_cycle(info.value.cycle, ["a", "c", "b"])
    assert str(info.value).splitlines()[:2] == [
        "cycle: a -> c -> b -> a",
        "  the reference to 'c' in the new text of 'a' closes it"]
    assert info.value.reference == "c" and info.value.col == 0
    assert (engine.formula("a"), engine.history("a"), engine.dependencies("a")) == before
    with pytest.raises(CycleError) as info:
        engine.set_formula("d", "d + 1")
    assert info.value.cycle == ["d", "d"]
    assert "d" not in set(engine.formulas()["name"])


def test_batch_reports_every_problem_and_saves_nothing(engine):
    engine.load_data(small_data())
    batch = [
        {"name": "ok", "expression": "revenue - cogs"},
        {"name": "typo", "expression": "revenu * 2"},
        {"name": "syntax", "expression": "revenue +"},
        {"name": "loop1", "expression": "loop2 + 1"},
        {"name": "loop2", "expression": "loop1 + 1"},
        {"name": "arity", "expression": "ts_sum(revenue)"},
        {"name": "log", "expression": "revenue"},
        {"name": "revenue", "expression": "cogs"},
    ]
    with pytest.raises(ValidationError) as info:
        engine.set_formulas(batch)
    problems = {p.name: p.message for p in info.value.problems}
    assert set(problems) == {"typo", "syntax", "loop1", "arity", "log", "revenue"}
    assert "Did you mean 'revenue'" in problems["typo"]
    assert "cycle: loop1 -> loop2 -> loop1" in problems["loop1"]
    assert "is a function name" in problems["log"]
    assert "is a data item" in problems["revenue"]
    assert engine.formulas().empty


@pytest.mark.parametrize("expr, cls", [
    ("revenu - cogs", UnknownReferenceError),
    ("revenue -", FormulaSyntaxError),
    ("lag(revenue, 0)", ArityError),
    ("1 + 2", FrequencyError),
])
def test_single_save_raises_the_specific_error(engine, expr, cls):
    engine.load_data(small_data())
    with pytest.raises(cls):
        engine.set_formula("f", expr)
    assert engine.formulas().empty


def test_mixed_frequencies_are_refused(engine):
    engine.load_data(small_data())
    monthly = pd.DataFrame({"item": "price", "entity": "A",
                            "period": ["2024-01-31", "2024-02-29", "2024-03-31"],
                            "value": [1.0, 2.0, 3.0]})
    res = engine.load_data(monthly)
    assert engine.items()["price"] == "monthly" and res.new_items == ("price",)
    with pytest.raises(FrequencyError) as info:
        engine.set_formula("pr", "price / revenue")
    assert "price is monthly" in str(info.value) and "revenue is quarterly" in str(info.value)


def test_invalid_names(engine):
    engine.load_data(small_data())
    for name in ("1abc", "a-b", "x" * 65, "", "_x"):
        with pytest.raises(InvalidNameError):
            engine.set_formula(name, "revenue")
    with pytest.raises(InvalidNameError):
        engine.set_formula("ema", "revenue")


def test_delete(engine):
    engine.load_data(small_data())
    engine.set_formula("gp", "revenue - cogs")
    engine.set_formula("gm", "gp / revenue")
    engine.recalc()
    with pytest.raises(DependentsError) as info:
        engine.delete_formula("gp")
    assert info.value.dependents == ["gm"]
    assert len(engine.records("gp")) == 7
    engine.delete_formula("gm")
    engine.delete_formula("gp")
    assert engine.formulas().empty and engine.status()["records"] == 0
    assert [h["action"] for h in engine.history("gp")] == ["create", "delete"]
    with pytest.raises(NotFoundError) as info:
        engine.delete_formula("gpp")
    assert "no formula named 'gpp'" in str(info.value)


def test_staleness_and_incremental_recalc(engine):
    engine.load_data(small_data())
    engine.set_formulas([{"name": "gp", "expression": "revenue - cogs"},
                         {"name": "gm", "expression": "gp / revenue"},
                         {"name": "rr", "expression": "cs_rank(revenue)"}])
    assert engine.status()["stale"] == ["gp", "gm", "rr"]  # in recalculation order
    engine.recalc()
    assert engine.status()["stale"] == []
    res = engine.set_formula("gp", "revenue - 2 * cogs")
    assert res.marked_stale == ("gp", "gm") and res.version == 2
    rep = engine.recalc()
    assert [f.name for f in rep.formulas] == ["gp", "gm"]
    assert values(engine, "gp")[("A", "2024-03-31")] == 2.0
    load = engine.load_data(pd.DataFrame({"item": ["cogs"], "entity": ["A"],
                                          "period": ["2024-03-31"], "value": [3.0]}))
    assert set(load.marked_stale) == {"gp", "gm"}
    assert [f.name for f in engine.recalc().formulas] == ["gp", "gm"]
    assert values(engine, "gp")[("A", "2024-03-31")] == 4.0
    assert engine.load_data(small_data().iloc[:1]).marked_stale == ()  # same value: no change
    full = engine.recalc(full=True)
    assert full.formulas_computed == 3


def test_unchanged_text_is_not_a_new_version(engine):
    engine.load_data(small_data())
    engine.set_formula("gp", "revenue - cogs", description="gross profit")
    res = engine.set_formula("gp", "  revenue - cogs ", description="gross profit, USD m")
    assert res.version == 1 and res.marked_stale == ()
    assert engine.formula("gp").description == "gross profit, USD m"
    res = engine.set_formula("gp", "-cogs + revenue")
    assert res.version == 2 and res.equivalent_to_previous


def test_a_formula_saved_alone_leaves_its_canonical_form_pending(engine):
    """A new formula saved alone stores no canonical form (no sympy for the interactive
    save); every reader computes it, and the next save that computes forms stores it."""
    engine.load_data(small_data())
    engine.set_formula("gp", "revenue - cogs")
    with engine.store.transaction(write=False) as conn:
        assert [r.name for r in engine.store.pending_canonical(conn)] == ["gp"]
    assert engine.formula("gp").canonical == "-cogs + revenue"
    assert list(engine.formulas()["canonical"]) == ["-cogs + revenue"]
    assert "canonical" not in engine.formulas(canonical=False)
    assert engine.check_formula("gp2", "cogs * -1 + revenue").equivalent_formulas == ("gp",)
    engine.set_formulas({"gm": "gp / revenue", "gp2": "cogs * -1 + revenue"})
    with engine.store.transaction(write=False) as conn:
        assert engine.store.pending_canonical(conn) == []
        assert engine.store.formulas_with_canonical(conn, "-cogs + revenue") == ["gp", "gp2"]


def test_check_formula_saves_nothing(engine):
    engine.load_data(small_data())
    engine.set_formulas([{"name": "gp", "expression": "revenue - cogs"},
                         {"name": "gm", "expression": "gp / revenue"},
                         {"name": "gp2", "expression": "cogs * -1 + revenue"}])
    rep = engine.check_formula("gp", "-cogs + revenue")
    assert rep.is_valid and rep.equivalent_to_current
    assert rep.equivalent_formulas == ("gp2",)
    assert rep.affected == ("gp", "gm")
    assert rep.records_in_scope == 2 * 2 * 4  # two formulas x two entities x four quarters
    bad = engine.check_formula("gp", "gm + 1")
    assert not bad.is_valid and "cycle: gp -> gm -> gp" in bad.problems[0].message
    new = engine.check_formula("x", "gp * 2")
    assert new.is_new and new.affected == ("x",)
    assert engine.formula("gp").version == 1 and "x" not in set(engine.formulas()["name"])


def test_history_records_user_and_texts(engine):
    engine.load_data(small_data())
    engine.set_formula("gp", "revenue - cogs")
    engine.set_formula("gp", "revenue - 2 * cogs")
    h = engine.history("gp")
    assert [(x["version"], x["action"], x["old_expression"], x["new_expression"],
             x["changed_by"]) for x in h] == [
        (1, "create", None, "revenue - cogs", "tester"),
        (2, "update", "revenue - cogs", "revenue - 2 * cogs", "tester")]
    runs = engine.runs()
    assert runs == []
    engine.recalc()
    r = engine.runs()[0]
    assert (r["status"], r["formulas_computed"], r["records_written"], r["run_by"]) == (
        "ok", 1, 7, "tester")


def test_missing_values_are_not_stored(engine):
    engine.load_data(small_data())
    engine.set_formula("inv", "1 / (revenue - 5)")
    engine.recalc()
    got = values(engine, "inv")
    assert ("B", "2024-03-31") not in got and ("A", "2024-03-31") in got
    assert len(got) == 6  # A: 4; B: 5-5 gives x/0 = NaN twice, 0-5 and 7-5 are fine


def test_hostile_entity_codes_are_plain_data(engine):
    code = "x'); DROP TABLE tc_records;--"
    df = pd.DataFrame({"item": ["v", "v"], "entity": [code, 'Robert"; --'],
                       "period": ["2024-03-31", "2024-03-31"], "value": [1.5, 2.5]})
    engine.load_data(df, frequencies={"v": "quarterly"})
    engine.set_formula("w", "v * 2")
    engine.recalc()
    got = values(engine, "w")
    assert got == {(code, "2024-03-31"): 3.0, ('Robert"; --', "2024-03-31"): 5.0}
    assert engine.status()["records"] == 2


def _as_rowid_table(c, name: str, extra: str = "") -> None:
    """Turn a bulk table back into the rowid table schemas 5 and 6 had."""
    cols = {"tc_data": "item_id", "tc_records": "formula_id", "tc_digests": "formula_id"}[name]
    body = ("entity_id INTEGER NOT NULL, digest BIGINT NOT NULL, "
            f"PRIMARY KEY ({cols}, entity_id)" if name == "tc_digests" else
            "entity_id INTEGER NOT NULL, period DATE NOT NULL, value FLOAT NOT NULL, "
            f"PRIMARY KEY ({cols}, entity_id, period)")
    c.exec_driver_sql(f"ALTER TABLE {name} RENAME TO old_{name}")
    c.exec_driver_sql(f"CREATE TABLE {name} ({cols} INTEGER NOT NULL, {body}{extra})")
    c.exec_driver_sql(f"INSERT INTO {name} SELECT * FROM old_{name}")
    c.exec_driver_sql(f"DROP TABLE old_{name}")


def _layout(url: str) -> dict[str, str]:
    from sqlalchemy import create_engine
    eng = create_engine(url)
    with eng.connect() as c:
        rows = c.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE name IN "
                                 "('tc_data', 'tc_records', 'tc_digests')").all()
        version = c.exec_driver_sql("SELECT value FROM tc_meta WHERE key = 'schema'").scalar()
    eng.dispose()
    return {"schema": version} | {n: "without rowid" if "WITHOUT ROWID" in sql.upper()
                                  else "rowid" for n, sql in rows}


@pytest.mark.parametrize("old", ["5", "6"])
def test_an_older_sqlite_database_is_upgraded_and_recalculates_exactly(tmp_path, old):
    """Schema 6 added tc_digests; schema 7 keeps the bulk tables WITHOUT ROWID on SQLite.
    An older database gets both: its rows are copied over (records without digests are
    compared cell by cell), and a full run afterwards writes nothing."""
    from tracecalc.engine import Engine
    from tracecalc.errors import TracecalcError

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Engine(url) as eng:
        eng.load_data(SAMPLE / "data.csv")
        eng.set_formula("m", "revenue - cogs")
        eng.set_formula("n", "m / revenue")
        first = eng.recalc()
        before = {n: eng.records(n) for n in ("m", "n")}
    assert _layout(url) == {"schema": SCHEMA_VERSION, "tc_data": "without rowid",
                            "tc_records": "without rowid", "tc_digests": "without rowid"}
    with Engine(url).store.engine.begin() as c:  # as the old schema left it
        if old == "5":
            c.exec_driver_sql("DROP TABLE tc_digests")
            fk = ", FOREIGN KEY (formula_id) REFERENCES tc_formulas (id) ON DELETE CASCADE"
            _as_rowid_table(c, "tc_data")
            _as_rowid_table(c, "tc_records", fk)
        else:
            for name in ("tc_data", "tc_records", "tc_digests"):
                _as_rowid_table(c, name)
        for name in ("tc_data_versions", "tc_record_versions", "tc_snapped",
                     "tc_entity_attributes"):  # schema 9's and 11's
            c.exec_driver_sql(f"DROP TABLE {name}")
        for table, col in (("tc_formulas", "stale_since"), ("tc_run_formulas", "first_period"),
                           ("tc_run_formulas", "records_read")):  # schema 10's
            c.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {col}")
        c.exec_driver_sql(f"UPDATE tc_meta SET value = '{old}' WHERE key = 'schema'")
    assert _layout(url)["tc_records"] == "rowid"
    with Engine(url) as eng:
        assert _layout(url) == {"schema": SCHEMA_VERSION, "tc_data": "without rowid",
                                "tc_records": "without rowid", "tc_digests": "without rowid"}
        for n in ("m", "n"):
            pd.testing.assert_frame_equal(eng.records(n), before[n])
        again = eng.recalc(full=True)
        assert again.records_written == 0
        assert again.records_unchanged == first.records_written
        eng.set_formula("m", "revenue - 2 * cogs")
        assert eng.recalc().records_written > 0
    with Engine(url).store.engine.begin() as c:
        c.exec_driver_sql("UPDATE tc_meta SET value = '4' WHERE key = 'schema'")
    with pytest.raises(TracecalcError, match=f"schema version 4 is not {SCHEMA_VERSION}, "
                                             "and tracecalc upgrades only schemas 5 and later"):
        Engine(url)


def test_changing_frequency_leaves_no_records_on_the_old_dates(engine):
    engine.load_data(pd.DataFrame({
        "item": ["q"] * 4 + ["m"] * 3, "entity": "A",
        "period": ["2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31",
                   "2024-01-31", "2024-02-29", "2024-03-31"],
        "value": [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0]}),
        frequencies={"q": "quarterly", "m": "monthly"})
    engine.set_formula("f", "q + 1")
    engine.recalc()
    engine.set_formula("f", "m + 1")
    engine.recalc()
    got = engine.records("f")
    assert sorted(got["value"]) == [11.0, 21.0, 31.0]
    assert sorted(got["period"].dt.strftime("%Y-%m-%d")) == [
        "2024-01-31", "2024-02-29", "2024-03-31"]
    assert engine.recalc(full=True).records_written == 0
