"""Change tracing: edits and data loads recompute exactly what they affect, and nothing is
rewritten that did not change (early cutoff)."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import SAMPLE
from tracecalc.engine import Engine
from tracecalc.parser import parse
from tracecalc.storage.files import read_formulas


@pytest.fixture
def sample(engine):
    engine.load_entities(SAMPLE / "entities.csv")
    engine.load_data(SAMPLE / "data.csv")
    engine.set_formulas(read_formulas(SAMPLE / "formulas.csv"))
    engine.recalc(full=True)
    return engine


def snapshot(eng) -> dict:
    df = eng.export()
    return {(r.formula, r.entity, r.period): r.value for r in df.itertuples()}


def log(eng, run_id) -> dict:
    return {r["formula_name"]: r for r in eng.run_log(run_id)}


def test_full_after_full_writes_nothing(sample):
    rep = sample.recalc(full=True)
    assert rep.formulas_computed == len(sample.formulas())
    assert rep.records_written == 0 and rep.records_unchanged == sample.status()["records"]
    assert sample.runs()[0]["records_written"] == 0


def test_an_edit_recomputes_only_its_downstream(sample):
    before = snapshot(sample)
    down = set(sample.dependents("roe", transitive=True))
    res = sample.set_formula("roe", "net_income_ttm / avg_balance(equity, 2)")
    assert res.marked_stale[0] == "roe" and set(res.marked_stale) == {"roe"} | down
    st = sample.status()
    assert st["states"]["roe"] == "stale"
    assert {st["states"][d] for d in down} == {"pending"}
    rep = sample.recalc()
    runlog = log(sample, rep.run_id)
    assert set(runlog) == {"roe"} | down  # nothing else was even looked at
    after = snapshot(sample)
    for key in before.keys() | after.keys():
        if key[0] not in runlog:
            assert before.get(key) == after.get(key)
    changed = {k[0] for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {"roe"} | down and "roe" in changed
    written = {n for n, r in runlog.items() if r["records_written"]}
    assert written == changed
    assert sample.status()["stale"] == []


def test_an_equivalent_edit_is_recomputed_once_and_stops_there(sample):
    # x + 0 is x for sympy and, bit for bit, for every stored value (never -0.0)
    res = sample.set_formula("gross_margin", "gross_profit / revenue + 0")
    assert res.equivalent_to_previous and res.version == 2
    rep = sample.recalc()
    runlog = log(sample, rep.run_id)
    assert runlog["gross_margin"]["entities"] == 50
    assert runlog["gross_margin"]["records_written"] == 0
    downstream = set(sample.dependents("gross_margin", transitive=True))
    assert downstream and all(runlog[d]["entities"] == 0 for d in downstream)  # cut off
    assert rep.records_written == 0


def test_a_data_change_for_one_entity(sample):
    before = snapshot(sample)
    rev = sample.records("revenue")
    row = rev[(rev.entity == "ACME")].iloc[-6]
    load = sample.load_data(pd.DataFrame({
        "item": ["revenue"], "entity": ["ACME"],
        "period": [row.period.strftime("%Y-%m-%d")], "value": [row.value * 1.5]}))
    st = sample.status()
    direct = set(sample.dependents("revenue"))
    for name in direct:
        cs = parse(sample.formula(name).expression).has_cross_sectional
        assert st["states"][name] == ("stale" if cs else "partial")
        if not cs:
            assert st["stale_entities"][name] == 1
    assert set(load.marked_stale) == direct | set(sample.dependents("revenue", transitive=True))

    rep = sample.recalc()
    runlog = log(sample, rep.run_id)
    # formulas reached through a cross-sectional function may move for every entity
    widened = set()
    for name in sample.dependents("revenue", transitive=True):
        if parse(sample.formula(name).expression).has_cross_sectional:
            widened |= {name} | set(sample.dependents(name, transitive=True))
    after = snapshot(sample)
    for key in before.keys() | after.keys():
        if before.get(key) != after.get(key):
            assert key[1] == "ACME" or key[0] in widened, key
    for name, r in runlog.items():
        if name not in widened:
            assert r["entities"] <= 1, name
            assert r["records_written"] <= 40, name
    assert any(r["records_written"] for n, r in runlog.items() if n not in widened)
    assert sample.status()["stale"] == []


def test_an_identical_reload_marks_nothing(sample):
    res = sample.load_data(SAMPLE / "data.csv")
    assert res.marked_stale == () and sample.status()["stale"] == []
    rep = sample.recalc()
    assert rep.formulas == [] and rep.records_written == 0


def test_explain_shows_the_inputs_and_their_window(sample):
    e = sample.explain("roe", "ACME", "2024-12-31")
    stored = sample.records("roe")
    want = stored[(stored.entity == "ACME") & (stored.period == "2024-12-31")].value.item()
    assert e["stored"] == want and e["tree"]["value"] == want and e["version"] == 1
    ni, avg = e["tree"]["children"]
    assert ni["text"] == "net_income_ttm" and ni["kind"] == "formula"
    assert avg["text"] == "avg_balance(equity, 4)"
    (window,) = avg["window"]
    assert [p for p, _ in window["values"]] == ["2023-12-31", "2024-03-31", "2024-06-30",
                                                 "2024-09-30", "2024-12-31"]
    eq = window["values"]
    assert avg["value"] == pytest.approx((eq[0][1] + eq[-1][1]) / 2)
    assert e["tree"]["value"] == pytest.approx(ni["value"] / avg["value"])


def test_explain_refuses_unknown_entities_and_periods(sample):
    from tracecalc.errors import NotFoundError

    with pytest.raises(NotFoundError, match="Did you mean 'ACME'"):
        sample.explain("roe", "ACMe", "2024-12-31")
    with pytest.raises(NotFoundError, match="no quarterly period named '2024-12-30'"):
        sample.explain("roe", "ACME", "2024-12-30")


def test_new_entity_is_computed_for_itself(tmp_path):
    eng = Engine(f"sqlite:///{tmp_path / 'n.db'}")
    base = pd.DataFrame({"item": "x", "entity": ["A", "A", "B", "B"],
                         "period": ["2024-03-31", "2024-06-30"] * 2,
                         "value": [1.0, 2.0, 3.0, 4.0]})
    eng.load_data(base)
    eng.set_formulas([{"name": "d", "expression": "diff(x)"},
                      {"name": "r", "expression": "cs_rank(x)"}])
    eng.recalc()
    eng.load_data(pd.DataFrame({"item": "x", "entity": ["C", "C"],
                                "period": ["2024-03-31", "2024-06-30"], "value": [9.0, 9.5]}))
    rep = eng.recalc()
    runlog = log(eng, rep.run_id)
    assert runlog["d"]["entities"] == 1 and runlog["d"]["records_written"] == 1
    assert runlog["r"]["entities"] == 3  # ranks move for everyone
    assert eng.records("d").to_dict("list")["value"] == [1.0, 1.0, 0.5]
    eng.close()
