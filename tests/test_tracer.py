"""The staleness rules (tracecalc.tracer), directly: no database."""

from __future__ import annotations

import numpy as np
import pytest

from tracecalc import tracer
from tracecalc.facts import facts_of
from tracecalc.graph import Graph
from tracecalc.model import FormulaState

FRESH, STALE, PARTIAL = FormulaState.FRESH, FormulaState.STALE, FormulaState.PARTIAL


def ids(*xs):
    return np.array(xs, dtype=np.int64)


def traits(**exprs):
    return {n: facts_of(e, n, "quarterly") for n, e in exprs.items()}


def test_a_data_change_marks_direct_users_for_the_changed_entities_only():
    f = traits(gm="revenue - cogs", rk="cs_rank(revenue)", other="cogs * 2")
    marks = tracer.data_changed({"revenue": ids(3, 5)}, {"revenue": ["gm", "rk"]}, f)
    assert list(marks.stale) == ["rk"]  # a rank moves for every entity
    assert marks.partial["gm"].tolist() == [3, 5]
    assert "other" not in marks.names and marks.bump


def test_a_grown_calendar_reaches_formulas_that_look_along_time_or_fill_from_nothing():
    f = traits(gm="revenue - cogs", g="growth(revenue)", c="coalesce(revenue, 0)",
               filled="ffill(revenue, 2)")
    marks = tracer.data_changed({}, {}, f, grown={"quarterly"})
    assert set(marks.stale) == {"g", "c", "filled"} and not marks.partial
    # a lost period changes only windows along time
    marks = tracer.data_changed({}, {}, f, shrunk={"quarterly"})
    assert set(marks.stale) == {"g", "filled"}
    # another frequency's calendar reaches nothing here
    assert not tracer.data_changed({}, {}, f, grown={"daily"})


def test_new_entities_reach_formulas_with_values_where_every_input_is_missing():
    f = traits(gm="revenue - cogs", c="coalesce(revenue, 0)", n="isnull(revenue)")
    marks = tracer.data_changed({"revenue": ids(7)}, {"revenue": ["gm"]}, f,
                                new_entities=ids(7, 8))
    assert {k: v.tolist() for k, v in marks.partial.items()} == {
        "gm": [7], "c": [7, 8], "n": [7, 8]}


def test_a_changed_attribute_marks_the_formulas_grouping_by_it_for_every_entity():
    f = traits(ind="cs_demean(x, by=industry)", sec="cs_rank(x, by=sector) * 2",
               both="cs_zscore(cs_demean(x, by=industry), by=country)", plain="cs_rank(x)",
               gm="x - y")
    marks = tracer.attributes_changed({"industry"}, f)
    # attributes do not vary in time: every period and entity of each user, nothing else
    # (what lies downstream follows through propagate)
    assert list(marks.stale) == ["ind", "both"] and not marks.partial and marks.bump
    assert marks.since == {"ind": None, "both": None}  # from the first period
    assert set(tracer.attributes_changed({"sector", "country"}, f).stale) == {"sec", "both"}
    assert not tracer.attributes_changed({"name", "region"}, f)
    assert not tracer.attributes_changed(set(), f)


def test_marks_merge_and_everything_wins():
    m = tracer.Marks()
    m.some("a", ids(2))
    m.some("a", ids(1, 2))
    assert m.partial["a"].tolist() == [1, 2]
    m.everything("a")
    m.some("a", ids(9))
    assert list(m.stale) == ["a"] and "a" not in m.partial
    m.some("b", ids())  # no entity: no mark
    assert m.names == ["a"]


def test_a_run_result_marks_users_where_it_changed_without_bumping():
    m = tracer.result_written([("u", False, False), ("r", True, False)], ids(4))
    assert not m.bump and list(m.stale) == ["r"] and m.partial["u"].tolist() == [4]
    assert not tracer.result_written([("u", False, False)], ids())  # early cutoff


def test_saves_and_full_runs_mark_every_entity():
    assert list(tracer.formulas_saved(["a", "b"]).stale) == ["a", "b"]
    assert list(tracer.full_run(["x"]).stale) == ["x"]


def graph(edges: dict[str, list[str]]) -> Graph[str]:
    g: Graph[str] = Graph()
    for n, refs in edges.items():
        g.add_node(n, refs)
    return g


def test_propagate_makes_fresh_formulas_downstream_pending_in_recalculation_order():
    #   revenue -> a -> b -> d ; a -> c (partial already) ; e elsewhere
    g = graph({"revenue": [], "a": ["revenue"], "b": ["a"], "c": ["a"], "d": ["b", "c"],
               "e": ["revenue"]})
    states = {"a": FRESH, "b": FRESH, "c": PARTIAL, "d": FRESH, "e": FRESH}
    key = {"a": 1, "b": 3, "c": 2, "d": 4, "e": 5}.__getitem__
    handled, pending = tracer.propagate(g, ["a"], states, key)
    assert handled == ["a", "c", "b", "d"]  # the smallest id first among ready ones
    assert pending == ["b", "d"]  # c keeps its own marks; a is marked, not pending
    assert tracer.propagate(g, [], states, key) == ([], [])


def test_entities_to_compute_widens_cross_sectional_formulas():
    universe = ids(1, 2, 3, 4)
    assert tracer.entities_to_compute(ids(2), [ids(3), ids()], False, universe).tolist() == \
        [2, 3]
    assert tracer.entities_to_compute(ids(), [ids(3)], True, universe).tolist() == \
        [1, 2, 3, 4]
    assert tracer.entities_to_compute(ids(), [ids()], True, universe).tolist() == []


@pytest.mark.parametrize("text,lookback", [
    ("revenue - cogs", {"revenue": 0, "cogs": 0}),
    ("lag(revenue, 2)", {"revenue": 2}),
    ("ts_mean(lag(revenue), 4) + revenue", {"revenue": 4}),
    ("ttm(revenue)", {"revenue": 3}),
    ("ema(revenue, 5) + lag(cogs)", {"revenue": None, "cogs": 1}),
    ("lag(ema(revenue, 3), 2)", {"revenue": None}),
    ("cs_rank(ts_sum(revenue, 3))", {"revenue": 2}),
    ("ffill(revenue, 3)", {"revenue": 3}),
])
def test_lookback_per_reference_adds_up_along_the_tree(text, lookback):
    assert dict(facts_of(text).lookback) == lookback


def test_marks_start_where_the_change_does():
    f = traits(gm="revenue - cogs", g="growth(revenue)", c="coalesce(revenue, 0)",
               rk="cs_rank(revenue)")
    q2, q3 = np.datetime64("2024-06-30"), np.datetime64("2024-09-30")
    marks = tracer.data_changed({"revenue": ids(3)}, {"revenue": ["gm", "rk"]}, f,
                                first={"revenue": q2})
    assert marks.since == {"gm": q2, "rk": q2}
    # a grown calendar: from its first new period; a new entity's values from nothing:
    # from the first period (None)
    marks = tracer.data_changed({}, {}, f, grown={"quarterly"}, added={"quarterly": np.array([q3])})
    assert marks.since == {"g": q3, "c": q3}
    marks = tracer.data_changed({}, {}, f, grown={"quarterly"}, added={"quarterly": np.array([q3])},
                                new_entities=ids(9))
    assert marks.since["c"] is None and marks.since["g"] == q3
    # marks merge to the earliest; a run's results mark from their first changed period,
    # and readers through asof from the day the change became known
    m = tracer.Marks()
    m.some("a", ids(1), q3)
    m.some("a", ids(2), q2)
    assert m.since["a"] == q2 and m.partial["a"].tolist() == [1, 2]
    m.everything("a")
    assert m.since["a"] is None
    k = np.datetime64("2024-08-15")
    m = tracer.result_written([("d", False, True), ("q", False, False)], ids(1), q2, k)
    assert m.since == {"d": k, "q": q2}
    d = facts_of("close / asof(eps)", "pe", "daily")
    marks = tracer.data_changed({"eps": ids(1)}, {"eps": ["pe"]}, {"pe": d},
                                first={"eps": q2}, known={"eps": k})
    assert marks.since == {"pe": k}


def test_first_to_compute_takes_the_earliest_change():
    q1, q2 = np.datetime64("2024-03-31"), np.datetime64("2024-06-30")
    assert tracer.first_to_compute(ids(), q1, [ids(1)], [q2]) == q2  # no own marks
    assert tracer.first_to_compute(ids(4), q2, [ids(1), ids()], [q1, None]) == q1
    assert tracer.first_to_compute(ids(4), None, [ids(1)], [q2]) is None
