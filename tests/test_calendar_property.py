"""Property (issue 13): loading data for one entity never changes another entity's records.

Each frequency's calendar is a fixed grid, so a load for entity A that adds dates before,
inside or after the calendar moves no window of entity B. For every formula that reads
entity by entity (cross-sectional ones read the others by design), B's records at the dates
the calendar had stay bit for bit what they were; at dates the load added at its ends B may
gain records (``lag`` and ``ffill`` carry B's own values into a new quarter), and those are
exactly what B's data alone gives over the same span: a database holding only B's data and
one unrelated point at each end of the calendar has the same records for B."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tracecalc.engine import Engine

GRIDS = {
    "quarterly": [str(d.date()) for d in pd.date_range("2022-03-31", periods=16, freq="QE")],
    "daily": [str(d.date()) for d in pd.bdate_range("2024-06-03", periods=16)],
}
TEMPLATES = ["lag(x, 1)", "ts_sum(x, 2)", "growth(x, 1)", "diff(y, 2)", "ema(x, 2)",
             "ffill(x, 2)", "x * 2 + y", "ts_mean(x, 3) - lag(y, 2)", "ts_max(y, 4)"]
VALUES = st.sampled_from([1.0, -2.0, 3.5, 10.0, 0.25])
cells = st.lists(st.tuples(st.sampled_from(["x", "y"]), st.integers(4, 11), VALUES),
                 min_size=2, max_size=14)


def frame(entity: str, grid: list[str], points) -> pd.DataFrame:
    rows = {(item, grid[i]): v for item, i, v in points}
    return pd.DataFrame([(i, entity, p, v) for (i, p), v in rows.items()],
                        columns=["item", "entity", "period", "value"])


def _cells(eng, name: str) -> list[tuple]:
    """B's records: (period, the value's bits)."""
    got = eng.records(name, entities="B")
    return [(str(p)[:10], v.hex()) for p, v in zip(got["period"], got["value"])]


@settings(max_examples=12, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking: minutes
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(freq=st.sampled_from(sorted(GRIDS)), a=cells, b=cells,
       later=st.lists(st.tuples(st.sampled_from(["x", "y"]), st.integers(0, 15), VALUES),
                      min_size=1, max_size=8),
       picks=st.lists(st.integers(0, len(TEMPLATES) - 1), min_size=1, max_size=4, unique=True))
def test_a_load_for_one_entity_leaves_the_others_records_alone(freq, a, b, later, picks):
    grid = GRIDS[freq]
    with Engine("sqlite:///:memory:") as eng:
        z = frame("Z", grid, [("x", 4, 1.0), ("y", 4, 1.0), ("x", 11, 1.0), ("y", 11, 1.0)])
        both = pd.concat([frame("A", grid, a), frame("B", grid, b), z], ignore_index=True)
        eng.load_data(both, frequencies={"x": freq, "y": freq})
        for i in picks:
            eng.set_formula(f"f{i}", TEMPLATES[i])
        eng.recalc()
        before = {f"f{i}": _cells(eng, f"f{i}") for i in picks}
        had = [str(d)[:10] for d in both["period"]]
        old = {g for g in grid if min(had) <= g <= max(had)}  # the calendar before
        eng.load_data(frame("A", grid, later))  # before, inside and after the calendar
        eng.recalc()
        span = sorted({str(d)[:10] for d in pd.concat([eng.records("x"), eng.records(
            "y")])["period"]})
        for name, want in before.items():
            got = _cells(eng, name)
            assert [c for c in got if c[0] in old] == want, name  # unchanged where it was
        with Engine("sqlite:///:memory:") as alone:  # B's data alone, over the same span
            alone.load_data(pd.concat([frame("B", grid, b), z, pd.DataFrame(
                {"item": "x", "entity": "Z", "period": [span[0], span[-1]], "value": 0.0})])
                .drop_duplicates(["item", "entity", "period"]), frequencies={"x": freq, "y": freq})
            for i in picks:
                alone.set_formula(f"f{i}", TEMPLATES[i])
            alone.recalc()
            for name in before:
                assert _cells(eng, name) == _cells(alone, name), name
        # and what the increments left equals a full recalculation
        assert eng.recalc(full=True).records_written == 0
