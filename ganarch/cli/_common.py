"""Helpers every command module shares: where output goes, JSON output, and failing cleanly.

Results go to stdout (``out``, ``print_json``); messages, warnings and progress go to stderr
(``err``, ``note``). A command signals bad input with ``fail(message)``: the app turns it into
``error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from ganarch.errors import GanarchError

__all__ = [
    "echo",
    "err",
    "fail",
    "fmt_count",
    "fmt_params",
    "note",
    "out",
    "parse_value",
    "print_json",
    "print_table",
    "write_new_file",
]

#: Results (tables, JSON) go here; ``highlight=False`` keeps numbers in tables uncoloured.
out = Console(highlight=False, soft_wrap=False)
#: Messages, warnings and progress go here.
err = Console(stderr=True, highlight=False)


def fail(message: str) -> NoReturn:
    """Stop the command because of bad input: ``error: <message>`` on stderr, exit code 2."""
    raise GanarchError(message)


def note(message: str) -> None:
    """A one-line message for the user on stderr (never mixed into results)."""
    err.print(message, markup=False, soft_wrap=True)


def print_table(table: Any) -> None:
    """Print a rich table to stdout; when stdout is not a terminal (a pipe, a log, a test)
    the table gets its natural width instead of being folded into 80 columns."""
    if out.is_terminal:
        out.print(table)
    else:  # print(width=...) can only narrow, so a wider console of its own
        Console(highlight=False, width=max(out.width, 200)).print(table)


def echo(text: str) -> None:
    """A plain result line on stdout, never wrapped (so scripts can parse it)."""
    out.print(text, markup=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    """Write ``obj`` as plain, indented JSON to stdout (no colours, safe to pipe into jq)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "_asdict"):
        return list(value)
    return repr(value)


def fmt_count(n: int) -> str:
    """``3448576`` -> ``"3,448,576"``."""
    return f"{n:,}"


def fmt_params(params: Mapping[str, Any]) -> str:
    """``{"out_channels": 64, "bias": False}`` -> ``"out_channels=64, bias=False"``."""
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in params.items())


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (``3``, ``0.5``, ``true``, ``{"slope": 0.1}``),
    otherwise the plain string (``nearest_conv``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def write_new_file(path: Path, write: Any, force: bool = False) -> Path:
    """Call ``write(path)`` unless ``path`` exists (then ``fail``, unless ``force``)."""
    if path.exists() and not force:
        fail(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        fail(f"{path} is a directory")
    if not path.parent.exists():
        fail(f"{path.parent} does not exist")
    return write(path)
