"""Names and codes are case-sensitive on every database (issue 11, defect 14).

MariaDB's default collation compares text case-insensitively; SQLite and PostgreSQL do not.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text

from tracecalc.engine import Engine
from tracecalc.storage.schema import NAME_COLUMNS, SCHEMA_VERSION

DATA = pd.DataFrame({
    "item": ["Sales", "Sales", "sales", "sales", "cost", "cost"],
    "entity": ["ACME", "acme", "ACME", "acme", "ACME", "acme"],
    "period": "2024-12-31",
    "value": [100.0, 10.0, 7.0, 3.0, 40.0, 4.0],
})


def test_names_differing_only_in_case_are_distinct(engine):
    res = engine.load_data(DATA, frequencies={"Sales": "annual", "sales": "annual",
                                              "cost": "annual"})
    assert res.new_entities == 2 and sorted(res.new_items) == ["Sales", "cost", "sales"]
    assert engine.items() == {"Sales": "annual", "cost": "annual", "sales": "annual"}
    engine.set_formulas([{"name": "roe", "expression": "Sales - cost"},
                         {"name": "ROE", "expression": "sales * 2"},
                         {"name": "Roe", "expression": "roe + ROE"}])
    assert sorted(engine.formulas()["name"]) == ["ROE", "Roe", "roe"]
    rep = engine.recalc()
    assert rep.status == "ok" and rep.formulas_computed == 3

    def values(name):
        return dict(zip(engine.records(name)["entity"], engine.records(name)["value"]))

    assert values("roe") == {"ACME": 60.0, "acme": 6.0}
    assert values("ROE") == {"ACME": 14.0, "acme": 6.0}
    assert values("Roe") == {"ACME": 74.0, "acme": 12.0}
    assert [r["formula_name"] for r in engine.run_log(rep.run_id)].count("roe") == 1
    engine.set_formula("ROE", "sales * 3")
    assert [h["version"] for h in engine.history("ROE")] == [1, 2]
    assert [h["version"] for h in engine.history("roe")] == [1]
    assert engine.status()["stale"] == ["ROE", "Roe"]  # not roe
    engine.recalc()
    assert values("ROE") == {"ACME": 21.0, "acme": 9.0}
    assert values("roe") == {"ACME": 60.0, "acme": 6.0}
    assert engine.dependencies("Roe") == ["ROE", "roe"]
    engine.load_entities(pd.DataFrame({"code": ["acme"], "name": ["small acme"],
                                       "sector": ["x"]}))
    got = engine.entities().set_index("code")["name"].to_dict()
    assert got["acme"] == "small acme" and pd.isna(got["ACME"])


def _collations(eng: Engine) -> dict[str, str]:
    with eng.store.engine.connect() as c:
        rows = c.execute(text(
            "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE()")).all()
    return {f"{t}.{col}": coll for t, col, coll in rows}


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_a_schema_7_mariadb_database_gets_binary_names(db_url):
    names = [f"{t}.{c}" for t, c in NAME_COLUMNS]
    with Engine(db_url) as eng:
        eng.load_data(DATA[(DATA["item"] == "Sales") & (DATA["entity"] == "ACME")],
                      frequencies={"Sales": "annual"})
        eng.set_formula("roe", "Sales * 2")
        eng.recalc()
        assert {n: _collations(eng)[n] for n in names} == dict.fromkeys(names, "utf8mb4_bin")
        with eng.store.engine.begin() as c:  # as schema 7 left it
            for t, col in NAME_COLUMNS:
                c.exec_driver_sql(f"ALTER TABLE {t} MODIFY `{col}` VARCHAR(64) CHARACTER SET "
                                  "utf8mb4 COLLATE utf8mb4_general_ci NOT NULL")
            for t in ("tc_data_versions", "tc_record_versions", "tc_snapped",
                      "tc_entity_attributes"):  # schema 9's and 11's
                c.exec_driver_sql(f"DROP TABLE {t}")
            for t, col in (("tc_formulas", "stale_since"), ("tc_run_formulas", "first_period"),
                           ("tc_run_formulas", "records_read")):  # schema 10's
                c.exec_driver_sql(f"ALTER TABLE {t} DROP COLUMN {col}")
            c.exec_driver_sql("UPDATE tc_meta SET value = '7' WHERE `key` = 'schema'")
        assert set(_collations(eng)[n] for n in names) == {"utf8mb4_general_ci"}
        with pytest.raises(Exception, match="Duplicate entry"):  # the defect, as it was
            with eng.store.engine.begin() as c:
                c.exec_driver_sql("INSERT INTO tc_entities (code) VALUES ('acme')")
    with Engine(db_url) as eng:  # opening upgrades
        assert {n: _collations(eng)[n] for n in names} == dict.fromkeys(names, "utf8mb4_bin")
        with eng.store.engine.connect() as c:
            assert c.exec_driver_sql(
                "SELECT value FROM tc_meta WHERE `key` = 'schema'").scalar() == SCHEMA_VERSION
        eng.load_data(DATA, frequencies={"sales": "annual", "cost": "annual"})
        eng.set_formula("ROE", "sales * 2")
        assert sorted(eng.status()["stale"]) == ["ROE", "roe"]
        eng.recalc()
        assert sorted(eng.records("roe")["value"]) == [20.0, 200.0]
        assert sorted(eng.records("ROE")["value"]) == [6.0, 14.0]
        assert eng.recalc(full=True).records_written == 0
