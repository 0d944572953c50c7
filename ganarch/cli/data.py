"""Commands about datasets: ``datasets`` lists what ``--data`` can name."""

from __future__ import annotations

import typer
from rich.table import Table

from ganarch.cli._common import print_json, print_table
from ganarch.data import datasets

__all__ = ["datasets_command", "register"]


def datasets_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the registered datasets: name, plugin, whether it takes NAME:ARG, description."""
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
