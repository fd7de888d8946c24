"""The scheduler and the demand-driven planner."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tracecalc.errors import CycleError
from tracecalc.graph import Scheduler, generations, plan, static_order
from tracecalc.graph.scheduler import SchedulerError

TASKS = {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"]}
PRIORITY = {"A": 1.0, "B": 1.0, "C": -10.0, "D": 1.0}


def test_callbacks_fire_when_dependencies_are_done():
    s: Scheduler[str] = Scheduler()
    for n, deps in TASKS.items():
        s.add(n, deps)
    fired: list[str] = []
    for n in "DCBA":
        s.schedule(n, fired.append)
    assert fired == ["A"]  # no dependencies: at once
    s.done("A")
    assert sorted(fired) == ["A", "B", "C"]
    s.done("B")
    assert "D" not in fired
    s.done("C")
    assert fired[-1] == "D" and Counter(fired) == Counter("ABCD")
    s.done("C")  # twice: harmless
    assert len(fired) == 4


def test_schedule_after_dependencies_are_done_fires_at_once():
    s: Scheduler[str] = Scheduler()
    s.add("b", ["a"])
    s.done("a")
    fired: list[str] = []
    s.schedule("b", fired.append)
    assert fired == ["b"] and s.is_ready("b") and not s.is_done("b")


def test_misuse_raises():
    s: Scheduler[str] = Scheduler()
    with pytest.raises(SchedulerError):
        s.schedule("x", print)
    with pytest.raises(SchedulerError):
        s.done("x")
    s.add("b", ["a"])
    s.schedule("b", lambda n: None)
    with pytest.raises(SchedulerError):
        s.add("b", ["c"])


def test_a_callback_may_release_the_next_node():
    # A chain run entirely from callbacks: each callback marks its node done. Deeper than the
    # recursion limit: the scheduler must not recurse once per link.
    s: Scheduler[int] = Scheduler()
    n = 5000
    for i in range(n):
        s.add(i, [i - 1] if i else [])
    order: list[int] = []

    def run(node: int) -> None:
        order.append(node)
        s.done(node)

    for i in reversed(range(n)):
        if i:
            s.schedule(i, run)
    s.schedule(0, run)
    assert order == list(range(n))


@pytest.mark.parametrize("seed", range(5))
def test_stress_concurrent_done_calls(seed):
    """Random DAG of 400 nodes; 8 threads run ready nodes and call done concurrently."""
    rng = random.Random(seed)
    n = 400
    deps = {i: rng.sample(range(i), min(i, rng.randint(0, 4))) for i in range(n)}
    s: Scheduler[int] = Scheduler()
    for i, ds in deps.items():
        s.add(i, ds)
    lock = threading.Lock()
    fired: Counter[int] = Counter()
    finished: set[int] = set()
    violations: list[int] = []
    all_done = threading.Event()
    pool = ThreadPoolExecutor(max_workers=8)

    def work(node: int) -> None:
        with lock:
            fired[node] += 1
            if not all(d in finished for d in deps[node]):
                violations.append(node)
        # done() from many threads at once; releases fire more work on the pool
        with lock:
            finished.add(node)
            last = len(finished) == n
        s.done(node)
        if last:
            all_done.set()

    def when_ready(node: int) -> None:
        pool.submit(work, node)

    order = list(range(n))
    rng.shuffle(order)  # schedule in random order, from several threads
    with ThreadPoolExecutor(max_workers=4) as schedulers:
        list(schedulers.map(lambda i: s.schedule(i, when_ready), order))
    assert all_done.wait(30)
    pool.shutdown(wait=True)
    assert violations == []
    assert set(fired) == set(range(n)) and set(fired.values()) == {1}


def test_static_order_and_generations():
    assert static_order(TASKS, key=PRIORITY.__getitem__) == ["A", "C", "B", "D"]
    assert static_order(TASKS) == ["A", "B", "C", "D"]
    assert generations(TASKS) == [["A"], ["B", "C"], ["D"]]
    with pytest.raises(CycleError) as info:
        static_order({"a": ["b"], "b": ["c"], "c": ["a"]})
    assert info.value.cycle[0] == info.value.cycle[-1] and len(info.value.cycle) == 4


def test_plan_visits_each_node_once_and_skips_dependencies_of_cached_nodes():
    graph = {"report": ["margin", "growth"], "margin": ["revenue", "cogs"],
             "growth": ["revenue_ttm"], "revenue_ttm": ["revenue"], "revenue": ["raw"],
             "cogs": ["raw"], "raw": []}
    visits: Counter[str] = Counter()

    def deps(n: str) -> list[str]:
        visits[n] += 1
        return graph[n]

    p = plan(["report"], deps, cached=lambda n: n == "revenue_ttm")
    # growth needs nothing computed (revenue_ttm comes from the cache), so it is ready first
    assert p.order == ("growth", "raw", "revenue", "cogs", "margin", "report")
    assert p.cached == {"revenue_ttm"}
    assert set(visits.values()) == {1}
    assert "revenue_ttm" not in visits  # cached: its dependencies were not asked for
    assert p.visited == 7

    visits.clear()
    p = plan(["report", "margin"], deps, cached=lambda n: n in ("margin", "growth"))
    assert p.order == ("report",) and p.cached == {"margin", "growth"}
    assert set(visits) == {"report"}


def test_plan_refuses_a_cycle():
    with pytest.raises(CycleError):
        plan(["a"], {"a": ["b"], "b": ["a"]}.__getitem__)
