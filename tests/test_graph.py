"""Tests for the generic dependency graph: literal graphs first, then properties."""

from __future__ import annotations

import graphlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracecalc.graph
from tracecalc.errors import CycleError
from tracecalc.graph import Graph


def make(spec: dict) -> Graph:
    """Build a graph from ``{node: [predecessors]}`` in dict order."""
    g: Graph = Graph()
    for node, preds in spec.items():
        g.add_node(node, preds)
    return g


def assert_cycle(path: list, expected: list) -> None:
    """``path`` is ``expected`` (a cycle without the repeated node) from any start."""
    assert path[0] == path[-1]
    body = path[:-1]
    assert len(body) == len(expected)
    i = expected.index(body[0])
    assert body == expected[i:] + expected[:i]


def assert_real_cycle(g: Graph, path: list) -> None:
    """Each node of ``path`` depends directly on the next, and it closes on itself."""
    assert len(path) >= 2
    assert path[0] == path[-1]
    for a, b in itertools.pairwise(path):
        assert b in g.predecessors(a), (a, b)
    assert len(set(path[:-1])) == len(path) - 1  # simple: no node repeated


def assert_order(g: Graph, order: list) -> None:
    pos = {n: i for i, n in enumerate(order)}
    assert len(pos) == len(order)
    for node, pred in g.edges():
        if node in pos and pred in pos:
            assert pos[pred] < pos[node], (node, pred)


# --- building ---------------------------------------------------------------------------


def test_add_node_replaces_predecessors():
    g = make({"a": [], "b": [], "c": ["a", "b"]})
    g.add_node("c", ["b", "d"])
    assert g.predecessors("c") == {"b", "d"}
    assert g.successors("a") == frozenset()
    assert g.successors("b") == {"c"}
    assert list(g) == ["a", "b", "c", "d"]
    assert "d" in g and "zz" not in g and len(g) == 4


def test_edges_and_nodes_in_insertion_order():
    g = make({"x": [], "c": ["x"], "a": ["c", "x"]})
    assert g.nodes() == ["x", "c", "a"]
    assert g.edges() == [("c", "x"), ("a", "x"), ("a", "c")]
    assert repr(g) == "Graph(3 nodes, 3 edges)"


def test_remove_node_drops_edges_both_ways():
    g = make({"a": [], "b": ["a"], "c": ["b"], "d": ["b", "d"]})
    g.remove_node("b")
    assert "b" not in g
    assert g.successors("a") == frozenset()
    assert g.predecessors("c") == frozenset()
    assert g.predecessors("d") == {"d"}
    g.remove_node("d")  # self-loop
    assert g.nodes() == ["a", "c"]
    assert g.edges() == []
    with pytest.raises(KeyError):
        g.remove_node("b")


def test_remove_edge_and_add_edge():
    g = make({"a": [], "b": ["a"]})
    g.remove_edge("b", "a")
    assert g.edges() == []
    with pytest.raises(KeyError):
        g.remove_edge("b", "a")
    g.add_edge("c", "b")
    assert g.edges() == [("c", "b")]
    assert g.nodes() == ["a", "b", "c"]


def test_readded_node_goes_last_in_tie_breaks():
    g = make({"a": [], "b": [], "c": []})
    g.remove_node("a")
    g.add_node("a")
    assert g.topological_order() == ["b", "c", "a"]


def test_copy_is_independent():
    g = make({"a": [], "b": ["a"]})
    h = g.copy()
    h.add_edge("c", "b")
    h.remove_edge("b", "a")
    assert g.edges() == [("b", "a")]
    assert h.edges() == [("c", "b")]


# --- reachability ------------------------------------------------------------------------

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}


def test_ancestors_and_descendants():
    g = make(DIAMOND)
    assert g.ancestors("d") == {"a", "b", "c"}
    assert g.ancestors(["b", "c"]) == {"a"}
    assert g.descendants("a") == {"b", "c", "d"}
    assert g.descendants({"b", "e"}) == {"d"}
    assert g.ancestors("a") == set()


def test_start_included_only_through_cycle():
    g = make({"a": ["c"], "b": ["a"], "c": ["b"], "d": ["c"]})
    assert g.ancestors("a") == {"a", "b", "c"}
    assert g.descendants("d") == set()


def test_tuple_nodes_and_unknown_nodes():
    g = make({("x", 1): [], ("y", 2): [("x", 1)]})
    assert g.descendants(("x", 1)) == {("y", 2)}
    assert g.descendants([("x", 1)]) == {("y", 2)}
    with pytest.raises(KeyError):
        g.ancestors("zz")
    with pytest.raises(KeyError):
        g.ancestors(["zz"])


def test_deep_chain_needs_no_recursion():
    g: Graph = Graph()
    n = 100_000
    for i in range(1, n):
        g.add_edge(i, i - 1)
    assert len(g.ancestors(n - 1)) == n - 1
    assert len(g.descendants(0)) == n - 1
    assert g.topological_order()[:3] == [0, 1, 2]
    assert g.find_cycles() == []
    assert g.cycle_if_added(5, [4]) is None
    assert len(g.cycle_if_added(0, [n - 1])) == n + 1
    g.add_edge(0, n - 1)
    (cycle,) = g.find_cycles()
    assert_cycle(cycle, list(range(n - 1, -1, -1)))


# --- ordering ----------------------------------------------------------------------------


def test_priority_order_is_a_true_priority():
    g = make({"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"]})
    prio = {"A": 1, "B": 1, "C": -10, "D": 1}
    assert g.topological_order(key=prio.__getitem__) == ["A", "C", "B", "D"]


def test_later_ready_node_with_smaller_key_overtakes():
    # x and y are ready at once; z only after x, but with the smallest key it beats y.
    g = make({"x": [], "y": [], "z": ["x"]})
    prio = {"x": 0, "y": 5, "z": 1}
    assert g.topological_order(key=prio.__getitem__) == ["x", "z", "y"]


def test_default_order_follows_insertion():
    g = make({"e": [], **DIAMOND})
    assert g.topological_order() == ["e", "a", "b", "c", "d"]
    g2 = make({"d": ["c", "b"], "c": ["a"], "b": ["a"]})
    assert g2.topological_order() == ["a", "c", "b", "d"]


def test_chain_and_disconnected_parts():
    g = make({"c1": [], "c2": ["c1"], "c3": ["c2"], "x": [], "y": ["x"]})
    assert g.topological_order() == ["c1", "c2", "c3", "x", "y"]
    assert g.generations() == [["c1", "x"], ["c2", "y"], ["c3"]]


def test_generations_diamond():
    assert make(DIAMOND).generations() == [["a", "e"], ["b", "c"], ["d"]]
    assert Graph().generations() == []
    assert Graph().topological_order() == []


def test_restricted_order_ignores_outside_edges():
    g = make({"a": [], "b": ["a"], "c": ["b"], "d": ["c", "a"]})
    assert g.topological_order(["d", "b"]) == ["b", "d"]
    assert g.generations(["d", "b", "a"]) == [["a"], ["b", "d"]]
    # The cycle lies outside the restriction, so it does not matter.
    g.add_edge("a", "c")
    assert g.topological_order(["d", "c"]) == ["c", "d"]
    with pytest.raises(KeyError):
        g.topological_order(["zz"])


def test_order_raises_cycle_error_with_path():
    g = make({"rev": ["price"], "margin": ["rev"], "price": ["margin"], "z": ["rev"]})
    with pytest.raises(CycleError) as exc:
        g.topological_order()
    assert_cycle(exc.value.cycle, ["rev", "price", "margin"])
    assert str(exc.value) == "cycle: rev -> price -> margin -> rev"
    with pytest.raises(CycleError):
        g.generations()


# --- cycles ------------------------------------------------------------------------------


def test_find_cycles_none_in_dag():
    assert make(DIAMOND).find_cycles() == []


def test_find_cycles_self_loop():
    g = make({"a": ["a"], "b": ["a"]})
    assert g.find_cycles() == [["a", "a"]]


def test_find_cycles_two_separate_cycles():
    g = make({"a": ["b"], "b": ["a"], "m": ["a"], "x": ["z"], "y": ["x"], "z": ["y"]})
    first, second = g.find_cycles()
    assert_cycle(first, ["a", "b"])
    assert_cycle(second, ["x", "z", "y"])


def test_cycle_checked_from_any_start():
    # Inserted so that the component's first node is in the middle of the ring.
    g = make({"c": ["d"], "a": ["b"], "b": ["c"], "d": ["a"]})
    (cycle,) = g.find_cycles()
    assert_cycle(cycle, ["a", "b", "c", "d"])
    assert cycle[0] == "c"


def test_find_cycles_reports_shortest_cycle_in_component():
    g = make({"a": ["b"], "b": ["c", "a"], "c": ["a"]})
    (cycle,) = g.find_cycles()
    assert_cycle(cycle, ["a", "b"])


def test_find_cycles_restricted():
    g = make({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"]})
    assert g.find_cycles(["a", "b"]) == []
    assert g.find_cycles(["d", "a"]) == [["d", "d"]]


def test_cycle_if_added():
    g = make({"price": [], "rev": ["price"], "margin": ["rev"], "other": []})
    before = g.edges()
    cycle = g.cycle_if_added("price", ["other", "margin"])
    assert cycle == ["price", "margin", "rev", "price"]
    assert g.edges() == before
    assert g.cycle_if_added("price", ["other"]) is None
    assert g.cycle_if_added("margin", ["margin"]) == ["margin", "margin"]
    assert g.cycle_if_added("new", ["margin", "new2"]) is None
    assert g.cycle_if_added("rev", ["price"]) is None
    with pytest.raises(CycleError) as exc:
        g.check_add("price", ["margin"])
    assert str(exc.value) == "cycle: price -> margin -> rev -> price"
    g.check_add("margin", ["price"])  # fine
    assert g.edges() == before


def test_cycle_if_added_ignores_current_predecessors():
    # add_node replaces predecessors, so b's old edge to a cannot be part of the cycle.
    g = make({"a": [], "b": ["a"], "c": ["b"]})
    assert g.cycle_if_added("b", ["c"]) == ["b", "c", "b"]
    g2 = make({"a": ["b"], "b": []})
    assert g2.cycle_if_added("a", ["b"]) is None


def test_none_and_zero_are_ordinary_nodes():
    g = make({None: [0], 0: [], 1: [None]})
    assert g.cycle_if_added(0, [1]) == [0, 1, None, 0]
    g.add_edge(0, 1)
    assert_cycle(g.find_cycles()[0], [0, 1, None])


def test_cycle_if_added_reports_short_path():
    g = make({"t": [], "l1": ["t"], "l2": ["l1"], "l3": ["l2"], "s": ["t"]})
    assert g.cycle_if_added("t", ["l3", "s"]) == ["t", "s", "t"]


def test_import_does_not_load_heavy_libraries():
    src = str(Path(tracecalc.graph.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, tracecalc.graph\n"
        "bad = [m for m in ('pandas', 'numpy', 'sqlalchemy') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == ""


# --- properties ----------------------------------------------------------------------------


@st.composite
def digraphs(draw, dag: bool) -> Graph:
    n = draw(st.integers(0, 12))
    pairs = st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, max(n - 1, 0)))
    edges = draw(st.lists(pairs, max_size=30)) if n else []
    g: Graph = Graph()
    for i in draw(st.permutations(range(n))):
        g.add_node(i)
    for a, b in edges:
        if not dag or a > b:
            g.add_edge(a, b)
    return g


def to_dict(g: Graph) -> dict:
    return {n: g.predecessors(n) for n in g}


@settings(max_examples=200, deadline=None)
@given(digraphs(dag=True), st.dictionaries(st.integers(0, 11), st.integers(-3, 3)))
def test_dag_order_respects_every_edge(g, prio):
    order = g.topological_order()
    assert sorted(order) == sorted(g.nodes())
    assert_order(g, order)
    keyed = g.topological_order(key=lambda n: prio.get(n, 0))
    assert sorted(keyed) == sorted(g.nodes())
    assert_order(g, keyed)


@settings(max_examples=200, deadline=None)
@given(digraphs(dag=True))
def test_dag_generations_partition_and_respect_edges(g):
    gens = g.generations()
    flat = [n for gen in gens for n in gen]
    assert sorted(flat) == sorted(g.nodes())
    level = {n: i for i, gen in enumerate(gens) for n in gen}
    for node, pred in g.edges():
        assert level[pred] < level[node]
    assert all(gens)


@settings(max_examples=200, deadline=None)
@given(digraphs(dag=False))
def test_find_cycles_agrees_with_graphlib(g):
    cycles = g.find_cycles()
    try:
        list(graphlib.TopologicalSorter(to_dict(g)).static_order())
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    assert (cycles == []) == acyclic
    for c in cycles:
        assert_real_cycle(g, c)
    # One cycle per component: no two share a node.
    members = [n for c in cycles for n in c[:-1]]
    assert len(members) == len(set(members))
    if not acyclic:
        with pytest.raises(CycleError) as exc:
            g.topological_order()
        assert_real_cycle(g, exc.value.cycle)


@settings(max_examples=200, deadline=None)
@given(digraphs(dag=True), st.integers(0, 13), st.lists(st.integers(0, 13), max_size=4))
def test_cycle_if_added_agrees_with_adding(g, node, preds):
    before = g.edges()
    cycle = g.cycle_if_added(node, preds)
    assert g.edges() == before
    h = g.copy()
    h.add_node(node, preds)
    assert (cycle is None) == (h.find_cycles() == [])
    if cycle is not None:
        assert cycle[0] == node
        assert_real_cycle(h, cycle)
        with pytest.raises(CycleError):
            g.check_add(node, preds)


def test_large_graph_sorts_every_node_after_its_predecessors():
    # Scale, not speed (speed is measured by scripts/bench.py): 100k nodes, 300k edges.
    import random

    rng = random.Random(7)
    n = 100_000
    g: Graph = Graph()
    for i in range(n):
        g.add_node(i, [rng.randrange(i) for _ in range(min(i, 3))])
    order = g.topological_order()
    assert len(order) == n
    pos = {node: k for k, node in enumerate(order)}
    assert all(pos[p] < pos[node] for node, p in g.edges())
