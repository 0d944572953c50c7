"""The exceptions ganarch raises for bad input, so callers can catch one type."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GanarchError(Exception):
    """Base class for errors caused by what the user gave ganarch (exit code 2 on the CLI)."""


class SpecError(GanarchError, ValueError):
    """A spec, search space or block registration is invalid.

    The message names the exact place (``generator.layers[3].params.out_channels``),
    what is wrong there and, where it helps, the closest valid names.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


#: The exit code of a run the machine failed (EX_TEMPFAIL): neither a bug (1) nor bad input (2);
#: fix the machine and run the same command again.
HOST_EXIT = 75


class HostError(Exception):
    """The machine failed a run: a full disk, a folder turned read-only or unwritable, a
    dropped database connection. Neither bad input nor a result: a search stops, leaves the
    trial failed and queued to run again, and the command exits ``HOST_EXIT`` (75) with this
    one-line message."""


class PluginError(GanarchError):
    """A plugin registered something invalid (duplicate name, unknown kind, ...)."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ``"did you mean ..."`` fragment for an unknown name, or ``""``."""
    choices = sorted(set(choices))
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if near:
        return "did you mean " + ", ".join(repr(c) for c in near) + "?"
    if len(choices) <= 12:
        return "valid: " + ", ".join(choices)
    return f"see `ganarch blocks` for the {len(choices)} valid names"
