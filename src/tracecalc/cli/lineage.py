"""Commands that trace formulas: impact, deps, explain."""

from __future__ import annotations

import click

from tracecalc import cli
from tracecalc.cli import _engine, _escape, handle_errors, main
from tracecalc.errors import plural


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def impact(ctx, name):
    """What depends on formula or item NAME, in recalculation order."""
    down = _engine(ctx).dependents(name, transitive=True)
    cli.out.print(f"{plural(len(down), 'formula')} depend{'s' if len(down) == 1 else ''} on "
                  f"{name}" + (":" if down else ""), markup=False)
    for n in down:
        cli.out.print(f"  {n}", markup=False)


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def deps(ctx, name):
    """What formula NAME depends on, all the way up, in order."""
    eng = _engine(ctx)
    up = eng.dependencies(name, transitive=True)
    items = eng.items()
    cli.out.print(f"{name} depends on {plural(len(up), 'formula or item', 'formulas and items')}"
                  + (":" if up else ""), markup=False)
    for n in up:
        cli.out.print(f"  {n}  ({'item, ' + items[n] if n in items else 'formula'})", markup=False)


@main.command()
@click.argument("name")
@click.argument("entity")
@click.argument("period")
@click.option("--as-of", "as_of", default=None, metavar="DATE",
              help="As known on DATE: every input at its version known then.")
@click.pass_context
@handle_errors
def explain(ctx, name, entity, period, as_of):
    """Show how the record of NAME for ENTITY at PERIOD was computed."""
    from rich.tree import Tree

    e = _engine(ctx).explain(name, entity, period, as_of=as_of)
    cli.out.print(f"[bold]{e['formula']}[/] (version {e['version']}, {e['frequency']}) = "
                  f"{_escape(e['expression'])}")
    cli.out.print(f"entity {_escape(e['entity'])}, period {e['period']}: stored value "
                  f"{_num(e['stored'])}" + (f" (as known on {as_of})" if as_of else ""))

    def add(branch, node):
        label = f"{_escape(node['text'])} = [bold]{_num(node['value'])}[/]"
        if node["kind"] in ("item", "formula"):
            label += f"  ({node['kind']})"
        b = branch.add(label)
        for w in node.get("window", []):
            vals = ", ".join(f"{p}: {_num(v)}" for p, v in w["values"])
            b.add(f"[dim]window of {_escape(w['text'])}: {vals}[/]")
        for child in node["children"]:
            add(b, child)

    root = Tree(f"{_escape(e['tree']['text'])} = [bold]{_num(e['tree']['value'])}[/]")
    for w in e["tree"].get("window", []):
        vals = ", ".join(f"{p}: {_num(v)}" for p, v in w["values"])
        root.add(f"[dim]window of {_escape(w['text'])}: {vals}[/]")
    for child in e["tree"]["children"]:
        add(root, child)
    cli.out.print(root)


def _num(v) -> str:
    return "missing" if v is None else f"{v:.10g}"
