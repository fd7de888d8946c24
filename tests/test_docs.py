"""The documentation stays true: the toolkit's worked example runs as written."""

from __future__ import annotations

import ast
import re

import pytest

from conftest import ROOT
from tracecalc.errors import CycleError


def test_graph_toolkit_worked_example(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "graph-toolkit.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    checks = 0
    lines = []
    for line in code.splitlines():
        m = re.match(r"(\s*)(\[t\.name .*\])\s+# (\[.*?\])", line)
        if m:  # "expr  # expected": the comment is the expected value
            indent, expr, expected = m.groups()
            lines.append(f"{indent}assert {expr} == {expected}, {expected!r}")
            checks += 1
        elif line.strip().startswith("tg.link(a, d)"):
            lines.append(line.replace("tg.link(a, d)", "_link_cycle(tg, a, d)"))
        else:
            lines.append(line)
    assert checks == 7
    monkeypatch.chdir(tmp_path)
    seen = []

    def link_cycle(tg, a, d):
        with pytest.raises(CycleError) as info:
            tg.link(a, d)
        seen.append(str(info.value))

    source = "\n".join(lines)
    ast.parse(source)
    code_obj = compile(source, "graph-toolkit.md", "exec", dont_inherit=True)
    exec(code_obj, {"_link_cycle": link_cycle, "__name__": "doc"})  # noqa: S102
    assert seen == ["cycle: A -> D -> B -> A"]


def _readme_commands() -> dict[str, str]:
    """README command table: command name -> its synopsis."""
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `tracecalc ([a-z-]+)([^`]*)` \|", text, flags=re.M)
    return {name: synopsis for name, synopsis in rows}


def test_the_readme_command_table_matches_the_help():
    import click

    from tracecalc.cli import main

    rows = _readme_commands()
    assert set(rows) == set(main.commands)
    for name, synopsis in rows.items():
        cmd = main.commands[name]
        assert cmd.help, name
        ctx = click.Context(cmd, info_name=name)
        words = synopsis.replace("[", " ").replace("]", " ").replace("|", " ").split()
        flags = {w.split("=")[0] for w in words if w.startswith("-")}
        args = [w for w in words if w.isupper() and not w.startswith("-")]
        for p in cmd.get_params(ctx):
            if "--help" in p.opts:
                continue
            if isinstance(p, click.Argument):  # NAME ... for a repeatable NAMES
                singular = p.name.upper().removesuffix("S") if p.nargs == -1 else None
                assert p.name.upper() in args or singular in args, (name, p.name)
            else:
                assert flags & set(p.opts + p.secondary_opts), (name, p.opts)
        known = {o for p in cmd.get_params(ctx) for o in (*p.opts, *p.secondary_opts)}
        assert flags <= known, (name, flags - known)


def test_the_readme_documents_the_exit_codes():
    from tracecalc import cli

    text = (ROOT / "README.md").read_text()
    table = re.search(r"^\| exit code \| meaning \|\n\|[-|]+\|\n((?:\|.*\|\n)+)", text, re.M)
    assert table, "README: the exit-code table"
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", table.group(1), re.M)}
    assert codes == {0, 1, 2, cli.EXIT_BUSY, cli.EXIT_INTERRUPTED}


def test_the_eval_command_is_documented_where_its_rules_are():
    """README's synopsis of ``tracecalc eval`` is the one docs/formula-language.md gives with
    its rules ("Evaluating in memory"), and its options are the command's."""
    synopsis = "eval" + _readme_commands()["eval"]
    text = " ".join((ROOT / "docs" / "formula-language.md").read_text().split())
    assert "## Evaluating in memory" in text
    assert f"`tracecalc {synopsis}`" in text
    assert "as_of=None)` and `tracecalc eval" in text
