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
from rich.text import Text

from ganarch.cli._common import (
    JSON_OPTION,
    STORAGE_OPTION,
    err,
    note,
    out,
    print_json,
    print_table,
    require_storage,
    write_new_file,
)
from ganarch.search.api import DEFAULTS as D

if TYPE_CHECKING:  # the search layer imports Optuna and torch: load it when a command runs
    from ganarch.search.study import SearchConfig

__all__ = ["register"]


# --- search ----------------------------------------------------------------------------------


def search_command(
    space: str = typer.Option(
        D["space"], "--space", help="A shipped space name (dcgan, quick) or a space file."
    ),
    data: str = typer.Option(D["data"], "--data", help="Dataset: digits, shapes, folder:PATH, ..."),
    image_size: int | None = typer.Option(
        D["image_size"], "--image-size", min=8, help="Image size (default: the space's)."
    ),
    channels: int | None = typer.Option(
        D["channels"], "--channels", min=1, max=3, help="Image channels (default: the dataset's)."
    ),
    width: int | None = typer.Option(
        D["width"], "--width", min=1, help="Channel width (default: the space's)."
    ),
    trials: int | None = typer.Option(
        D["trials"],
        "--trials",
        min=1,
        help="Trained trials (complete, failed or pruned) the study should hold; repeats of "
        "an earlier configuration reuse its result and do not count. Default 20; with a "
        "design sampler, the design's number of runs (fewer is refused).",
    ),
    timeout: float | None = typer.Option(
        D["timeout"], "--timeout", min=1, help="Stop starting new trials after this many seconds."
    ),
    steps: int = typer.Option(D["steps"], "--steps", min=1, help="Training steps per trial."),
    seeds: int = typer.Option(
        D["seeds"], "--seeds", min=1, help="Seeds trained per trial (stability across seeds)."
    ),
    # Plugins add names: the help cannot list them without loading torch, `ganarch plugins` does.
    sampler: str = typer.Option(
        D["sampler"],
        "--sampler",
        help="A registered sampler: tpe, random, grid, qmc, nsga2, a design (fractional, "
        "fractional32, factorial) or a plugin's (`ganarch plugins --json` lists them).",
    ),
    pruner: str = typer.Option(
        D["pruner"],
        "--pruner",
        help="A registered pruner: hyperband, median, none or a plugin's (single objective only).",
    ),
    objective: str = typer.Option(
        D["objective"], "--objective", help="score (one value) or multi (quality and stability)."
    ),
    storage: str | None = STORAGE_OPTION,
    study: str | None = typer.Option(
        D["study"], "--study", help="Study name (default: SPACE-DATA)."
    ),
    workers: str = typer.Option(
        D["workers"],
        "--workers",
        help="Local worker processes sharing the storage: a number, or auto (1 on a CPU; on "
        "CUDA as many trials at once as the GPU's free memory holds).",
    ),
    device: str | None = typer.Option(
        D["device"], "--device", help="cuda, mps or cpu (default: the best available)."
    ),
    seed: int = typer.Option(
        D["seed"], "--seed", help="Seeds the sampler and the trials' training."
    ),
    out_dir: Path | None = typer.Option(
        D["out"], "--out", help="Trial artifacts (default ./ganarch-runs/STUDY)."
    ),
    eval_every: int | None = typer.Option(
        D["eval_every"],
        "--eval-every",
        min=1,
        help="Steps between evaluations (reported to the pruner).",
    ),
    quiet: bool = typer.Option(D["quiet"], "--quiet", "-q", help="No live display."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Search a template's design space (dcgan or a plugin's) with Optuna; rerun to resume.

    Each trial builds a spec from the space's choices, trains it for --steps with --seeds
    seeds and records quality, stability and the objective. A trial that fails (an invalid
    spec, a block that raises, CUDA out of memory) gets the worst score and is marked
    infeasible so the sampler avoids it; the study goes on. Ctrl-C stops after recording
    what is done. In Python: ganarch.search(...), with the same options and defaults.
    """
    from ganarch.search.api import make_config
    from ganarch.search.storage import PASSWORD_HINT, drop_password
    from ganarch.search.strategies import get_sampler
    from ganarch.search.study import run_search, summary_lines

    config = make_config(
        note,
        space=space,
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
        storage=storage,
        study=study,
        workers=workers,
        device=device,
        seed=seed,
        out=out_dir,
        eval_every=eval_every,
    )
    name, url = config.study_name, config.storage
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
            print_table(_best_table(summary.best, f"best trials of {name}"))
            st = "" if storage is None else f" --storage {shlex.quote(drop_password(storage))}"
            note(
                f"next: ganarch best {shlex.quote(name)}{st} -o best.json · "
                f"ganarch rules {shlex.quote(name)}{st}"
            )
            if storage is not None and drop_password(storage) != storage:
                note(PASSWORD_HINT)
        if get_sampler(config.sampler).is_design and not summary.interrupted:
            from ganarch.cli.analysis import print_study_rules

            print_study_rules(name, url)  # the design's verdicts: what the study was for
    if summary.interrupted:
        note(f"interrupted: what finished is recorded. Resume with:\n  {resume}")
        if storage is not None and drop_password(storage) != storage:
            note(PASSWORD_HINT)
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
    from ganarch.search.storage import drop_password

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
        # never a password, and no *** either: the command runs as printed
        ("--storage", None if storage is None else drop_password(storage)),
        ("--out", out_dir),
        ("--device", device),
        ("--timeout", timeout),
        ("--eval-every", s.eval_every),
    ):
        if value is not None:
            args += [flag, str(value)]
    if config.workers != D["workers"]:
        args += ["--workers", str(config.workers)]
    if quiet:
        args.append("--quiet")
    return shlex.join(args)


def fmt_value(value: Any) -> str:
    from ganarch.search.display import fmt_value as fmt

    return fmt(value)


def _best_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("#", justify="right", no_wrap=True)
    for col in ("objective", "quality", "stability"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("choices")
    for r in rows:
        t.add_row(
            str(r["number"]),
            _num(r["objective"]),
            _num(r["quality"]),
            _num(r["stability"]),
            Text(_params_text(r["params"])),
        )
    return t


def _num(value: Any) -> str:
    """A score in a table: 3 significant digits (``--json`` has them all)."""
    return f"{value:.3g}" if isinstance(value, float) else fmt_value(value)


def _params_text(params: dict[str, Any]) -> str:
    """``k=v, ...``; a conditional choice's branch label (``slope|leaky_relu``) is left out:
    the choice it depends on is in the same list (``--json`` keeps Optuna's full names)."""
    return ", ".join(f"{k.split('|')[0]}={fmt_value(v)}" for k, v in params.items())


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
    title = f"{len(rows)} {'study' if len(rows) == 1 else 'studies'} in {describe_storage(url)}"
    t = Table(title=title, title_justify="left")
    t.add_column("study", no_wrap=True)
    t.add_column("trials", no_wrap=True)
    t.add_column("best trial")
    t.add_column("space", no_wrap=True)
    t.add_column("data", no_wrap=True)
    for r in rows:
        names = r["metric_names"] or [f"value {i}" for i in range(len(r["directions"]))]
        best = [
            f"{n} {_num(v)}" + ("" if d == "maximize" else f" ({d})")
            for n, v, d in zip(names, r["best_values"] or [], r["directions"], strict=False)
        ]
        counts = r["counts"]
        t.add_row(
            Text(r["name"]),
            Text("\n".join([f"{counts['total']} in all:", *counts["lines"]])),
            Text("\n".join([f"#{r['best_trial']}", *best]) if best else "-"),
            Text(fmt_value(r["space"])),
            Text(fmt_value(r["data"])),
        )
    print_table(t)


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
    # no outer edge: two more columns for the choices, the widest cell of any table
    t = Table(
        title=f"{len(rows)} trials of {study}",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("state", no_wrap=True)
    for col in ("objective", "quality", "stability"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("choices")
    for r in rows:
        detail = Text(_params_text(r["params"]))
        if r["repeat_of"] is not None:  # the same choices as that trial: say so, not again
            detail = Text(f"repeats trial {r['repeat_of']}: same choices, its result reused")
        elif r["failure"]:
            detail.append(f"\n{r['label']}: {r['failure']}", style="yellow")
        t.add_row(
            str(r["number"]),
            r["label"],
            _num(r["objective"]),
            _num(r["quality"]),
            _num(r["stability"]),
            detail,
        )
    print_table(t)


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
    template = str(spec.meta.get("template", "dcgan"))
    changed = results.changed_choices(choices, template)  # vs the template it was built from
    base = "the paper's DCGAN" if template == "dcgan" else f"the {template!r} template's defaults"
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
        f"differs from {base}: " + (_params_text(changed) if changed else "nothing"),
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
