"""The one catalog reader: a scoped read sees what the whole catalog says about its part."""

from __future__ import annotations

import random

import pytest

from tracecalc import Engine, catalog
from tracecalc.model import FormulaState


@pytest.fixture
def eng(tmp_path):
    e = Engine(f"sqlite:///{tmp_path / 'c.db'}")
    e.load_data("sample_data/data.csv")
    rng = random.Random(12)
    batch = {}
    for i in range(60):  # a random DAG over two items
        refs = rng.sample([f"f{j}" for j in range(i)], k=min(i, rng.choice([0, 1, 2])))
        refs = refs or [rng.choice(["revenue", "cogs"])]
        batch[f"f{i}"] = " + ".join(refs) + (" + cogs" if i % 7 == 0 else "")
    e.set_formulas(batch)
    yield e
    e.close()


def test_scoped_reads_agree_with_the_whole_catalog(eng):
    with eng.store.transaction(write=False) as conn:
        whole = catalog.read(eng.store, conn, eng.facts, whole=True)
        for name in ["f0", "f5", "f17", "f42", "f59"]:
            part = catalog.read(eng.store, conn, eng.facts, [name])
            assert part.downstream([name]) == whole.downstream([name])
            assert part.graph.ancestors(name) == whole.graph.ancestors(name)
            assert part.graph.predecessors(name) == whole.graph.predecessors(name)
            assert part.facts(name).references == whole.facts(name).references
            assert not part.whole and len(part.formulas) <= len(whole.formulas)
        users = catalog.read(eng.store, conn, eng.facts, ["cogs"], up=False, items_down=True)
        assert users.downstream(["cogs"]) == whole.downstream(["cogs"])
        assert users.graph.successors("cogs") == whole.graph.successors("cogs")


def test_a_run_reads_what_is_not_fresh_and_its_neighbours(eng):
    eng.recalc()
    eng.set_formula("f3", "revenue * 2")  # f3 stale, what uses it pending
    with eng.store.transaction(write=False) as conn:
        whole = catalog.read(eng.store, conn, eng.facts, whole=True)
        run = catalog.read(eng.store, conn, eng.facts, up=False, down=False, unfresh=True)
    unfresh = {n for n, r in whole.formulas.items() if r.state != FormulaState.FRESH}
    assert unfresh == {"f3", *whole.downstream(["f3"])}
    assert unfresh <= set(run.formulas)
    for n in unfresh:
        assert run.graph.predecessors(n) == whole.graph.predecessors(n)
        assert run.graph.successors(n) == whole.graph.successors(n)
    assert eng.status()["stale"] == [n for n in whole.graph.topological_order(
        unfresh, key=whole.key)]


def test_a_scoped_read_of_an_unknown_name_suggests_from_everything(eng):
    with eng.store.transaction(write=False) as conn:
        part = catalog.read(eng.store, conn, eng.facts, ["f1x"])
        assert "f1" in part.all_names() and "revenue" in part.all_names()
        with pytest.raises(Exception, match="f1"):
            part.row("f1x")
