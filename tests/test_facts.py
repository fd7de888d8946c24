"""A formula's facts: derived once, from the tree, and agreeing with what running it does."""

from __future__ import annotations

import ast
import pickle

import numpy as np
import pandas as pd
import pytest

from tracecalc import Engine, evaluator
from tracecalc.evaluator import compile_tree, interpret
from tracecalc.facts import FactsCache, facts_of

EXPRESSIONS = [
    "(revenue - cogs) / revenue", "coalesce(revenue, 0)", "isnull(revenue)",
    "(revenue > 0) or 1", "not revenue", "-revenue ** 2", "lag(revenue, 2) + 1",
    "ts_mean(revenue, 3) - ts_std(cogs, 2, 0)", "ema(revenue, 3)", "ffill(revenue, 2)",
    "cs_rank(revenue) * cs_zscore(cogs)", "if_(revenue > cogs, revenue, cogs)",
    "div(revenue, cogs, 0)", "growth(ttm(revenue))", "max(revenue, cogs, 1)",
    "round(revenue / 3, 2)", "clip(revenue, 0, 1)", "lag(1) + revenue", "cs_rank(2 * 3) + cogs",
    "sqrt(252) * revenue", "ts_corr(revenue, cogs, 3)", "avg_balance(cogs, 2)",
]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_interpreting_the_tree_gives_the_compiled_values_bitwise(text):
    rng = np.random.default_rng(7)
    f = facts_of(text, "f")
    panels = {}
    for r in f.references:
        p = rng.normal(size=(12, 5)) * 10
        p[rng.random(p.shape) < 0.2] = np.nan
        panels[r] = p
    like = next(iter(panels.values()))
    compiled = compile_tree(f.tree)(*(panels[r] for r in f.references))
    assert interpret(f.tree, panels, like).tobytes() == compiled.tobytes()


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_spontaneous_is_what_running_on_missing_inputs_says(text):
    f = facts_of(text, "f")
    compiled = compile_tree(f.tree)
    nothing = np.full((3, 1), np.nan)
    ran = bool((~np.isnan(compiled(*[nothing] * len(compiled.inputs)))).any())
    assert f.spontaneous is ran


def test_facts_pickle_without_their_compiled_code_and_compile_again():
    f = facts_of("lag(revenue) * 2", "g", "quarterly")
    assert f.compiled.inputs == ("revenue",)
    g = pickle.loads(pickle.dumps(f))
    assert "compiled" not in g.__dict__ and g.frequency == "quarterly"
    assert g.compiled(np.array([[1.0], [2.0]]))[1, 0] == 2.0


def test_the_cache_parses_a_stored_version_once():
    cache = FactsCache()
    a = cache.get(1, 1, "revenue * 2", "a", "quarterly")
    assert cache.get(1, 1, "revenue * 2", "a", "quarterly") is a
    assert cache.get(1, 2, "revenue * 3", "a", "quarterly") is not a  # a new version


@pytest.fixture
def counted(monkeypatch):
    """Counts ast.parse calls (every formula parse goes through it) and compilations."""
    calls = {"parse": 0, "compile": 0}
    real_parse, real_compile = ast.parse, evaluator.compile_tree

    def parse(*a, **k):
        calls["parse"] += 1
        return real_parse(*a, **k)

    def compile_tree(*a, **k):
        calls["compile"] += 1
        return real_compile(*a, **k)

    monkeypatch.setattr(ast, "parse", parse)
    monkeypatch.setattr(evaluator, "compile_tree", compile_tree)
    import tracecalc.facts as facts_module
    monkeypatch.setattr(facts_module, "compile_tree", compile_tree)
    return calls


def test_saving_one_formula_parses_it_once_and_compiles_nothing(tmp_path, counted):
    eng = Engine(f"sqlite:///{tmp_path / 'f.db'}")
    eng.load_data("sample_data/data.csv")
    eng.set_formulas({"gm": "(revenue - cogs) / revenue", "gm2": "lag(gm) * 2"})
    counted.update(parse=0, compile=0)
    eng.set_formula("gm3", "cs_rank(gm2) + coalesce(gm, 0)")
    assert counted == {"parse": 1, "compile": 0}
    counted.update(parse=0)
    eng.set_formula("gm", "(revenue - cogs) / cogs")  # an edit, with users downstream
    assert counted == {"parse": 1, "compile": 0}
    counted.update(parse=0)
    assert eng.check_formula("gm", "revenue / cogs").is_valid
    assert counted == {"parse": 1, "compile": 0}


def test_engine_paths_learn_facts_without_compiling(tmp_path, counted):
    eng = Engine(f"sqlite:///{tmp_path / 'f.db'}")
    eng.load_data("sample_data/data.csv")
    eng.set_formulas({"gm": "(revenue - cogs) / revenue", "c": "coalesce(gm, 0)",
                      "rk": "cs_rank(lag(gm))"})
    eng.recalc()
    period = eng.records("rk")["period"].iloc[-1]
    counted.update(compile=0)
    last = eng.records("revenue")["period"].max()
    new = pd.DataFrame({"item": ["revenue"], "entity": ["NEWCO"],
                        "period": [last + pd.offsets.QuarterEnd()], "value": [1.0]})
    load = eng.load_data(new)  # the calendar and new-entity rules ask every formula
    assert load.new_entities == 1 and {"gm", "c", "rk"} <= set(load.marked_stale)
    eng.status()
    eng.explain("rk", eng.entities()["code"][0], period)
    eng.dependents("gm", transitive=True)
    assert counted["compile"] == 0
