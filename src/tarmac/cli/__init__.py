"""The ``tarmac`` command: one verb per job, a thin layer over the SDK.

Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error, 3 not allowed. User errors
print one clear line (and a hint); ``TARMAC_DEBUG=1`` also prints the traceback, with the same
exit code.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from tarmac.cli._output import err_console, esc
from tarmac.errors import TarmacError


class _Group(TyperGroup):
    """Turns ``TarmacError`` (and surprises) into one line and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except TarmacError as exc:
            if os.environ.get("TARMAC_DEBUG"):  # the trace for the curious, the same exit code
                traceback.print_exc(file=sys.stderr)
            err_console.print(f"[bold red]error:[/bold red] {esc(exc.message)}", soft_wrap=True)
            if exc.hint:
                err_console.print(f"  [dim]hint: {esc(exc.hint)}[/dim]", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BrokenPipeError:  # `tarmac sql ... | head`: Click ends quietly (exit 1)
            raise
        except Exception as exc:  # a bug: say so plainly, keep the trace behind a flag
            if os.environ.get("TARMAC_DEBUG"):
                raise
            err_console.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: "
                              f"{esc(exc)}", soft_wrap=True)
            err_console.print("  [dim]rerun with TARMAC_DEBUG=1 to see the traceback[/dim]")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    name="tarmac",
    help="Tarmac: take ML models from prototype to production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    project: Path | None = typer.Option(
        None, "--project", "-p", envvar="TARMAC_PROJECT",
        help="Project folder (default: the nearest folder with tarmac.yaml).",
        file_okay=False, dir_okay=True),
) -> None:
    ctx.obj = {"project": project}


def open_project(ctx: typer.Context, *, check_lake: bool = True) -> Any:
    """The project named by --project (opened once per command); ``check_lake=False`` for the
    commands that repair a catalog that does not know the lake (``tarmac catalog``)."""
    import tarmac

    obj = ctx.find_root().obj or {}
    if "opened" not in obj:
        obj["opened"] = tarmac.open(obj.get("project"), check_lake=check_lake)
        ctx.find_root().call_on_close(obj["opened"].close)
    return obj["opened"]


# importing the command modules registers their commands
from tarmac.cli import (  # noqa: E402,F401
    _access,
    _catalog,
    _deploy,
    _doctor,
    _export,
    _features,
    _governance,
    _ingest,
    _labels,
    _lake,
    _loop,
    _model_import,
    _models,
    _monitor,
    _permissions,
    _predictions,
    _project,
    _score,
    _serve,
    _stream,
    _survey,
    _trace,
)


def main() -> None:
    """Console-script entry point."""
    app()
