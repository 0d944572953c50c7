"""Helpers every command module shares: where output goes, JSON output, and failing cleanly.

Results go to stdout (``out``, ``print_json``); messages, warnings and progress go to stderr
(``err``, ``note``). A command signals bad input with ``fail(message)``: the app turns it into
``error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from ganarch.errors import GanarchError
from ganarch.search.defaults import DEFAULT_STORAGE, STORAGE_ENV

__all__ = [
    "JSON_OPTION",
    "STORAGE_OPTION",
    "TEMPLATE_SIZE",
    "echo",
    "err",
    "fail",
    "fmt_count",
    "fmt_params",
    "keep_words_whole",
    "least_width",
    "note",
    "out",
    "parse_value",
    "print_json",
    "print_table",
    "require_storage",
    "template_ref",
    "template_spec",
    "write_new_file",
]

#: ``--storage`` of every command that reads or writes a study.
STORAGE_OPTION = typer.Option(
    None,
    "--storage",
    envvar=STORAGE_ENV,
    show_envvar=True,
    help=f"Study storage: a journal file (default ./{DEFAULT_STORAGE}), sqlite:///FILE.db, "
    "or postgresql://... for workers on many machines.",
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")

#: Results (tables, JSON) go here; ``highlight=False`` keeps numbers in tables uncoloured.
#: No markup or emoji codes: user text (a study named ``:smile:x`` or ``[red]x``) prints as
#: typed; styled cells are ``rich.text.Text`` objects.
out = Console(highlight=False, soft_wrap=False, markup=False, emoji=False)
#: Messages, warnings and progress go here.
err = Console(stderr=True, highlight=False, markup=False, emoji=False)


def fail(message: str) -> NoReturn:
    """Stop the command because of bad input: ``error: <message>`` on stderr, exit code 2."""
    raise GanarchError(message)


def note(message: str) -> None:
    """A one-line message for the user on stderr (never mixed into results)."""
    err.print(message, markup=False, soft_wrap=True)


def print_table(table: Any) -> None:
    """Print a rich table to stdout, as wide as the terminal. When stdout is not a terminal
    (a pipe, a log) the table keeps its natural width, one line per row, unless ``COLUMNS``
    asks for a width (``COLUMNS=80 ganarch trials S | less``). Where even the narrowest
    layout with whole words does not fit, each row is printed as ``column: value`` lines."""
    from rich.measure import Measurement

    keep_words_whole(table)
    columns = os.environ.get("COLUMNS", "")
    console = out  # a terminal: its own width
    if not out.is_terminal and columns.isdigit() and int(columns) > 0:
        console = Console(highlight=False, markup=False, emoji=False, width=int(columns))
    elif not out.is_terminal:  # print(width=...) can only narrow: a console as wide as the table
        wide = Console(highlight=False, width=100_000)
        natural = Measurement.get(wide, wide.options, table).maximum
        console = Console(highlight=False, markup=False, emoji=False, width=max(natural, 20))
    if least_width(table) > console.width:
        _print_records(table, console)  # too narrow for whole words: never crop a column
    else:
        _share_width(table, console.width)
        console.print(table)


def least_width(table: Any) -> int:
    """The narrowest the table can be with every name and word whole."""
    from rich.cells import cell_len
    from rich.text import Text

    total = 0
    for column in table.columns:
        width = column.min_width or 0
        if column.no_wrap:
            cells = [column.header, *column.cells]
            texts = [c.plain if isinstance(c, Text) else str(c) for c in cells]
            width = max([width, *(cell_len(line) for t in texts for line in t.splitlines())])
        total += width + table.padding[1] + table.padding[3]
    if not table.pad_edge:
        total -= table.padding[1] + table.padding[3]
    borders = len(table.columns) + 1 if table.show_edge else len(table.columns) - 1
    return total + (borders if table.box else 0)


def _share_width(table: Any, width: int) -> None:
    """Give the wrapping columns fixed widths that fit ``width`` when the table's natural
    width does not: each gets at least its longest word, and the rest is shared in proportion
    to what each would still use. (Left to itself, rich can narrow a column below its longest
    word and then crop the table's right edge.)"""
    from rich.cells import cell_len

    natural = [
        max(
            cell_len(line)
            for cell in (c.header, *c.cells)
            for line in (_plain(cell) or " ").splitlines() or [""]
        )
        for c in table.columns
    ]
    overhead = least_width(table) - sum(
        max(c.min_width or 0, n) if c.no_wrap else (c.min_width or 0)
        for c, n in zip(table.columns, natural, strict=True)
    )
    if sum(natural) + overhead <= width:
        return  # fits as it is
    least = [
        n if c.no_wrap else (c.min_width or 0) for c, n in zip(table.columns, natural, strict=True)
    ]
    spare = width - overhead - sum(least)
    wants = [
        0 if c.no_wrap else max(0, n - m)
        for c, n, m in zip(table.columns, natural, least, strict=True)
    ]
    total = sum(wants)
    for column, low, want in zip(table.columns, least, wants, strict=True):
        if not column.no_wrap and total:
            column.width = low + (spare * want) // total


def _plain(cell: Any) -> str:
    from rich.text import Text

    return cell.plain if isinstance(cell, Text) else str(cell)


def _print_records(table: Any, console: Console) -> None:
    """A table as one block of ``column: value`` lines per row, for a terminal too narrow
    for its columns (values wrap between words under themselves)."""
    from rich.table import Table
    from rich.text import Text

    if table.title:
        console.print(Text(str(table.title)), soft_wrap=True)
    headers = [str(c.header) for c in table.columns]
    words = [w for c in table.columns for cell in c.cells for w in _plain(cell).split()]
    if max(map(len, headers), default=0) + 2 + max(map(len, words), default=0) > console.width:
        # narrower still: plain lines the terminal wraps itself, so nothing is ever cropped
        for cells in zip(*(list(c.cells) for c in table.columns), strict=True):
            console.print("", soft_wrap=True)
            for header, cell in zip(headers, cells, strict=True):
                if _plain(cell):
                    console.print(Text(f"{header}: {_plain(cell)}"), soft_wrap=True)
        return
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column()
    for cells in zip(*(list(c.cells) for c in table.columns), strict=True):
        grid.add_row("", "")
        for column, cell in zip(table.columns, cells, strict=True):
            text = cell if isinstance(cell, Text) else Text(str(cell))
            if text.plain:
                grid.add_row(Text(f"{column.header}:"), text)
    console.print(grid)


def keep_words_whole(table: Any) -> None:
    """The one folding rule of every table: a column narrows only down to its longest word,
    so cells wrap between words (``g_upsample=nearest_conv,`` stays on one line) and never
    inside a name. Columns of numbers and names are ``no_wrap`` and keep their width."""
    from rich.text import Text

    for column in table.columns:
        cells = [column.header, *column.cells]
        texts = [c.plain if isinstance(c, Text) else c for c in cells if isinstance(c, str | Text)]
        longest = max((len(word) for text in texts for word in text.split()), default=0)
        column.min_width = max(column.min_width or 0, longest)


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
    except (ValueError, RecursionError):  # not JSON, a 5000-digit number, 100k-deep nesting
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


def require_storage(storage: str | None) -> str:
    """The resolved storage of a command that only reads; a missing file is bad input (exit 2),
    never an empty storage created by the look."""
    from ganarch.search.storage import require_existing

    return str(require_existing(storage))


#: ``NAME`` or ``NAME:SIZE``: a registered template (``ganarch templates``), in place of a spec file.
_TEMPLATE_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::(\d+))?$")
#: A template's size when the reference names none: the DCGAN paper's 64×64.
TEMPLATE_SIZE = 64


def template_ref(ref: str, *, prefix: str | None = None) -> tuple[Any, int | None]:
    """``"dcgan:32"`` -> (the ``dcgan`` template's info, 32); ``SIZE`` is ``None`` when not
    given. Bad input (not ``NAME[:SIZE]``, or no such template) fails with the closest names;
    the message starts with ``prefix`` (default ``"REF: "``)."""
    from ganarch.templates import TEMPLATES, unknown_template

    prefix = f"{ref}: " if prefix is None else prefix
    m = _TEMPLATE_REF.match(ref)
    if not m:
        fail(f"{prefix}not a template reference; expected TEMPLATE or TEMPLATE:SIZE")
    info = TEMPLATES.get(m.group(1))
    if info is None:
        fail(f"{prefix}{unknown_template(m.group(1))} (`ganarch templates` lists them)")
    return info, int(m.group(2)) if m.group(2) else None


def template_spec(
    ref: str, *, width: int | None = None, channels: int | None = None, data: str | None = None
):
    """The spec a command argument names: a spec file, or ``TEMPLATE[:SIZE]`` for a registered
    template such as the paper's ``dcgan`` (SIZE default 64, ``width`` default the template's;
    channels ``channels``, else the dataset's own when ``data`` is given, else 3). Every
    command reads refs this way."""
    from ganarch.builder import load_spec

    path = Path(ref)
    if path.exists():
        if width is not None or channels is not None:
            fail("--width and --channels apply to a template only, not a spec file")
        return load_spec(path)
    if not _TEMPLATE_REF.match(ref):
        fail(f"{ref}: no such file (or name a template: 'dcgan' or 'TEMPLATE:SIZE')")
    info, size = template_ref(ref, prefix=f"{ref}: no such file, and ")
    if channels is None and data is not None:
        from ganarch.data import native_channels

        channels = native_channels(data)
    return info.spec(
        size or TEMPLATE_SIZE, channels=3 if channels is None else channels, width=width
    )
