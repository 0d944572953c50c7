"""Commands of the search: ``search`` runs or resumes a study; ``studies``, ``trials`` and
``best`` read results back. Results go to stdout (``--json`` on every read command); the live
display and messages go to stderr.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from ganarch.cli._common import (
    JSON_OPTION,
    STORAGE_OPTION,
    err,
    fail,
    note,
    out,
    print_json,
    require_storage,
    write_new_file,
)
from ganarch.search.defaults import OBJECTIVES, PRUNERS, SAMPLERS
from ganarch.templates import PAPER_CHOICES

if TYPE_CHECKING:  # the search layer imports Optuna and torch: load it when a command runs
    from ganarch.search.study import SearchConfig

__all__ = ["register"]


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        fail(f"{option}: {value!r} is not one of {', '.join(allowed)}")
    return value


# --- search ----------------------------------------------------------------------------------


def search_command(
    space: str = typer.Option(
        "dcgan", "--space", help="A shipped space name (dcgan, quick) or a space file."
    ),
    data: str = typer.Option("digits", "--data", help="Dataset: digits, shapes, folder:PATH, ..."),
    image_size: int | None = typer.Option(
        None, "--image-size", min=8, help="Image size (default: the space's)."
    ),
    channels: int | None = typer.Option(
        None, "--channels", min=1, max=3, help="Image channels (default: the dataset's own)."
    ),
    width: int | None = typer.Option(
        None, "--width", min=1, help="Channel width (default: the space's)."
    ),
    trials: int = typer.Option(
        20, "--trials", min=1, help="Finished trials (complete + pruned) the study should hold."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Stop starting new trials after this many seconds."
    ),
    steps: int = typer.Option(1000, "--steps", min=1, help="Training steps per trial."),
    seeds: int = typer.Option(
        1, "--seeds", min=1, help="Seeds trained per trial (stability across seeds)."
    ),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe, random, grid, qmc or nsga2."),
    pruner: str = typer.Option(
        "hyperband", "--pruner", help="hyperband, median or none (single objective only)."
    ),
    objective: str = typer.Option(
        "score", "--objective", help="score (one value) or multi (quality and stability)."
    ),
    storage: str | None = STORAGE_OPTION,
    study: str | None = typer.Option(None, "--study", help="Study name (default: SPACE-DATA)."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Local worker processes sharing the storage."
    ),
    device: str | None = typer.Option(
        None, "--device", help="cuda, mps or cpu (default: the best available)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the sampler and the trials' training."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Trial artifacts (default ./ganarch-runs/STUDY)."
    ),
    eval_every: int | None = typer.Option(
        None, "--eval-every", min=1, help="Steps between evaluations (reported to the pruner)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live display."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Search a space of DCGAN-family GANs with Optuna; run it again to resume.

    Each trial builds a spec from the space's choices, trains it for --steps with --seeds
    seeds and records quality, stability and the objective. A trial that fails (an invalid
    spec, a block that raises, CUDA out of memory) gets the worst score and is marked
    infeasible so the sampler avoids it; the study goes on. Ctrl-C stops after recording
    what is done.
    """
    _choice(sampler, SAMPLERS, "--sampler")
    _choice(pruner, PRUNERS, "--pruner")
    _choice(objective, OBJECTIVES, "--objective")
    from ganarch.search.objective import TrialSettings
    from ganarch.search.space import load_space
    from ganarch.search.storage import resolve_url
    from ganarch.search.study import SearchConfig, default_study_name, run_search, summary_lines

    sp = load_space(space)
    name = study or default_study_name(sp, data)
    url = resolve_url(storage)
    if sampler == "grid":
        sp.grid()  # a continuous choice: SpecError, exit 2
    if objective == "multi" and pruner != "none":
        note("note: Optuna cannot prune multi-objective studies; pruning is off")
    if workers > 1 and url.startswith("sqlite:"):
        note(
            "warning: SQLite is not meant for several writer processes; prefer the default "
            "journal file or PostgreSQL with --workers"
        )
    settings = TrialSettings(
        data=data,
        steps=steps,
        seeds=seeds,
        objective=objective,
        device=device,
        seed=seed,
        out=str(out_dir or Path("ganarch-runs") / name),
        eval_every=eval_every,
        image_size=image_size,
        channels=channels,
        width=width,
    )
    config = SearchConfig(
        space=sp,
        settings=settings,
        study_name=name,
        storage=url,
        trials=trials,
        timeout=timeout,
        sampler=sampler,
        pruner=pruner,
        workers=workers,
    )
    display = None
    if not quiet:
        from ganarch.search.display import SearchDisplay

        display = SearchDisplay(err)
    summary = run_search(config, display=display)
    resume = _resume_command(config, space, storage, out_dir, device, timeout, quiet)
    if as_json:
        print_json({**summary.to_dict(), "resume": resume})
    else:
        for line in summary_lines(summary):
            note(line)
        if summary.best:
            out.print(_best_table(summary.best, f"best trials of {name}"))
            st = "" if storage is None else f" --storage {shlex.quote(storage)}"
            note(
                f"next: ganarch best {shlex.quote(name)}{st} -o best.json · "
                f"ganarch rules {shlex.quote(name)}{st}"
            )
    if summary.interrupted:
        note(f"interrupted: what finished is recorded. Resume with:\n  {resume}")
        raise typer.Exit(130)


def _resume_command(
    config: SearchConfig,
    space: str,
    storage: str | None,
    out_dir: Path | None,
    device: str | None,
    timeout: float | None,
    quiet: bool,
) -> str:
    s = config.settings
    args = [
        "ganarch",
        "search",
        "--space",
        space,
        "--data",
        s.data,
        "--study",
        config.study_name,
        "--trials",
        str(config.trials),
        "--steps",
        str(s.steps),
        "--seeds",
        str(s.seeds),
        "--sampler",
        config.sampler,
        "--pruner",
        config.pruner,
        "--objective",
        s.objective,
        "--seed",
        str(s.seed),
    ]
    for flag, value in (
        ("--image-size", s.image_size),
        ("--channels", s.channels),
        ("--width", s.width),
        ("--storage", storage),
        ("--out", out_dir),
        ("--device", device),
        ("--timeout", timeout),
        ("--eval-every", s.eval_every),
    ):
        if value is not None:
            args += [flag, str(value)]
    if config.workers > 1:
        args += ["--workers", str(config.workers)]
    if quiet:
        args.append("--quiet")
    return shlex.join(args)


def fmt_value(value: Any) -> str:
    from ganarch.search.display import fmt_value as fmt

    return fmt(value)


def _best_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("value(s)", justify="right")
    t.add_column("quality", justify="right")
    t.add_column("stability", justify="right")
    t.add_column("choices", overflow="fold")
    for r in rows:
        t.add_row(
            str(r["number"]),
            "/".join(fmt_value(v) for v in r["values"] or []),
            fmt_value(r["quality"]),
            fmt_value(r["stability"]),
            _params_text(r["params"]),
        )
    return t


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


# --- studies / trials / best -----------------------------------------------------------------


def studies_command(storage: str | None = STORAGE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List the studies in the storage: trials by state, best value(s), direction(s)."""
    from ganarch.search import results
    from ganarch.search.storage import describe_storage

    url = require_storage(storage)
    rows = results.list_studies(url)
    if as_json:
        print_json(rows)
        return
    if not rows:
        note(f"no studies in {describe_storage(url)}")
        return
    t = Table(title=f"{len(rows)} studies in {describe_storage(url)}", title_justify="left")
    for col in ("study", "trials", "states", "best", "value(s)", "direction(s)", "space", "data"):
        t.add_column(col, justify="right" if col in ("trials", "best", "value(s)") else "left")
    for r in rows:
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(r["states"].items()))
        names = r["metric_names"] or [None] * len(r["directions"])
        dirs = ", ".join(
            f"{d} {n}" if n else d for d, n in zip(r["directions"], names, strict=False)
        )
        t.add_row(
            r["name"],
            str(r["n_trials"]),
            states,
            fmt_value(r["best_trial"]),
            "/".join(fmt_value(v) for v in r["best_values"] or []) or "-",
            dirs,
            fmt_value(r["space"]),
            fmt_value(r["data"]),
        )
    out.print(t)


def trials_command(
    study: str = typer.Argument(..., help="Study name."),
    storage: str | None = STORAGE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List a study's trials: number, state, value(s), key choices, failure reason."""
    from ganarch.search import results

    rows = results.list_trials(study, require_storage(storage))
    if as_json:
        print_json(rows)
        return
    t = Table(title=f"{len(rows)} trials of {study}", title_justify="left")
    for col in ("#", "state", "value(s)", "quality", "stability", "choices", "failure"):
        t.add_column(
            col,
            justify="right" if col in ("#", "value(s)", "quality", "stability") else "left",
            overflow="fold",
        )
    for r in rows:
        style = "yellow" if r["failure"] or r["state"] == "FAIL" else None
        t.add_row(
            str(r["number"]),
            r["state"].lower(),
            "/".join(fmt_value(v) for v in r["values"] or []) or "-",
            fmt_value(r["quality"]),
            fmt_value(r["stability"]),
            _params_text(r["params"]),
            fmt_value(r["failure"]) if r["failure"] else "",
            style=style,
        )
    out.print(t)


def best_command(
    study: str = typer.Argument(..., help="Study name."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the spec (.json or .yaml)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite --output if it exists."),
    storage: str | None = STORAGE_OPTION,
    as_json: bool = typer.Option(
        False, "--json", help="Print the spec as JSON (a loadable spec file)."
    ),
) -> None:
    """The best trial's spec with its training settings (multi-objective: the Pareto-front
    trial with the highest quality × stability, ties to the lower trial number)."""
    from ganarch.search import results

    spec = results.best_spec(study, require_storage(storage))
    if output is not None:
        write_new_file(output, spec.save, force=force)
        note(f"wrote {output}")
    if as_json:
        print_json(spec.to_dict())
        return
    info = dict(spec.meta.get("search", {}))
    choices = dict(spec.meta.get("choices", {}))
    changed = {k: v for k, v in choices.items() if k in PAPER_CHOICES and PAPER_CHOICES[k] != v}
    changed.update({k: v for k, v in choices.items() if k not in PAPER_CHOICES})
    out.print(
        f"best trial {info.get('trial')} of {study}: value(s) "
        + "/".join(fmt_value(v) for v in info.get("values", []))
        + f" (quality {fmt_value(info.get('quality'))}, stability {fmt_value(info.get('stability'))})",
        markup=False,
    )
    out.print(
        f"image {spec.image_size}×{spec.image_size}×{spec.channels}, latent {spec.latent_dim}, "
        f"width {spec.meta.get('width', '-')}",
        markup=False,
    )
    out.print(
        "differs from the paper's DCGAN: " + (_params_text(changed) if changed else "nothing"),
        markup=False,
    )
    out.print("training: " + _params_text(spec.training.to_dict()), markup=False)
    if output is None:
        note(f"save it with: ganarch best {shlex.quote(study)} -o best.json")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("search")(search_command)
    app.command("studies")(studies_command)
    app.command("trials")(trials_command)
    app.command("best")(best_command)
