"""Scale-out on Dask: a LocalCluster of 2 worker processes gives the local engine's records,
bit for bit, cross-sectional formulas included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import SAMPLE, make_database
from tracecalc.cli import main
from tracecalc.engine import Engine
from tracecalc.errors import TracecalcError
from tracecalc.model import FormulaState
from tracecalc.storage.files import read_formulas
from tracecalc.work import RunIO as Session

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def sample_engine(url: str) -> Engine:
    eng = Engine(url, user="test")
    eng.load_data(SAMPLE / "data.csv")
    eng.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    return eng


def same_records(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b) > 0
    for col in a.columns:
        if col == "value":  # bit for bit
            assert (a[col].to_numpy().view(np.int64) == b[col].to_numpy().view(np.int64)).all()
        else:
            assert (a[col].to_numpy() == b[col].to_numpy()).all(), col


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_dask_full_recalc_equals_the_local_engine(kind, tmp_path, client, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    url_a, drop_a = make_database(kind, tmp_path / "a")
    url_b, drop_b = make_database(kind, tmp_path / "b")
    client_writes = []
    real_write = Session.write

    def counting_write(self, stats, outcome, final):
        client_writes.append(stats.name)
        return real_write(self, stats, outcome, final)

    try:
        local, spread = sample_engine(url_a), sample_engine(url_b)
        expected = local.recalc(full=True)
        monkeypatch.setattr(Session, "write", counting_write)
        got = spread.recalc(full=True, dask=client)
        monkeypatch.undo()
        assert got.status == "ok"
        assert got.records_written == expected.records_written > 100_000
        assert {s.name for s in got.formulas} == {s.name for s in expected.formulas}
        same_records(local.export(), spread.export())
        cross = {n for n in spread.formulas()["name"]
                 if "cs_" in spread.formula(n).expression}
        assert len(cross) >= 9
        if kind == "sqlite":  # one writer: the client wrote every partition's results
            assert set(client_writes) == {s.name for s in got.formulas}
        else:  # the workers wrote their partitions; the client only the gathered formulas
            assert set(client_writes) == cross
        status = spread.status()
        assert status["stale"] == []
        # the digests the workers stored are those a local run computes: nothing to write
        again = spread.recalc(full=True)
        assert again.records_written == 0
        assert again.records_unchanged == expected.records_written
        local.close()
        spread.close()
    finally:
        drop_a()
        drop_b()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_dask_after_an_edit_and_new_data(kind, tmp_path, client):
    """A full Dask run after edits and data changes matches a local run of the same."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    url_a, drop_a = make_database(kind, tmp_path / "a")
    url_b, drop_b = make_database(kind, tmp_path / "b")
    try:
        engines = [sample_engine(url_a), sample_engine(url_b)]
        for i, eng in enumerate(engines):
            eng.recalc(full=True) if i == 0 else eng.recalc(full=True, dask=client)
            eng.set_formula("gross_margin", "(revenue - cogs) / revenue * 100")
            data = pd.read_csv(SAMPLE / "data.csv")
            one = data[data["entity"] == data["entity"].iloc[0]].head(5).copy()
            one["value"] = one["value"] * 2
            eng.load_data(one)
        expected = engines[0].recalc(full=True)
        got = engines[1].recalc(full=True, dask=client)
        assert got.records_written == expected.records_written > 0
        same_records(engines[0].export(), engines[1].export())
        for eng in engines:
            assert eng.formula("gross_margin").state == FormulaState.FRESH
            eng.close()
    finally:
        drop_a()
        drop_b()


def test_cli_recalc_on_a_dask_scheduler(tmp_path, client):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    for args in (["load-data", str(SAMPLE / "data.csv")],
                 ["load-formulas", str(SAMPLE / "formulas.csv")]):
        res = runner.invoke(main, ["--db", db, *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["--db", db, "recalc", "--full", "--dask",
                               client.scheduler.address], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "87 formulas" in res.output
    with Engine(db) as eng:
        assert eng.status()["stale"] == []
        assert eng.status()["records"] > 100_000


def test_refused_setups(tmp_path, client, monkeypatch):
    with Engine("sqlite:///:memory:") as eng:
        eng.load_data(SAMPLE / "data.csv")
        eng.set_formula("m", "revenue - cogs")
        with pytest.raises(TracecalcError, match="in-memory SQLite"):
            eng.recalc(full=True, dask=client)
        with pytest.raises(TracecalcError, match="atomic"):
            eng.recalc(full=True, dask=client, atomic=True)
        assert eng.formula("m").state != FormulaState.FRESH
    with Engine(f"sqlite:///{tmp_path / 'x.db'}") as eng:
        eng.load_data(SAMPLE / "data.csv")
        eng.set_formula("n", "revenue + 1")
        monkeypatch.setattr("tracecalc.cluster.CONNECT_TIMEOUT", "1s")
        with pytest.raises(TracecalcError, match="Dask scheduler"):
            eng.recalc(full=True, dask="tcp://127.0.0.1:1")
