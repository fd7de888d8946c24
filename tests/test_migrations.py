"""Schema migrations: a database of schema 7 (and of 8, the previous release, for its
calendars), and older SQLite ones
(5 and 6, rowid bulk tables), written here with their own DDL and no Alembic stamp, upgrade
in place on SQLite, PostgreSQL and MariaDB; the data survives and a recalculation works."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from conftest import SAMPLE, make_cli, make_database
from tracecalc.engine import Engine
from tracecalc.errors import DatabaseError
from tracecalc.storage import Store, migrations, normalise_url
from tracecalc.storage.schema import NAME_COLUMNS, SCHEMA_VERSION, metadata

HEAD = f"schema{SCHEMA_VERSION}"
NEXT = int(SCHEMA_VERSION) + 1  # a schema of a newer tracecalc

# The tables as schema 7 made them (SQLite's bulk tables WITHOUT ROWID; names in the
# database's default collation, which on MariaDB ignores case). Schemas 5 and 6 differ on
# SQLite: rowid bulk tables, and schema 5 had no tc_digests and a foreign key on tc_records.
SCHEMA_7 = """
CREATE TABLE tc_meta ({key} VARCHAR(64) NOT NULL, value VARCHAR(255) NOT NULL,
    PRIMARY KEY ({key}));
CREATE TABLE tc_items (id {serial}, name VARCHAR(64) NOT NULL, frequency VARCHAR(16) NOT NULL,
    created_at {datetime} NOT NULL, PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE tc_entities (id {serial}, code VARCHAR(64) NOT NULL, name VARCHAR(200),
    sector VARCHAR(100), PRIMARY KEY (id), UNIQUE (code));
CREATE TABLE tc_data (item_id INTEGER NOT NULL, entity_id INTEGER NOT NULL,
    period DATE NOT NULL, value {double} NOT NULL,
    PRIMARY KEY (item_id, entity_id, period)){without_rowid};
CREATE TABLE tc_formulas (name VARCHAR(64) NOT NULL, expression TEXT NOT NULL,
    canonical TEXT NOT NULL, canonical_key VARCHAR(40) NOT NULL, description TEXT NOT NULL,
    frequency VARCHAR(16) NOT NULL, version INTEGER NOT NULL, state VARCHAR(8) NOT NULL,
    stale_seq INTEGER NOT NULL, updated_at {datetime} NOT NULL,
    updated_by VARCHAR(128) NOT NULL, id {serial}, changed BOOLEAN NOT NULL,
    PRIMARY KEY (id), UNIQUE (name));
CREATE INDEX ix_tc_formulas_changed ON tc_formulas (changed);
CREATE INDEX ix_tc_formulas_canonical_key ON tc_formulas (canonical_key);
CREATE TABLE tc_formula_links (node_id INTEGER NOT NULL, depends_on_id INTEGER NOT NULL,
    PRIMARY KEY (node_id, depends_on_id),
    FOREIGN KEY (node_id) REFERENCES tc_formulas (id) ON DELETE CASCADE,
    FOREIGN KEY (depends_on_id) REFERENCES tc_formulas (id) ON DELETE CASCADE);
CREATE INDEX ix_tc_formula_links_depends_on_id ON tc_formula_links (depends_on_id);
CREATE TABLE tc_formula_items (formula_id INTEGER NOT NULL, item_id INTEGER NOT NULL,
    PRIMARY KEY (formula_id, item_id),
    FOREIGN KEY (formula_id) REFERENCES tc_formulas (id) ON DELETE CASCADE,
    FOREIGN KEY (item_id) REFERENCES tc_items (id));
CREATE INDEX ix_tc_formula_items_item_id ON tc_formula_items (item_id);
CREATE TABLE tc_formula_history (id {serial}, formula_name VARCHAR(64) NOT NULL,
    version INTEGER NOT NULL, action VARCHAR(8) NOT NULL, old_expression TEXT,
    new_expression TEXT, changed_at {datetime} NOT NULL, changed_by VARCHAR(128) NOT NULL,
    PRIMARY KEY (id));
CREATE INDEX ix_tc_formula_history_formula_name ON tc_formula_history (formula_name);
CREATE TABLE tc_records (formula_id INTEGER NOT NULL, entity_id INTEGER NOT NULL,
    period DATE NOT NULL, value {double} NOT NULL,
    PRIMARY KEY (formula_id, entity_id, period){records_fk}){without_rowid};
CREATE TABLE tc_digests (formula_id INTEGER NOT NULL, entity_id INTEGER NOT NULL,
    digest BIGINT NOT NULL, PRIMARY KEY (formula_id, entity_id)){without_rowid};
CREATE TABLE tc_runs (id {serial}, kind VARCHAR(16) NOT NULL, started_at {datetime} NOT NULL,
    finished_at {datetime}, status VARCHAR(16) NOT NULL, formulas_computed INTEGER NOT NULL,
    records_written INTEGER NOT NULL, records_unchanged INTEGER NOT NULL,
    run_by VARCHAR(128) NOT NULL, message TEXT, PRIMARY KEY (id));
CREATE TABLE tc_run_formulas (run_id INTEGER NOT NULL, formula_name VARCHAR(64) NOT NULL,
    version INTEGER NOT NULL, entities INTEGER NOT NULL, records_written INTEGER NOT NULL,
    records_unchanged INTEGER NOT NULL, seconds {double} NOT NULL,
    PRIMARY KEY (run_id, formula_name), FOREIGN KEY (run_id) REFERENCES tc_runs (id));
CREATE TABLE tc_stale (formula_id INTEGER NOT NULL, entity_id INTEGER NOT NULL,
    PRIMARY KEY (formula_id, entity_id),
    FOREIGN KEY (formula_id) REFERENCES tc_formulas (id) ON DELETE CASCADE,
    FOREIGN KEY (entity_id) REFERENCES tc_entities (id));
CREATE TABLE tc_periods (frequency VARCHAR(16) NOT NULL, period DATE NOT NULL,
    PRIMARY KEY (frequency, period));
"""

TYPES = {
    "sqlite": {"key": '"key"', "serial": "INTEGER NOT NULL", "datetime": "DATETIME",
               "double": "DOUBLE"},
    "postgresql": {"key": '"key"', "serial": "SERIAL NOT NULL",
                   "datetime": "TIMESTAMP WITHOUT TIME ZONE", "double": "DOUBLE PRECISION"},
    "mysql": {"key": "`key`", "serial": "INTEGER NOT NULL AUTO_INCREMENT",
              "datetime": "DATETIME", "double": "DOUBLE"},
}


def old_ddl(dialect: str, schema: str) -> list[str]:
    """The CREATE statements of ``schema`` ("5", "6" or "7") on ``dialect``."""
    sqlite = dialect == "sqlite"
    sql = SCHEMA_7.format(
        **TYPES[dialect],
        without_rowid=" WITHOUT ROWID" if sqlite and schema == "7" else "",
        records_fk=(", FOREIGN KEY (formula_id) REFERENCES tc_formulas (id) ON DELETE CASCADE"
                    if schema == "5" else ""))
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    return [s for s in statements if schema != "5" or "tc_digests" not in s]


def rewrite_as(url: str, schema: str) -> None:
    """Turn the tracecalc database at ``url`` into one an older release left: its rows,
    in tables made by that release's DDL, no Alembic stamp, ``tc_meta.schema`` = schema."""
    eng = sa.create_engine(normalise_url(url))
    with eng.begin() as c:
        dialect = c.dialect.name
        rows = {t.name: [dict(r._mapping) for r in c.execute(sa.select(t))]
                for t in metadata.sorted_tables}
        metadata.drop_all(c)
        c.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")
    with eng.begin() as c:
        for statement in old_ddl(dialect, schema):
            c.exec_driver_sql(statement)
        for name, table_rows in rows.items():
            if table_rows and (schema != "5" or name != "tc_digests"):
                have = {col["name"] for col in sa.inspect(c).get_columns(name)}
                old = sa.table(name, *(sa.column(k) for k in table_rows[0] if k in have))
                c.execute(sa.insert(old), [{k: v for k, v in r.items() if k in have}
                                           for r in table_rows])
        if dialect == "postgresql":  # explicit ids leave the sequences behind
            for t in ("tc_items", "tc_entities", "tc_formulas", "tc_formula_history", "tc_runs"):
                c.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                                  f"(SELECT max(id) FROM {t}))")
        c.execute(sa.update(metadata.tables["tc_meta"])
                  .where(metadata.tables["tc_meta"].c.key == "schema").values(value=schema))
    eng.dispose()


def state(url: str) -> dict:
    s = Store(url, create=False, check=False)
    try:
        got = migrations.current(s)
        with s.engine.connect() as c:
            layout = {}
            if c.dialect.name == "sqlite":
                layout = {n: "WITHOUT ROWID" in sql.upper() for n, sql in c.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE name IN "
                    "('tc_data', 'tc_records', 'tc_digests')")}
            elif c.dialect.name in ("mysql", "mariadb"):
                layout = {f"{t}.{col}": coll for t, col, coll in c.exec_driver_sql(
                    "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM "
                    "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()")
                    if (t, col) in NAME_COLUMNS}
    finally:
        s.dispose()
    return {"schema": got.schema, "revision": got.revision, "layout": layout}


def filled(url: str) -> dict:
    """Load the sample data and two formulas, recalculate; the records and catalog."""
    with Engine(url, user="old") as eng:
        eng.load_entities(SAMPLE / "entities.csv")
        eng.load_data(SAMPLE / "data.csv")
        eng.set_formula("m", "revenue - cogs", "margin")
        eng.set_formula("n", "m / revenue")
        eng.set_formula("m", "revenue - 2 * cogs")
        first = eng.recalc()
        return {"records": {n: eng.records(n) for n in ("m", "n")},
                "entities": eng.entities(), "history": eng.history("m"),
                "runs": len(eng.runs()), "written": first.records_written}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def server_db(request, tmp_path):
    url, cleanup = make_database(request.param, tmp_path)
    yield url
    cleanup()


def test_the_revisions_end_at_the_head():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations.HERE))
    assert script.get_heads() == [migrations.HEAD]
    chain = [s.revision for s in script.walk_revisions("base", "heads")][::-1]
    assert chain == list(migrations.REVISIONS.values())


def test_a_new_database_is_stamped_at_the_head(server_db):
    Engine(server_db).close()
    assert state(server_db) | {"layout": None} == {"schema": SCHEMA_VERSION, "revision": HEAD,
                                                   "layout": None}
    assert make_cli(server_db)("db", "current").output.strip() == f"{HEAD} (head)"


def test_a_schema_7_database_is_upgraded_in_place(server_db):
    before = filled(server_db)
    rewrite_as(server_db, "7")
    old = state(server_db)
    assert old["schema"] == "7" and old["revision"] is None
    if server_db.startswith("mysql"):
        assert "utf8mb4_bin" not in old["layout"].values()  # names still ignore case
    cli = make_cli(server_db)
    with pytest.raises(DatabaseError, match=f"older than this tracecalc's {SCHEMA_VERSION}; "
                                            "upgrade it first with: tracecalc db upgrade --db "):
        Engine(server_db, create=False)  # a read: refused, and nothing written
    assert state(server_db) == old
    res = cli("list", code=1)
    assert "tracecalc db upgrade --db" in res.output and len(res.output.splitlines()) == 1
    assert f"schema7 (not the head, {HEAD}" in cli("db", "current").output

    with Engine(server_db) as eng:  # opening to write upgrades
        now = state(server_db)
        assert (now["schema"], now["revision"]) == (SCHEMA_VERSION, HEAD)
        if server_db.startswith("sqlite"):
            assert all(now["layout"].values())
        if server_db.startswith("mysql"):
            assert set(now["layout"].values()) == {"utf8mb4_bin"}
        for n in ("m", "n"):
            pd.testing.assert_frame_equal(eng.records(n), before["records"][n])
        pd.testing.assert_frame_equal(eng.entities(), before["entities"])
        assert eng.history("m") == before["history"] and len(eng.runs()) == before["runs"]
        assert eng.status()["stale"] == ["m", "n"]  # schema 10: digests are recomputed
        again = eng.recalc(full=True)
        assert (again.records_written, again.records_unchanged) == (0, before["written"])

        # names and codes are case-sensitive everywhere now, MariaDB too
        period = str(before["records"]["m"]["period"].iloc[0])[:10]
        eng.load_data(pd.DataFrame({"item": ["revenue", "cogs"], "entity": "acme",
                                    "period": period, "value": [10.0, 3.0]}))
        eng.set_formula("M", "revenue * 2")
        assert {"ACME", "acme"} <= set(eng.entities()["code"])
        assert eng.recalc().records_written > 0
        m, big_m = eng.records("m"), eng.records("M")
        assert m.loc[m["entity"] == "acme", "value"].tolist() == [10.0 - 2 * 3.0]
        assert big_m.loc[big_m["entity"] == "acme", "value"].tolist() == [20.0]
    assert cli("db", "current").output.strip() == f"{HEAD} (head)"
    assert cli("db", "upgrade").output.strip() == f"already at the head, {HEAD}"


@pytest.mark.parametrize("schema", ["5", "6"])
def test_an_older_sqlite_database_is_upgraded_by_db_upgrade(tmp_path, schema):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    before = filled(url)
    rewrite_as(url, schema)
    assert state(url) == {"schema": schema, "revision": None, "layout": dict.fromkeys(
        ["tc_data", "tc_records"] + (["tc_digests"] if schema == "6" else []), False)}
    cli = make_cli(url)
    assert cli("db", "upgrade").output.strip() == f"upgraded from schema{schema} to {HEAD}"
    assert state(url) == {"schema": SCHEMA_VERSION, "revision": HEAD, "layout": dict.fromkeys(
        ["tc_data", "tc_records", "tc_digests"], True)}
    with Engine(url, create=False) as eng:
        for n in ("m", "n"):
            pd.testing.assert_frame_equal(eng.records(n), before["records"][n])
    with Engine(url) as eng:
        again = eng.recalc(full=True)  # schema 5 had no digests: compared cell by cell
        assert (again.records_written, again.records_unchanged) == (0, before["written"])


def test_a_database_of_a_newer_tracecalc_is_refused_untouched(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    Engine(url).close()
    eng = sa.create_engine(url)
    for sql, match in [
            (f"UPDATE tc_meta SET value = '{NEXT}' WHERE key = 'schema'",
             f"at schema {NEXT} .*newer than"),
            (f"UPDATE tc_alembic_version SET version_num = 'schema{NEXT}'",
             f"revision schema{NEXT}.*newer than this tracecalc's {SCHEMA_VERSION}: upgrade "
             "tracecalc")]:
        with eng.begin() as c:
            c.exec_driver_sql(sql)
        for create in (True, False):
            with pytest.raises(DatabaseError, match=match):
                Engine(url, create=create)
        res = make_cli(url)("db", "upgrade", code=1)
        assert "newer than" in res.output and len(res.output.splitlines()) == 1
        assert f"newer than this tracecalc's head {HEAD}" in \
            make_cli(url)("db", "current").output
        with eng.begin() as c:
            c.exec_driver_sql(f"UPDATE tc_meta SET value = '{SCHEMA_VERSION}' "
                              "WHERE key = 'schema'")
            c.exec_driver_sql(f"UPDATE tc_alembic_version SET version_num = '{HEAD}'")
    eng.dispose()


def test_db_commands_on_a_missing_or_empty_database(tmp_path):
    cli = make_cli(f"sqlite:///{tmp_path / 'none.db'}")
    for cmd in ("current", "upgrade"):
        assert "no tracecalc database at" in cli("db", cmd, code=1).output
    assert list(tmp_path.iterdir()) == []  # a typo creates nothing
    sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}").connect().close()
    cli = make_cli(f"sqlite:///{tmp_path / 'empty.db'}")
    for cmd in ("current", "upgrade"):
        assert "no tracecalc tables" in cli("db", cmd, code=1).output


def undo_schema10(c) -> None:
    """Take out what schema 10 added (a database as schema 9 left it)."""
    for table, col in (("tc_formulas", "stale_since"), ("tc_run_formulas", "first_period"),
                       ("tc_run_formulas", "records_read")):
        c.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {col}")


def undo_schema11(c) -> None:
    """Take out what schema 11 added (a database as schema 10 left it)."""
    c.exec_driver_sql("DROP TABLE tc_entity_attributes")


def test_schema_10_keeps_records_and_recomputes_digests(server_db):
    """Schema 10 digests present cells with their dates: the old digests go, every formula
    is recomputed once (its records compared cell by cell, none rewritten), and
    ``verify`` finds nothing missing."""
    with Engine(server_db) as eng:
        eng.load_data(pd.DataFrame({"item": "revenue", "entity": ["A", "B"],
                                    "period": "2024-03-31", "value": [1.0, 2.0]}),
                      frequencies={"revenue": "quarterly"})
        eng.set_formula("twice", "revenue * 2")
        eng.recalc()
    eng = sa.create_engine(normalise_url(server_db))
    with eng.begin() as c:
        undo_schema11(c)
        undo_schema10(c)
        c.exec_driver_sql("UPDATE tc_meta SET value = '9' WHERE " +
                          ("`key`" if c.dialect.name == "mysql" else '"key"') + " = 'schema'")
        c.exec_driver_sql(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'schema9'")
    eng.dispose()
    assert make_cli(server_db)("db", "upgrade").output.strip() == \
        f"upgraded from schema9 to {HEAD}"
    with Engine(server_db) as eng:
        assert eng.status()["states"]["twice"] == "stale"
        run = eng.recalc()
        assert run.records_written == 0 and run.records_unchanged == 2
        assert eng.verify().ok
        assert eng.records("twice")["value"].tolist() == [2.0, 4.0]


def test_schema_9_fills_the_calendars_and_marks_their_formulas_stale(server_db):
    """A schema-8 calendar held only the dates with data; schema 9 makes it the whole grid
    from the first to the last, and the formulas of a calendar that gained dates are
    recomputed (their windows step differently), to what a new database gives."""
    with Engine(server_db) as eng:
        eng.load_data(pd.DataFrame({"item": "revenue", "entity": "A",
                                    "period": ["2024-03-31", "2024-06-30", "2024-12-31"],
                                    "value": [1.0, 2.0, 4.0]}),
                      frequencies={"revenue": "quarterly"})
        eng.set_formula("prev", "lag(revenue)")
        eng.recalc()
    eng = sa.create_engine(normalise_url(server_db))
    with eng.begin() as c:  # as schema 8 left it: no 2024-09-30 (no data there)
        c.exec_driver_sql("DELETE FROM tc_periods WHERE period = '2024-09-30'")
        c.exec_driver_sql("DELETE FROM tc_records")
        c.exec_driver_sql("INSERT INTO tc_records SELECT f.id, e.id, '2024-12-31', 2.0 FROM "
                          "tc_formulas f, tc_entities e")
        c.exec_driver_sql("UPDATE tc_meta SET value = '8' WHERE " +
                          ("`key`" if c.dialect.name == "mysql" else '"key"') + " = 'schema'")
        for t in ("tc_data_versions", "tc_record_versions", "tc_snapped"):
            c.exec_driver_sql(f"DROP TABLE {t}")
        undo_schema11(c)
        undo_schema10(c)
        c.exec_driver_sql(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'schema8'")
    eng.dispose()
    assert make_cli(server_db)("db", "upgrade").output.strip() == \
        f"upgraded from schema8 to {HEAD}"
    with Engine(server_db) as eng:
        assert eng.status()["states"]["prev"] == "stale"
        eng.recalc()
        got = eng.records("prev")
        assert got["period"].dt.strftime("%Y-%m-%d").tolist() == ["2024-06-30", "2024-09-30"]
        assert got["value"].tolist() == [1.0, 2.0]  # 2024-12-31's lag is the missing Q3


def test_schema_11_adds_entity_attributes(server_db):
    """A schema-10 database (no tc_entity_attributes) upgrades in place: its entities keep
    their names and sectors, a formula grouping by sector keeps its records, and entities
    files with more columns (industry) load and group afterwards."""
    with Engine(server_db) as eng:
        eng.load_entities(pd.DataFrame({"code": ["A", "B", "C"], "name": ["a", "b", "c"],
                                        "sector": ["s", "s", "t"]}))
        eng.load_data(pd.DataFrame({"item": "x", "entity": ["A", "B", "C"],
                                    "period": "2024-03-31", "value": [1.0, 3.0, 7.0]}),
                      frequencies={"x": "quarterly"})
        eng.set_formula("d", "cs_demean(x, by=sector)")
        eng.recalc()
        before = {"entities": eng.entities(), "d": eng.records("d")}
    eng = sa.create_engine(normalise_url(server_db))
    with eng.begin() as c:  # as schema 10 left it
        undo_schema11(c)
        c.exec_driver_sql("UPDATE tc_meta SET value = '10' WHERE " +
                          ("`key`" if c.dialect.name == "mysql" else '"key"') + " = 'schema'")
        c.exec_driver_sql(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'schema10'")
    eng.dispose()
    assert make_cli(server_db)("db", "upgrade").output.strip() == \
        "upgraded from schema10 to schema11"
    with Engine(server_db) as eng:
        pd.testing.assert_frame_equal(eng.entities(), before["entities"])
        pd.testing.assert_frame_equal(eng.records("d"), before["d"])
        assert eng.recalc(full=True).records_written == 0
        eng.load_entities(pd.DataFrame({"code": ["A", "B", "C"], "industry": ["i", "j", "j"]}))
        assert eng.entities()["industry"].tolist() == ["i", "j", "j"]
        eng.set_formula("e", "cs_demean(x, by=industry)")
        eng.recalc()
        assert eng.records("e").set_index("entity")["value"].to_dict() == \
            {"B": 3.0 - 5.0, "C": 7.0 - 5.0}  # A alone in i: NaN
