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
