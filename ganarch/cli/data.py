"""Commands about datasets: ``datasets`` lists what ``--data`` can name."""

from __future__ import annotations

import typer
from rich.table import Table

from ganarch.cli._common import JSON_OPTION, print_json, print_table

__all__ = ["datasets_command", "register"]


def datasets_command(as_json: bool = JSON_OPTION) -> None:
    """List the registered datasets: name, plugin, whether it takes NAME:ARG, description."""
    from ganarch.data import datasets  # imports torch: only when the command runs

    table = datasets()
    if as_json:
        print_json(
            [
                {
                    "name": d.name,
                    "plugin": d.plugin,
                    "takes_arg": d.takes_arg,
                    "description": d.description,
                }
                for d in table.values()
            ]
        )
        return
    t = Table(title=f"{len(table)} datasets (use --data NAME or --data NAME:ARG)")
    t.add_column("name", style="bold", no_wrap=True)
    t.add_column("arg", no_wrap=True)
    t.add_column("plugin", no_wrap=True)
    t.add_column("description", overflow="fold")
    for d in table.values():
        t.add_row(d.name, "yes" if d.takes_arg else "", d.plugin, d.description)
    print_table(t)


def register(app: typer.Typer) -> None:
    """Add the dataset commands to ``app``."""
    app.command("datasets")(datasets_command)
