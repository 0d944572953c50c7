"""The ``ganarch`` command line: a typer app whose command groups live in their own modules.

Each command module exposes ``register(app)``; add a new one to ``COMMAND_MODULES``.
Exit codes: 0 success, 1 a bug in ganarch, 2 bad input (one line on stderr, no traceback),
75 the machine failed (a full disk, a database that dropped the connection: fix it and run the
same command again), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Any

import typer
from typer._click.exceptions import (  # typer >= 0.26 vendors click
    ClickException,
    NoArgsIsHelpError,
    UsageError,
)
from typer.core import TyperGroup

import ganarch
from ganarch.cli import _common, analysis, blocks, data, search, train
from ganarch.errors import HOST_EXIT, GanarchError, HostError

__all__ = ["COMMAND_MODULES", "app", "main"]

DEBUG_ENV = "GANARCH_DEBUG"
#: The longest error line printed (user text quoted back is cut).
MAX_MESSAGE = 2000

#: The command modules, each with ``register(app: typer.Typer) -> None``, in help order.
COMMAND_MODULES = (blocks, data, train, search, analysis)


class _Group(TyperGroup):
    """Turns ``GanarchError`` (bad input) into ``error: <message>`` and exit code 2, and
    ``HostError`` (a full disk, a folder turned read-only) into one line and exit code 75.

    Doing it here rather than in ``main()`` gives typer's ``CliRunner`` the same exit codes
    as the installed command. typer/click exits pass through untouched: ``typer.Exit`` is a
    ``RuntimeError``, so nothing here catches broad exception types.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GanarchError as exc:
            _report(exc)
            raise typer.Exit(2) from None
        except HostError as exc:  # the machine failed (a full disk): not a bug, not bad input
            _report(exc)
            raise typer.Exit(HOST_EXIT) from None

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Usage errors (an unknown option, a bad value) as one line and exit code 2, and
        Ctrl-C as exit code 130, for the console script and ``CliRunner`` alike."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:  # bare `ganarch`: typer has printed the help
            if exc.format_message():
                exc.show()
            sys.exit(exc.exit_code)
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "ganarch"
            _report(f"{exc.format_message().rstrip('.')} (see '{where} --help')")
            sys.exit(2)
        except ClickException as exc:
            _report(exc.format_message())
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        except typer.Abort:  # end of input at a prompt, or a command that aborts
            _report("aborted")
            sys.exit(1)
        # typer.Exit(code) arrives here as its int code; commands themselves return None
        sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def _report(exc: BaseException | str) -> None:
    message = " ".join(str(exc).split()) or type(exc).__name__  # always one line
    if len(message) > MAX_MESSAGE:  # e.g. a 100k-character value quoted back
        message = message[: MAX_MESSAGE - 1] + "…"
    _common.err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        _common.echo(f"ganarch {ganarch.__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="ganarch",
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Search GAN architectures laid out by templates (the paper's DCGAN or a plugin's) and
    rediscover the design rules of the DCGAN paper.

    Exit codes: 0 done; 1 a bug in ganarch (please report it); 2 bad input; 75 the machine
    failed (a full disk, a read-only folder, a dropped database connection): fix it and run
    the same command again; 130 interrupted.
    """


for _module in COMMAND_MODULES:
    _module.register(app)


def _short_warnings(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ganarch`` console script and ``python -m ganarch``."""
    debug = os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    if not debug:
        warnings.formatwarning = _short_warnings
    try:
        app(args=argv, prog_name="ganarch")
    except (typer.Exit, typer.Abort):  # normally handled inside typer; never swallow them
        raise
    except GanarchError as exc:  # raised outside a command (e.g. while parsing)
        _report(exc)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug or a failure at run time: short message, exit 1
        if debug:
            traceback.print_exc()
        else:
            detail = " ".join(str(exc).split())
            message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            _report(RuntimeError(f"{message} (set {DEBUG_ENV}=1 for the traceback)"))
        sys.exit(1)
