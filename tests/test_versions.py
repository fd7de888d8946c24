"""Report dates and versions of data points (issue 13, item 2): a later known_at adds a
version, the same one replaces it, nothing is silently overwritten."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracecalc import DataError, Engine, NotFoundError

Q = ["2024-03-31", "2024-06-30", "2024-09-30"]


def rows(*points, item="eps"):
    """(entity, period, known_at, value) tuples as a data frame."""
    return pd.DataFrame({"item": item, "entity": [p[0] for p in points],
                         "period": [p[1] for p in points],
                         "known_at": [p[2] for p in points],
                         "value": [p[3] for p in points]})


def test_a_restatement_adds_a_version_and_a_correction_replaces_it(engine):
    res = engine.load_data(rows(("A", Q[0], "2024-04-25", 1.0), ("A", Q[1], "2024-07-30", 2.0),
                                ("B", Q[0], "", 5.0)), frequencies={"eps": "quarterly"})
    assert res.versions == 2  # B's point is known at its period: no version row
    assert engine.history_data("eps", "B", Q[0]) == [
        {"known_at": Q[0], "value": 5.0, "latest": True, "loaded_as": None}]
    engine.load_data(rows(("A", Q[0], "2024-08-15", 1.5)))  # restated
    assert engine.history_data("eps", "A", Q[0]) == [
        {"known_at": "2024-04-25", "value": 1.0, "latest": False, "loaded_as": None},
        {"known_at": "2024-08-15", "value": 1.5, "latest": True, "loaded_as": None}]
    got = engine.records("eps").set_index(["entity", "period"])["value"]
    assert got[("A", pd.Timestamp(Q[0]))] == 1.5  # the latest view
    res = engine.load_data(rows(("A", Q[0], "2024-04-25", 1.1)))  # a correction
    assert res.versions == 2  # one row out, one in
    assert [v["value"] for v in engine.history_data("eps", "A", Q[0])] == [1.1, 1.5]
    assert engine.records("eps").set_index(["entity", "period"])["value"][
        ("A", pd.Timestamp(Q[0]))] == 1.5
    res = engine.load_data(rows(("A", Q[0], "2024-04-25", 1.1)))  # the same again
    assert res.versions == 0 and res.marked_stale == ()


def test_a_value_without_known_at_gains_versions_when_restated(engine):
    engine.load_data(rows(("A", Q[0], "", 1.0)), frequencies={"eps": "quarterly"})
    engine.set_formula("twice", "eps * 2")
    engine.recalc()
    res = engine.load_data(rows(("A", Q[0], "2024-06-01", 3.0)))
    assert res.marked_stale == ("twice",)
    assert [(v["known_at"], v["value"]) for v in engine.history_data("eps", "A", Q[0])] == [
        (Q[0], 1.0), ("2024-06-01", 3.0)]
    engine.recalc()
    assert engine.records("twice")["value"].tolist() == [6.0]
    # restated as missing: the latest view has no point, the history keeps both numbers
    engine.load_data(rows(("A", Q[0], "2024-09-01", float("nan"))))
    assert len(engine.records("eps")) == 0
    assert [v["value"] for v in engine.history_data("eps", "A", Q[0])] == [1.0, 3.0, None]
    engine.recalc()
    assert len(engine.records("twice")) == 0


def test_known_at_before_its_period_is_refused_with_its_row(engine):
    with pytest.raises(DataError) as info:
        engine.load_data(rows(("A", Q[0], "2024-04-25", 1.0), ("A", Q[1], "2024-06-01", 2.0)),
                         frequencies={"eps": "quarterly"})
    assert info.value.row == 3
    assert "known_at 2024-06-01 is before its period 2024-06-30" in str(info.value)
    with pytest.raises(DataError, match="bad known_at 'soon'"):
        engine.load_data(rows(("A", Q[0], "soon", 1.0)), frequencies={"eps": "quarterly"})
    with pytest.raises(DataError, match=r"duplicate key \(item 'eps', entity 'A', period "
                       r"2024-03-31, known_at 2024-04-25\) also on row 3"):
        engine.load_data(rows(("A", Q[0], "2024-04-25", 1.0), ("A", Q[0], "2024-04-25", 2.0)),
                         frequencies={"eps": "quarterly"})
    assert engine.items() == {}


def test_deleting_a_point_deletes_its_versions(engine):
    engine.load_data(rows(("A", Q[0], "2024-04-25", 1.0), ("A", Q[0], "2024-08-01", 2.0),
                          ("A", Q[1], "2024-07-25", 3.0)), frequencies={"eps": "quarterly"})
    engine.delete_data("eps", "A", Q[0])
    with pytest.raises(NotFoundError):
        engine.history_data("eps", "A", Q[0])
    engine.load_data(rows(("A", Q[0], "", 9.0)))
    assert [v["value"] for v in engine.history_data("eps", "A", Q[0])] == [9.0]


def test_history_data_on_the_command_line(cli, tmp_path):
    src = tmp_path / "eps.csv"
    rows(("ACME", Q[0], "2024-04-25", 1.25), ("ACME", Q[0], "2024-08-15", 1.5)).assign(
        frequency="quarterly").to_csv(src, index=False)
    assert "2 version rows written" in cli("load-data", str(src)).output
    out = cli("history-data", "eps", "ACME", Q[0]).output
    assert out == ("known_at    value\n"
                   "2024-04-25   1.25\n"
                   "2024-08-15    1.5  latest\n")  # values right-aligned under the header
    res = cli("history-data", "eps", "ACME", "2023-12-31", code=1)
    assert res.output == ("error: no period with eps data for ACME named '2023-12-31'. Did you "
                          "mean '2024-03-31'?\n")


# A reference written from the rules: each (entity, period, known_at) holds the value
# loaded last for it; the versions of a point are its known_ats in order; a point loaded
# without known_at is known at its period; an empty first version known at the period is
# no version (no value yet).
_loads = st.lists(st.lists(st.tuples(
    st.sampled_from(["A", "B"]), st.sampled_from(Q),
    st.sampled_from([None, "2024-10-01", "2024-11-15", "2025-02-01"]),
    st.sampled_from([1.0, 2.0, -0.5, float("nan")])), min_size=1, max_size=8,
    unique_by=lambda t: (t[0], t[1], t[2] or t[1])), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_loads)
def test_versions_follow_the_rules_for_any_sequence_of_loads(tmp_path_factory, loads):
    with Engine(f"sqlite:///{tmp_path_factory.mktemp('v') / 'v.db'}") as eng:
        _follow_the_rules(eng, loads)


def _follow_the_rules(eng, loads):
    want: dict[tuple, dict[str, float]] = {}
    for batch in loads:
        for e, p, k, v in batch:
            versions = want.setdefault((e, p), {})
            if k is None and not (len(versions) > 1 or set(versions) - {p}):
                # an unversioned point: the load replaces it (empty: deletes it)
                versions.clear()
                if not math.isnan(v):
                    versions[p] = v
            else:
                versions[k or p] = v
        for (_, p), versions in want.items():  # an empty first version at its period
            if versions and min(versions) == p and math.isnan(versions[p]):  # is none
                del versions[p]
        eng.load_data(rows(*[(e, p, k or "", v) for e, p, k, v in batch]),
                      frequencies={"eps": "quarterly"})
    latest = eng.records("eps").set_index(["entity", "period"])["value"].to_dict()
    for (e, p), versions in want.items():
        if not versions:
            with pytest.raises(NotFoundError):
                eng.history_data("eps", e, p)
            continue
        got = eng.history_data("eps", e, p)
        assert [(g["known_at"], g["value"]) for g in got] == [
            (k, None if math.isnan(v) else v) for k, v in sorted(versions.items())]
        last = versions[max(versions)]
        assert latest.get((e, pd.Timestamp(p)), math.nan) == last or (
            math.isnan(last) and (e, pd.Timestamp(p)) not in latest)


def test_export_as_of_a_date(cli, tmp_path):
    src = tmp_path / "eps.csv"
    rows(("ACME", Q[0], "2024-04-25", 1.25), ("ACME", Q[0], "2024-08-15", 1.5),
         ("ACME", Q[1], "2024-07-30", 2.0)).assign(frequency="quarterly").to_csv(src,
                                                                               index=False)
    cli("load-data", str(src))
    assert cli("export", "eps", "--as-of", "2024-08-01").stdout == (
        "formula,entity,period,value\neps,ACME,2024-03-31,1.25\neps,ACME,2024-06-30,2.0\n")
    assert cli("export", "eps", "--as-of", "2024-05-01").stdout == (
        "formula,entity,period,value\neps,ACME,2024-03-31,1.25\n")
    assert "eps,ACME,2024-03-31,1.5" in cli("export", "eps").stdout
    assert "bad as_of 'soon'" in cli("export", "eps", "--as-of", "soon", code=1).stderr
