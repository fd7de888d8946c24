"""Commands on formulas: load-formulas, set, check, delete, list, show, history."""

from __future__ import annotations

import functools
import itertools
import sys

import click
from rich.text import Text

from tracecalc import cli
from tracecalc.cli import _engine, _readable, _show, handle_errors, main
from tracecalc.cli.output import row, table
from tracecalc.errors import NotFoundError, close_matches, plural


@main.command("load-formulas")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@handle_errors
def load_formulas(ctx, file):
    """Load formulas from CSV (name, expression, description) or YAML; all or nothing."""
    from tracecalc.storage.files import read_formulas

    _readable(file)
    rows = read_formulas(file)
    res = _engine(ctx, create=True).set_formulas(rows)
    created = sum(r.created for r in res)
    changed = sum(bool(r.marked_stale) and not r.created for r in res)
    described = sum(r.described for r in res)
    cli.out.print(f"saved {plural(len(res), 'formula')} ({created} new, {changed} changed, "
                  f"{len(res) - created - changed} unchanged"
                  + (f", {described} with a new description" if described else "") + ")",
                  markup=False)


class _ExpressionCommand(click.Command):
    """A command whose EXPRESSION may start with '-' (``"-cogs + revenue"``): every word
    that is not one of the command's own options is an argument, as users type it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {o: not p.is_flag for p in self.get_params(ctx)
                       if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        head: list[str] = []
        tail: list[str] = []
        words = iter(args)
        for word in words:
            if word == "--":
                tail.extend(words)
                break
            opt = word.split("=", 1)[0] if word.startswith("--") else word
            if opt in takes_value:
                head.append(word)
                if takes_value[opt] and "=" not in word:
                    head.extend(itertools.islice(words, 1))
            else:
                tail.append(word)
        return super().parse_args(ctx, [*head, "--", *tail])


@main.command("set", cls=_ExpressionCommand)
@click.argument("name")
@click.argument("expression")
@click.option("--description", "-d", default=None, help="What the formula means.")
@click.pass_context
@handle_errors
def set_(ctx, name, expression, description):
    """Save formula NAME = EXPRESSION (validated; it and its dependents become stale).

    EXPRESSION may start with '-' ("-cogs + revenue")."""
    res = _engine(ctx, create=True).set_formula(name, expression, description)
    what = ("created" if res.created else "updated" if res.marked_stale else
            "unchanged, description updated" if res.described else "unchanged")
    cli.out.print(f"{name} {what} (version {res.version})", markup=False)
    if res.equivalent_to_previous and res.marked_stale:
        cli.out.print("note: the new text is equivalent to the previous one; it will be "
                      "recomputed once")
    if res.marked_stale:
        cli.out.print(f"stale now: {', '.join(res.marked_stale)}", markup=False)


@main.command(cls=_ExpressionCommand)
@click.argument("name")
@click.argument("expression")
@click.pass_context
@handle_errors
def check(ctx, name, expression):
    """Validate NAME = EXPRESSION and show its impact, without saving.

    EXPRESSION may start with '-' ("-cogs + revenue")."""
    rep = _engine(ctx).check_formula(name, expression)
    if not rep.is_valid:
        for p in rep.problems:
            cli.err.print(Text.assemble(("problem:", "bold red"), " ", p.message))
        sys.exit(1)
    say = functools.partial(cli.out.print, markup=False)
    say(f"{name} = {rep.expression}: valid ({rep.frequency})")
    say(f"canonical form: {rep.canonical}")
    if rep.is_new:
        say(f"a new formula: no formula named {name} yet")
    elif rep.equivalent_to_current:
        say("equivalent to the current definition")
    else:
        say("not equivalent to the current definition (canonical forms differ): saving it "
            "recomputes it and what depends on it")
    if rep.equivalent_formulas:
        say(f"equivalent to: {', '.join(rep.equivalent_formulas)}")
    say(f"would recompute, in order: {' -> '.join(rep.affected)}")
    say(f"records in scope: {rep.records_in_scope:,}")


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def delete(ctx, name):
    """Delete formula NAME and its records (refused while others use it)."""
    _engine(ctx).delete_formula(name)
    cli.out.print(f"deleted {name}", markup=False)


@main.command("list")
@click.pass_context
@handle_errors
def list_(ctx):
    """List formulas."""
    df = _engine(ctx).formulas(canonical=False)
    t = table("name", "expression", "frequency", "version", "state", numeric=["version"],
              whole=["frequency", "state"])
    for r in df.itertuples():
        row(t, r.name, r.expression, r.frequency, int(r.version), r.state)
    _show(t)
    cli.out.print(plural(len(df), "formula"))


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def show(ctx, name):
    """Show a formula (text, canonical form, dependencies, dependents, history) or a data
    item (frequency, entities, periods, users)."""
    eng = _engine(ctx)
    say = functools.partial(cli.out.print, markup=False)
    if name in eng.items():
        i = eng.item(name)
        say(f"{i.name}: data item, {i.frequency}")
        say(f"data points:  {i.points:,} for {plural(i.entities, 'entity', 'entities')}")
        say(f"periods:      {i.first or '-'} to {i.last or '-'}")
        say(f"used by:      {', '.join(i.used_by) or '-'}")
        return
    try:
        f = eng.formula(name)
    except NotFoundError:  # suggest items too
        names = [*eng.items(), *eng.formulas(canonical=False)["name"]]
        raise NotFoundError("formula or item", name, close_matches(name, names)) from None
    cli.out.print(Text.assemble((f.name, "bold"), f" = {f.expression}"))
    if f.description:
        say(f"  {f.description}")
    say(f"canonical:    {f.canonical}")
    say(f"frequency:    {f.frequency}   version: {f.version}   state: {f.state}")
    say(f"depends on:   {', '.join(f.references) or '-'}")
    say(f"used by:      {', '.join(eng.dependents(name)) or '-'}")
    t = table("version", "action", "when (UTC)", "who", "text", title="history",
              numeric=["version"], whole=["when (UTC)"])
    for h in eng.history(name):
        row(t, h["version"], h["action"], h["changed_at"], h["changed_by"],
            h["new_expression"])
    _show(t)


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def history(ctx, name):
    """Every saved version of a formula."""
    t = table("version", "action", "when (UTC)", "who", "old", "new", numeric=["version"],
              whole=["when (UTC)"])
    for h in _engine(ctx).history(name):
        row(t, h["version"], h["action"], h["changed_at"], h["changed_by"],
            h["old_expression"], h["new_expression"])
    _show(t)


@main.command("eval", cls=_ExpressionCommand)
@click.argument("exprs", nargs=-1, required=True)
@click.option("--entity", "-e", "entities", multiple=True, metavar="E",
              help="Only this entity (repeatable); cross-sections still rank every entity.")
@click.option("--start", default=None, metavar="DATE", help="The first period shown.")
@click.option("--end", default=None, metavar="DATE", help="The last period shown.")
@click.option("--as-of", "as_of", default=None, metavar="DATE",
              help="The data as known on DATE: each point at its version known then.")
@click.option("--csv", "as_csv", is_flag=True,
              help="CSV on standard output (every value exactly) instead of a table.")
@click.pass_context
@handle_errors
def eval_(ctx, exprs, entities, start, end, as_of, as_csv):
    """Evaluate formulas or expressions EXPR over the stored data, writing nothing.

    An EXPR is a formula's name or any expression ("close / ts_mean(close, 20)", "pe * 2");
    the formulas it reads are computed from the data items. One row per period and entity
    where an EXPR has a value, one column per EXPR."""
    df = _engine(ctx).evaluate(list(exprs), entities=list(entities) or None, start=start,
                               end=end, as_of=as_of)
    labels = list(df.columns[2:])
    if as_csv:
        df.assign(period=df["period"].dt.strftime("%Y-%m-%d")).to_csv(
            cli.out.file, index=False)
        return
    t = table("period", "entity", *labels, numeric=labels, whole=["period", "entity"])
    days = df["period"].dt.strftime("%Y-%m-%d").tolist()
    values = [df[c].tolist() for c in labels]
    for i, (day, code) in enumerate(zip(days, df["entity"].tolist())):
        row(t, day, code, *("" if v[i] != v[i] else f"{v[i]:.8g}" for v in values))
    _show(t)
    freqs = sorted(set(df.attrs["frequencies"].values()))
    cli.out.print(f"{plural(len(df), 'row')} ({', '.join(freqs)}); nothing was written",
                  markup=False)
