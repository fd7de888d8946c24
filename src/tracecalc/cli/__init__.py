"""The ``tracecalc`` command: a thin layer over ``Engine`` that turns errors into one line.

Every library error becomes ``error: ...`` on stderr and exit code 1 (2 for usage errors);
never a traceback.

This module holds the group (``main``), the consoles and the error handling; the commands
live in one module per topic (``data``, ``formulas``, ``lineage``, ``runs``) and tables in
``output``. Commands reach the consoles as ``cli.out`` and ``cli.err`` at call time, so that
replacing them here (tests do) reaches every command.
"""

from __future__ import annotations

import functools
import os
import sys

import click
from rich.console import Console
from rich.text import Text

from tracecalc.cli.output import Table
from tracecalc.errors import BusyError, DataError, TracecalcError
from tracecalc.storage import DEFAULT_URL
from tracecalc.storage.checks import describe, is_driver_error

EXIT_BUSY = 3  # another recalculation holds the lock
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
SHOWN = 20  # lines of each kind of verify finding printed

# A terminal's own width; piped or redirected output gets COLUMNS, else 160 (rather than
# rich's 80-column default), so that files and pipes keep whole lines.
_COLUMNS = os.environ.get("COLUMNS", "")
_WIDTH = (None if sys.stdout.isatty() else
          int(_COLUMNS) if _COLUMNS.isdigit() and int(_COLUMNS) >= 40 else 160)
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


def _engine(ctx: click.Context, create: bool = False):
    """The command's engine. Only commands that write (init, loads, saves) may create the
    database: a misspelt --db must not leave an empty file behind a read."""
    from tracecalc.engine import Engine

    obj = ctx.find_root().ensure_object(dict)
    if not obj["db"].strip():
        raise TracecalcError("--db (or TRACECALC_DB) is empty; give a database URL such as "
                             "sqlite:///finance.db")
    if "engine" not in obj:
        obj["engine"] = Engine(obj["db"], user=obj.get("user"), create=create)
        ctx.call_on_close(obj["engine"].close)
    return obj["engine"]


def handle_errors(fn):
    """Turn every failure into one message and a non-zero exit code: library errors and
    file errors exit 1, a busy database 3, an interrupt 130. An unexpected exception is
    reported in one line too (``TRACECALC_DEBUG=1`` shows its traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except BusyError as e:
            _fail(str(e), EXIT_BUSY, "busy")
        except TracecalcError as e:
            _fail(str(e), 1)
        except BrokenPipeError:  # `tracecalc export | head`: the reader left
            sys.stdout = open(os.devnull, "w")  # as Python's docs advise for SIGPIPE
            sys.exit(1)
        except OSError as e:
            what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            _fail(what, 1)
        except KeyboardInterrupt:
            _fail("interrupted; what was committed stays (a recalculation resumes with the "
                  "next run)", EXIT_INTERRUPTED)
        except Exception as e:
            if is_driver_error(e):  # a driver error outside what the store translates
                _fail(describe(e, "the database"), 1)
            if os.environ.get("TRACECALC_DEBUG"):
                raise
            _fail(f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]} (a bug: "
                  "please report it; TRACECALC_DEBUG=1 shows the traceback)", 1)

    return wrapper


def _readable(file: str) -> None:
    """A file to load must be there before the database is opened (and maybe created)."""
    if not os.path.isfile(file):
        what = "is a folder, not a file" if os.path.isdir(file) else "no such file"
        raise DataError(what, source=file)


def _fail(message: str, code: int, label: str = "error") -> None:
    err.print(Text.assemble((f"{label}:", "bold red"), " ", message), soft_wrap=True)
    sys.exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="TRACECALC_DB", default=DEFAULT_URL, show_default=True,
              help="Database URL (sqlite:///file.db, postgresql://..., mysql://...); "
                   "or set TRACECALC_DB.")
@click.option("--user", envvar="TRACECALC_USER", default=None,
              help="Who is making changes (default: TRACECALC_USER, then the OS user).")
@click.version_option(package_name="tracecalc")
@click.pass_context
def main(ctx: click.Context, db: str, user: str | None) -> None:
    """tracecalc: finance formulas recomputed in dependency order, stored in a database."""
    ctx.ensure_object(dict).update(db=db, user=user)


def _show(t: Table) -> None:
    """Print a table at the width of standard output (see ``output``)."""
    out.file.write(t.render(out.width))


# The commands register themselves on ``main``.
from tracecalc.cli import data, formulas, lineage, runs  # noqa: E402, F401
from tracecalc.cli import db as _db  # noqa: E402, F401
