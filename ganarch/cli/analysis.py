"""Commands that read what searches and ablations found: ``rules``, ``ablate``, ``report``.

``rules`` and ``report`` read a study from storage (the same default as ``ganarch search``);
``ablate`` trains the paper's DCGAN with one rule flipped at a time and prints the same table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from ganarch.cli._common import (
    STORAGE_OPTION,
    fail,
    note,
    out,
    print_json,
    require_storage,
)
from ganarch.cli._common import print_table as print_fitted

if TYPE_CHECKING:  # the analysis imports Optuna: load it when a command runs
    from ganarch.analysis.claims import Claim
    from ganarch.analysis.rules import RulesTable

__all__ = ["print_study_rules", "print_table", "register"]

#: The parameter-importance evaluators of ``--evaluator`` (``ganarch.analysis.rules``).
EVALUATOR_NAMES = ("ped-anova", "fanova", "mdi")

_VERDICT_STYLE = {
    "confirmed": "green",
    "contradicted": "red",
    "inconclusive": "yellow",
    "not enough trials": "dim",
}


def _load(study: str, storage: str | None):
    from ganarch.search.storage import load_study, open_storage

    return load_study(study, open_storage(require_storage(storage)))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3f}"
    return f"{value:.2g}"


def _width() -> int:
    """The width the table will be printed at: the terminal's, ``COLUMNS`` in a pipe, or
    unbounded in a pipe without it (``print_fitted`` keeps a piped table's natural width)."""
    import os

    columns = os.environ.get("COLUMNS", "")
    if out.is_terminal:
        return out.width
    return int(columns) if columns.isdigit() and int(columns) > 0 else 10**6


def print_table(table: RulesTable) -> None:
    """The rules table for a terminal (stdout), with its evidence kind and evaluator.

    Narrow terminals get the essential columns; the side means show from 110 columns
    (``--json`` always has everything). Where the flips column alone would push a narrow
    table into one record per row (a search's table at 80 columns), each claim's flips go
    under its verdict instead.
    """
    from ganarch.cli._common import keep_words_whole, least_width

    wide = _width() >= 110
    t = _grid(table, wide, flips_under_verdict=False)
    if not wide and any(c.header == "flips" for c in t.columns):
        keep_words_whole(t)
        if least_width(t) > _width():
            folded = _grid(table, wide, flips_under_verdict=True)
            keep_words_whole(folded)
            t = folded if least_width(folded) <= _width() else t
    print_fitted(t)  # the one folding rule of every table: names and numbers stay whole
    for line in table.notes:
        note(f"note: {line}")


def _grid(table: RulesTable, wide: bool, *, flips_under_verdict: bool) -> Table:
    t = Table(
        title=f"Rules of Radford et al. (2015) — {table.source}",
        caption=f"evidence: {table.evidence}. effect on {table.score} = mean(paper) − "
        f"mean(alternative); {'higher' if table.higher_is_better else 'lower'} is better"
        + (f". importance: {table.evaluator}" if table.evaluator else ""),
        caption_justify="left",
    )
    t.add_column("#", justify="right")
    t.add_column("claim", min_width=10)
    t.add_column("n paper/alt" if wide else "n p/a", justify="right", no_wrap=True)
    if wide:
        t.add_column("mean paper", justify="right", no_wrap=True)
        t.add_column("mean alt", justify="right", no_wrap=True)
    t.add_column("effect", justify="right", no_wrap=True)
    t.add_column("95% CI", justify="right", no_wrap=True)  # an interval is one value
    if table.evaluator is not None:
        t.add_column("importance" if wide else "import.", justify="right", no_wrap=True)
    reseeded = any(r.flips or r.flip_rate is not None for r in table.rows)
    if reseeded and not flips_under_verdict:
        t.add_column("flips", justify="right")  # "12% 1/2" may fold at its space
    t.add_column("verdict", min_width=10)
    for r in table.rows:
        e = r.effect
        ci = "-" if e.ci_low is None else f"[{_fmt(e.ci_low)}, {_fmt(e.ci_high)}]"
        cells = [str(r.claim.id), r.claim.name, f"{e.n_paper}/{e.n_alt}"]
        if wide:
            cells += [_fmt(e.mean_paper), _fmt(e.mean_alt)]
        cells += [_fmt(e.effect), ci]
        if table.evaluator is not None:
            cells.append(_fmt(r.importance))
        if reseeded and not flips_under_verdict:
            cells.append(r.shown_flips)
        style = _VERDICT_STYLE.get(r.verdict, "")
        shown = Text(r.shown_verdict, style=style)  # a style, never markup parsed from text
        if reseeded and flips_under_verdict and (r.flip_rate is not None or r.flips):
            shown.append(f"\nflips {r.shown_flips}", style="dim")
        cells.append(shown)
        t.add_row(*cells)
    return t


def print_study_rules(study: str, storage: str) -> None:
    """The rules table of a study in a resolved storage (``ganarch search`` ends a designed
    study with it)."""
    from ganarch.analysis.rules import rules_table

    out.print()
    print_table(rules_table(_load(study, storage)))


def _claims(text: str | None) -> list[Claim]:
    from ganarch.analysis.claims import CLAIMS, get_claim

    if not text:
        return list(CLAIMS)
    chosen = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            chosen.append(get_claim(part))
        except KeyError:
            fail(f"--claims: no claim {part!r}; the claims are 1..{len(CLAIMS)}")
    return chosen


def _evaluator(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in EVALUATOR_NAMES:
        fail(f"--evaluator: {name!r} is not one of {', '.join(EVALUATOR_NAMES)}")
    return key


EVALUATOR_HELP = (
    "Parameter-importance evaluator: ped-anova (Optuna's default), fanova or mdi "
    "(mean decrease impurity). Named in every output."
)


def register(app: typer.Typer) -> None:
    """Add ``rules``, ``ablate`` and ``report`` to ``app``."""

    @app.command("rules")
    def rules(
        study: str = typer.Argument(..., help="Study name."),
        storage: str | None = STORAGE_OPTION,
        evaluator: str = typer.Option("ped-anova", "--evaluator", help=EVALUATOR_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Which of the paper's rules a study's trials confirm, contradict or leave open.

        One row per claim: trials on each side, the effect on the score with a 95% CI (Welch
        t below 30 trials a side, bootstrap above), the parameter importance, the flip rate
        (the chance that a re-run gives another verdict if the effect were the estimate) and
        a verdict. Search evidence is sampler-biased; a designed study (--sampler fractional)
        or `ganarch ablate` is the controlled test: for a designed study the table holds
        least-squares main effects with t-intervals and, with 2+ seeds, how often a verdict
        flips when one seed is left out; with runs missing, what is estimable and aliased is
        recomputed from the runs present.
        """
        from ganarch.analysis.rules import rules_table
        from ganarch.analysis.stats import VERDICT_RULE

        table = rules_table(_load(study, storage), evaluator=_evaluator(evaluator))
        if json_out:
            print_json({**table.to_dict(), "verdict_rule": VERDICT_RULE})
        else:
            print_table(table)

    @app.command("ablate")
    def ablate_cmd(
        data: str = typer.Option("digits", "--data", help="Dataset to train on."),
        image_size: int = typer.Option(32, "--image-size", help="Image size (a power of two)."),
        channels: int = typer.Option(
            None, "--channels", help="Image channels (default: the dataset's own)."
        ),
        width: int = typer.Option(
            32, "--width", help="D's first channel count (the paper: 64/128)."
        ),
        steps: int = typer.Option(500, "--steps", help="Training steps per run."),
        eval_every: int = typer.Option(
            None, "--eval-every", help="Evaluate every N steps (default: 5 evaluations per run)."
        ),
        seeds: int = typer.Option(3, "--seeds", help="Paired seeds per variant (0..K-1)."),
        claims: str = typer.Option(
            None, "--claims", help="Claims to test, e.g. '3,4,7' (default: all seven)."
        ),
        out_dir: Path = typer.Option(
            Path("ganarch-ablation"), "--out", "-o", help="Directory for runs; reruns resume."
        ),
        device: str = typer.Option(None, "--device", help="cuda, mps or cpu (default: best)."),
        force: bool = typer.Option(False, "--force", help="Start over in a used --out."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Train the paper's DCGAN and, for each claim, the same net with that rule flipped.

        Every variant trains with the same K seeds; the effect is the mean per-seed difference
        with a 95% t-interval on the paired differences, and `flips` the chance that a re-run
        with K new seeds gives another verdict (with 4+ seeds also the leave-one-seed-out
        count). Finished runs are saved to --out, so rerunning the same command resumes an
        interrupted ablation.
        """
        from ganarch.analysis.ablation import ablate
        from ganarch.analysis.stats import VERDICT_RULE
        from ganarch.data import native_channels  # the same choice as `search`
        from ganarch.templates import dcgan_spec

        if seeds < 1:
            fail(f"--seeds must be at least 1, got {seeds}")
        if steps < 1:
            fail(f"--steps must be at least 1, got {steps}")
        base = dcgan_spec(image_size, channels=channels or native_channels(data), width=width)
        chosen = _claims(claims)
        table = ablate(
            base,
            data=data,
            seeds=list(range(seeds)),
            steps=steps,
            claims=chosen,
            out_dir=out_dir,
            device=device,
            force=force,
            eval_every=eval_every,
        )
        if json_out:
            print_json({**table.to_dict(), "verdict_rule": VERDICT_RULE})
        else:
            print_table(table)
        if seeds < 3:
            note(f"note: {seeds} seed(s) give no verdict; the rule needs 3 paired seeds")

    @app.command("report")
    def report(
        study: str = typer.Argument(..., help="Study name."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Directory for report.html."),
        storage: str | None = STORAGE_OPTION,
        evaluator: str = typer.Option("ped-anova", "--evaluator", help=EVALUATOR_HELP),
        top: int = typer.Option(3, "--top", help="How many best trials to show."),
        ablation: Path = typer.Option(
            None, "--ablation", help="Add the table of a `ganarch ablate` --out directory."
        ),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
    ) -> None:
        """Write one HTML page that opens offline: rules table, importance and effect plots,
        and the best trials' sample grids and curves."""
        from ganarch.analysis.report import write_report

        if top < 0:
            fail(f"--top must be at least 0, got {top}")
        path = write_report(
            _load(study, storage),
            out_dir,
            force=force,
            evaluator=_evaluator(evaluator),
            top=top,
            ablation=ablation,
        )
        out.print(str(path), markup=False, highlight=False)
