"""Database fixtures: every database test runs on SQLite, DuckDB, PostgreSQL and MariaDB.

PostgreSQL and MariaDB come from TRACECALC_TEST_POSTGRESQL_URL and TRACECALC_TEST_MARIADB_URL
(skipped with a reason when unset; .ci/run sets both). The servers outlive a test run, so
each test works in a fresh schema (PostgreSQL) or database (MariaDB) and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tracecalc.storage import normalise_url

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"

ENV = {
    "postgresql": "TRACECALC_TEST_POSTGRESQL_URL",
    "mariadb": "TRACECALC_TEST_MARIADB_URL",
}
DATABASES = ["sqlite", "duckdb", "postgresql", "mariadb"]


def _server_url(kind: str) -> str:
    url = os.environ.get(ENV[kind])
    if not url:
        pytest.skip(f"{ENV[kind]} is not set: no {kind} server to test against")
    return normalise_url(url)


def make_database(kind: str, tmp_path: Path):
    """A fresh, empty database; returns (url, cleanup)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'tracecalc-test.db'}", lambda: None
    if kind == "duckdb":
        return f"duckdb:///{tmp_path / 'tracecalc-test.duckdb'}", lambda: None
    base = _server_url(kind)
    name = f"tc_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    if kind == "postgresql":
        with admin.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{name}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={name}"})

        def cleanup():
            with admin.connect() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            admin.dispose()
    else:
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        url = make_url(base).set(database=name)

        def cleanup():
            with admin.connect() as c:
                c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            admin.dispose()
    return url.render_as_string(hide_password=False), cleanup


# Database tests that need several processes on one database: DuckDB opens a database file
# in one process at a time (tests/test_duckdb.py checks what a second process is told, and
# races the same saves on threads).
ONE_PROCESS_ONLY = {"duckdb": {"test_racing_cyclic_saves"}}


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = getattr(getattr(item, "callspec", None), "params", {}).get("db_url")
        if item.originalname in ONE_PROCESS_ONLY.get(kind, ()):
            item.add_marker(pytest.mark.skip(
                reason=f"{kind} opens a database file in one process at a time"))


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path):
    """URL of a fresh database of each kind."""
    url, cleanup = make_database(request.param, tmp_path)
    yield url
    cleanup()


@pytest.fixture
def engine(db_url):
    from tracecalc.engine import Engine

    eng = Engine(db_url, user="tester")
    yield eng
    eng.close()


@pytest.fixture
def sqlite_engine(tmp_path):
    from tracecalc.engine import Engine

    eng = Engine(f"sqlite:///{tmp_path / 'one.db'}", user="tester")
    yield eng
    eng.close()


def fail_writes(monkeypatch, eng, formula: str, error: Exception) -> None:
    """Make writing ``formula``'s records raise ``error`` (the others write normally)."""
    real = eng.store.write_diff

    def failing(conn, formula_id, *args, **kw):
        if formula_id == eng.store.formula_row(conn, formula).id:
            raise error
        return real(conn, formula_id, *args, **kw)

    monkeypatch.setattr(eng.store, "write_diff", failing)


def make_cli(db: str, code: int | None = 0, user: str | None = None):
    """Run the CLI in-process on ``db``; returns click's result (stdout and stderr apart).
    Every call asserts that nothing printed a traceback and, unless ``code`` is None, the
    exit code."""
    from click.testing import CliRunner

    from tracecalc.cli import main

    runner = CliRunner()

    def invoke(*args, code=code, db=db, user=user):
        who = ["--user", user] if user else []
        res = runner.invoke(main, ["--db", db, *who, *args], catch_exceptions=False)
        if code is not None:
            assert res.exit_code == code, res.output
        assert "Traceback" not in res.output
        return res

    invoke.db = db
    return invoke


@pytest.fixture
def cli(tmp_path):
    """The CLI on a fresh SQLite file (``cli.db``); ``cli(*args, code=0)``."""
    return make_cli(f"sqlite:///{tmp_path / 'cli.db'}")
