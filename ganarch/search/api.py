"""Search from Python: ``ganarch.search(...)`` is ``ganarch search`` as a function, and
``ganarch.load_study(name)`` opens a study, both returning Optuna's own study object.

The command line builds its search through :func:`make_config` too, and its option defaults
are :data:`DEFAULTS`, so the two cannot drift apart. Importing this module imports no Optuna
or torch (``import ganarch`` stays quick); running a search does.

Example::

    study = ganarch.search("quick", data="digits", trials=16, steps=400)
    study.best_trial.params
    optuna.visualization.plot_param_importances(study)
    study = ganarch.load_study("quick-digits")       # later, or from another process
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganarch.errors import GanarchError
from ganarch.search.defaults import OBJECTIVES
from ganarch.search.workers import AUTO, parse_workers

if TYPE_CHECKING:
    import optuna

    from ganarch.search.study import SearchConfig

__all__ = ["DEFAULTS", "load_study", "make_config", "search"]

#: Trials of a search that is not a design when ``--trials`` is left out.
TRIALS = 20

#: The defaults of ``ganarch search`` and of :func:`search`, option by option.
DEFAULTS: dict[str, Any] = {
    "space": "dcgan",
    "data": "digits",
    "image_size": None,
    "channels": None,
    "width": None,
    "trials": None,  # TRIALS, or every run of a design (--sampler fractional, ...)
    "timeout": None,
    "steps": 1000,
    "seeds": 1,
    "sampler": "tpe",
    "pruner": "hyperband",
    "objective": "score",
    "storage": None,
    "study": None,
    "workers": "auto",  # 1 on a CPU; on CUDA as many trials at once as the GPU holds
    "device": None,
    "seed": 0,
    "out": None,
    "eval_every": None,
    "quiet": False,
}

#: Options with a lower bound, checked here as the command line's ``min=`` checks them.
_AT_LEAST = {
    "image_size": 8,
    "channels": 1,
    "width": 1,
    "trials": 1,
    "timeout": 1,
    "steps": 1,
    "seeds": 1,
    "eval_every": 1,
}


#: Options that are whole numbers (``timeout`` may be fractional); None means the default.
_WHOLE = (
    "image_size",
    "channels",
    "width",
    "trials",
    "steps",
    "seeds",
    "seed",
    "eval_every",
)
_TEXT = ("data", "sampler", "pruner", "objective", "device", "study")


def _check_types(o: dict[str, Any]) -> None:
    """From Python, ``trials="5"`` is bad input named by its option, not a TypeError from
    deep inside (the command line's parser converts its text itself)."""
    for key in (*_WHOLE, "timeout", *_TEXT):
        value, flag = o[key], "--" + key.replace("_", "-")
        if value is None and key not in ("steps", "seeds", "seed", "data"):
            continue
        if key in _TEXT:
            ok, expected = isinstance(value, str), "text"
        elif key == "timeout":
            ok, expected = isinstance(value, int | float) and not isinstance(value, bool), "seconds"
        else:
            ok, expected = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        if not ok:
            raise GanarchError(f"{flag}: expected {expected}, got {value!r}")


def make_config(note: Callable[[str], None] | None = None, **options: Any) -> SearchConfig:
    """The ``SearchConfig`` for ``ganarch search``'s options (missing ones take
    :data:`DEFAULTS`); bad input is a ``GanarchError`` naming the option. ``note`` receives
    the advisory messages the command line prints (pruning off, SQLite with workers)."""
    from ganarch.search.objective import TrialSettings
    from ganarch.search.space import load_space
    from ganarch.search.storage import resolve_url
    from ganarch.search.study import SearchConfig, default_study_name

    unknown = set(options) - set(DEFAULTS)
    if unknown:
        from ganarch.errors import closest

        name = sorted(unknown)[0]
        raise GanarchError(f"search: no option {name!r}; {closest(name, DEFAULTS)}")
    o = {**DEFAULTS, **options}
    _check_types(o)
    o["workers"] = parse_workers(o["workers"])
    from ganarch.search.strategies import get_pruner, get_sampler

    strategy = get_sampler(o["sampler"])  # a name no plugin registered: the closest named
    get_pruner(o["pruner"])
    if o["objective"] not in OBJECTIVES:
        raise GanarchError(f"--objective: {o['objective']!r} is not one of {', '.join(OBJECTIVES)}")
    for key, low in _AT_LEAST.items():
        if o[key] is not None and o[key] < low:
            flag = "--" + key.replace("_", "-")
            raise GanarchError(f"{flag}: {o[key]!r} is below its minimum {low}")
    say = note or (lambda message: None)
    sp = load_space(o["space"])
    name = o["study"] or default_study_name(sp, o["data"])
    url = resolve_url(o["storage"])
    if strategy.check is not None:
        strategy.check(sp)  # e.g. the grid and a continuous choice: SpecError naming it
    if strategy.design_runs is not None:  # a space the design cannot cover: fail before any study
        runs = strategy.design_runs(sp)
        if o["trials"] is None:
            o["trials"] = runs
        elif o["trials"] < runs:  # a prefix of the design is unbalanced: no honest verdicts
            raise GanarchError(
                f"--trials {o['trials']}: the {o['sampler']} design of {sp.name} has {runs} "
                f"runs and a designed study runs all of them; leave --trials out (or give "
                f"at least {runs})"
            )
        if o["pruner"] != "none":  # a pruned run would leave a hole in the design
            say("note: a designed study trains every run to the end; pruning is off")
            o["pruner"] = "none"
    if o["trials"] is None:
        o["trials"] = TRIALS
    if o["objective"] == "multi" and o["pruner"] != "none":
        say("note: Optuna cannot prune multi-objective studies; pruning is off")
    if o["workers"] != AUTO and o["workers"] > 1 and url.startswith("sqlite:"):
        say(
            "warning: SQLite is not meant for several writer processes; prefer the default "
            "journal file or PostgreSQL with --workers"
        )
    settings = TrialSettings(
        data=o["data"],
        steps=o["steps"],
        seeds=o["seeds"],
        objective=o["objective"],
        device=o["device"],
        seed=o["seed"],
        out=str(o["out"] or Path("ganarch-runs") / name),
        eval_every=o["eval_every"],
        image_size=o["image_size"],
        channels=o["channels"],
        width=o["width"],
    )
    return SearchConfig(
        space=sp,
        settings=settings,
        study_name=name,
        storage=url,
        trials=o["trials"],
        timeout=o["timeout"],
        sampler=o["sampler"],
        pruner=o["pruner"],
        workers=o["workers"],
    )


def search(
    space: str | os.PathLike = DEFAULTS["space"],
    *,
    data: str = DEFAULTS["data"],
    image_size: int | None = DEFAULTS["image_size"],
    channels: int | None = DEFAULTS["channels"],
    width: int | None = DEFAULTS["width"],
    trials: int | None = DEFAULTS["trials"],
    timeout: float | None = DEFAULTS["timeout"],
    steps: int = DEFAULTS["steps"],
    seeds: int = DEFAULTS["seeds"],
    sampler: str = DEFAULTS["sampler"],
    pruner: str = DEFAULTS["pruner"],
    objective: str = DEFAULTS["objective"],
    storage: str | os.PathLike | None = DEFAULTS["storage"],
    study: str | None = DEFAULTS["study"],
    workers: int | str = DEFAULTS["workers"],
    device: str | None = DEFAULTS["device"],
    seed: int = DEFAULTS["seed"],
    out: str | os.PathLike | None = DEFAULTS["out"],
    eval_every: int | None = DEFAULTS["eval_every"],
    quiet: bool = DEFAULTS["quiet"],
) -> optuna.Study:
    """Run or resume a search, as ``ganarch search`` does, and return the Optuna study.

    Every option is the command's (``--image-size`` is ``image_size``), with the same
    default; the study is stored in ``storage`` (default ``./ganarch.journal``, or
    ``$GANARCH_STORAGE``) under ``study`` (default ``SPACE-DATA``). Calling it again with the
    same arguments resumes: only the trials missing to reach ``trials`` run, and changed
    settings are refused with the differences named. Progress and the summary go to stderr
    unless ``quiet``. Ctrl-C records what finished, then raises ``KeyboardInterrupt``.

    Example::

        study = ganarch.search("quick", data="digits", trials=16, steps=400)
        print(study.best_trial.number, study.best_value)
    """
    from ganarch.search.study import run_search, summary_lines

    messages: list[str] = []
    config = make_config(
        messages.append,
        space=str(space),
        data=data,
        image_size=image_size,
        channels=channels,
        width=width,
        trials=trials,
        timeout=timeout,
        steps=steps,
        seeds=seeds,
        sampler=sampler,
        pruner=pruner,
        objective=objective,
        storage=None if storage is None else str(storage),
        study=study,
        workers=workers,
        device=device,
        seed=seed,
        out=None if out is None else str(out),
        eval_every=eval_every,
    )
    display = None
    if not quiet:
        from rich.console import Console

        from ganarch.search.display import SearchDisplay

        console = Console(stderr=True, highlight=False)
        for message in messages:
            console.print(message, markup=False, soft_wrap=True)
        display = SearchDisplay(console)
    summary = run_search(config, display=display)
    if display is not None:
        for line in summary_lines(summary):
            display.console.print(line, markup=False, soft_wrap=True)
    if summary.interrupted:
        raise KeyboardInterrupt(
            f"search of {config.study_name!r} interrupted; call again to resume"
        )
    return load_study(config.study_name, config.storage)


def load_study(name: str, storage: str | os.PathLike | None = None) -> optuna.Study:
    """Open a study that ``ganarch search`` (or :func:`search`) wrote, as an Optuna study.

    ``storage`` is read as every command reads ``--storage`` (default ``./ganarch.journal``,
    or ``$GANARCH_STORAGE``); a missing storage or an unknown name is a ``GanarchError``
    listing the studies there. Reading never creates a storage.

    Example::

        study = ganarch.load_study("quick-digits")
        optuna.importance.get_param_importances(study)
    """
    from ganarch.search.results import open_study

    return open_study(name, storage)
