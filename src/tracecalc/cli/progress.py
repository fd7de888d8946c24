"""Progress bars for long commands, shown only when standard output is a terminal."""

from __future__ import annotations

import contextlib

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from tracecalc import cli


def _with_load_progress(load, *args, **kw):
    """A progress bar while a load runs, when standard output is a terminal."""
    if not cli.out.is_terminal:
        return load(*args, **kw)
    with _bar("loading") as (bar, task):
        def progress(done, total, what):  # total 0: reading and checking, no measure
            bar.update(task, completed=done, total=total or None, description=Text(what))

        return load(*args, progress=progress, **kw)


class _Count(ProgressColumn):
    """done/total once the total is known; nothing while the run is being planned."""

    def render(self, task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed):,}/{int(task.total):,}", style="progress.download")


def _run_recalc(eng, full: bool, quiet: bool, **kw):
    if quiet or not cli.out.is_terminal:
        return eng.recalc(full=full, **kw)
    with _bar("planning: reading the catalog and the stale marks") as (bar, task):
        def progress(done, total, name):
            what = Text(f"recalculating {name}" if name else "recalculating")
            bar.update(task, completed=done, total=total, description=what)

        return eng.recalc(full=full, progress=progress, **kw)


@contextlib.contextmanager
def _bar(first: str = "starting"):
    """A transient progress bar; a spinner and ``first`` until the total is known."""
    cols = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Count(),
            TimeElapsedColumn())
    with Progress(*cols, console=cli.out, transient=True) as bar:
        yield bar, bar.add_task(first, total=None)
