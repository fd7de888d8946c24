"""The graph toolkit on database tables: the worked example of docs/graph-toolkit.md, on
SQLite, PostgreSQL and MariaDB, with user-defined models holding their own columns."""

from __future__ import annotations

import pytest
from sqlalchemy import String, Text, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tracecalc.errors import CycleError
from tracecalc.storage.trace import TraceGraph, TraceLink, TraceNode


class Base(DeclarativeBase):
    pass


class Task(TraceNode, Base):
    __tablename__ = "tasks"
    name: Mapped[str] = mapped_column(String(100), unique=True)
    brief: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[float] = mapped_column(default=0.0)


class TaskLink(TraceLink, Base):
    __tablename__ = "task_links"
    __trace_node__ = "tasks"


@pytest.fixture
def session(db_url):
    eng = create_engine(db_url)
    Base.metadata.create_all(eng)
    with Session(eng) as s:
        yield s
    Base.metadata.drop_all(eng)
    eng.dispose()


def names(nodes) -> list[str]:
    return [n.name for n in nodes]


@pytest.fixture
def tasks(session):
    tg = TraceGraph(session, Task, TaskLink, key=lambda t: t.priority)
    t = {n: Task(name=n, brief=f"task {n}", description=f"the {n} task", priority=p)
         for n, p in (("A", 1.0), ("B", 1.0), ("C", -10.0), ("D", 1.0))}
    tg.add(t["A"])
    tg.add(t["B"], [t["A"]])
    tg.add(t["C"], [t["A"]])
    tg.add(t["D"], [t["B"], t["C"]])
    session.commit()
    return tg, t


def test_worked_example(tasks):
    tg, t = tasks
    assert names(tg.sort()) == ["A", "C", "B", "D"]
    # creating all four counts as changing all four
    assert names(tg.handle_changes()) == ["A", "C", "B", "D"]
    assert names(tg.handle_changes()) == []
    for changed, expected in (("A", "ACBD"), ("B", "BD"), ("C", "CD"), ("D", "D")):
        tg.mark_changed(t[changed])
        assert names(tg.handle_changes()) == list(expected), changed
    assert {x.brief for x in tg.sort()} == {"task A", "task B", "task C", "task D"}


def test_flags_survive_an_interrupted_handling(tasks):
    tg, t = tasks
    list(tg.handle_changes())
    tg.mark_changed(t["B"])
    for node in tg.handle_changes():
        assert node.name == "B"
        break  # stopped before the end: nothing was handled completely
    assert names(tg.handle_changes()) == ["B", "D"]


def test_dependencies_and_dependents(tasks):
    tg, t = tasks
    assert names(tg.dependencies(t["D"])) == ["C", "B"]
    assert names(tg.dependencies(t["D"], transitive=True)) == ["A", "C", "B"]
    assert names(tg.dependents(t["A"], transitive=True)) == ["C", "B", "D"]
    assert names(tg.dependents(t["B"])) == ["D"]


def test_a_link_that_closes_a_cycle_is_refused(tasks, session):
    tg, t = tasks
    with pytest.raises(CycleError) as info:
        tg.link(t["A"], t["D"])
    assert str(info.value) in ("cycle: A -> D -> B -> A", "cycle: A -> D -> C -> A")
    assert tg.dependencies(t["A"]) == []
    assert tg.find_cycles() == []


def test_cycles_are_found_as_paths(session):
    tg = TraceGraph(session, Task, TaskLink)
    a, b, c, d = (Task(name=n) for n in "abcd")
    session.add_all([a, b, c, d])
    session.flush()
    # stored directly, as another tool might have done: a -> b -> c -> a
    session.add_all([TaskLink(node_id=a.id, depends_on_id=b.id),
                     TaskLink(node_id=b.id, depends_on_id=c.id),
                     TaskLink(node_id=c.id, depends_on_id=a.id),
                     TaskLink(node_id=d.id, depends_on_id=a.id)])
    session.commit()
    (cycle,) = tg.find_cycles()
    assert names(cycle) == ["a", "b", "c", "a"]
    assert tg.find_cycles([d]) == []
    with pytest.raises(CycleError):
        tg.sort()
