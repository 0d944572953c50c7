"""One self-contained HTML page for a study: ``write_report(study, out_dir)``.

The page holds the study summary, the rules table, a parameter-importance bar plot (naming
the evaluator; with too few trials for one, each trial's score by choice instead, and why),
a rule-effect plot with 95% CIs (none for a claim without enough trials), and the best trials' sample grids and training
curves (``samples.png`` and ``curves.png`` from each trial's ``user_attrs["artifacts"]``).
Styles are inline and images are base64 ``data:`` URIs, so it opens offline and makes no
network request.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ganarch.analysis import stats
from ganarch.analysis.rules import MIN_IMPORTANCE_TRIALS, RulesTable, rules_table
from ganarch.errors import GanarchError
from ganarch.search import results
from ganarch.search.results import Study, Trial

__all__ = ["REPORT_NAME", "best_trials", "render_html", "write_report"]

REPORT_NAME = "report.html"
ARTIFACT_IMAGES = ("samples.png", "curves.png")

_VERDICT_COLOURS = {
    "confirmed": "#1a7f37",
    "contradicted": "#cf222e",
    "inconclusive": "#9a6700",
    "not enough trials": "#6e7781",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.25rem;
     border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-weight: 600; } .muted { color: #6e7781; font-size: .85rem; }
.claim { max-width: 22rem; } img { max-width: 100%; border: 1px solid #d0d7de; }
.trial { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; margin: 1rem 0; }
.trial figure { margin: 0; } figcaption { font-size: .8rem; color: #6e7781; }
code { background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; }
"""


# -- helpers -----------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return (
        f"{value:.{digits}g}" if abs(value) >= 1e4 or abs(value) < 1e-3 else f"{value:.{digits}f}"
    )


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # No "Software" metadata: it carries a URL, and the page should name no address at all.
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))  # no pyplot: no global state, no GUI backend
    FigureCanvasAgg(fig)
    return fig


# -- plots -------------------------------------------------------------------------------------


def importance_plot(table: RulesTable) -> bytes | None:
    """Horizontal bars: every searched parameter's importance, labelled with its claim."""
    claim_of = {p: row.claim.id for row in table.rows for p in row.param_importances}
    values = dict(table.importances) or {
        p: v for row in table.rows for p, v in row.param_importances.items()
    }
    if not values:
        return None
    bars = sorted(values.items(), key=lambda b: b[1])
    fig = _new_figure(7.0, 0.32 * len(bars) + 1.2)
    ax = fig.add_subplot()
    labels = [f"{p}  (claim {claim_of[p]})" if p in claim_of else p for p, _ in bars]
    colours = ["#0969da" if p in claim_of else "#8c959f" for p, _ in bars]
    ax.barh(labels, [v for _, v in bars], color=colours)
    ax.set_xlabel("normalised importance (blue: a claim's parameter)")
    ax.set_title(f"Parameter importance — {(table.evaluator or '').split(' (')[0]}", fontsize=10)
    ax.set_xlim(0, max(1e-9, max(v for _, v in bars)) * 1.1)
    return _figure_png(fig)


def choice_scores_plot(study: Study, table: RulesTable) -> bytes | None:
    """Every distinct complete trial's score as a dot, one row per value of each categorical
    choice, with the row's mean as a bar. Shown in place of importances when the study has
    too few trials for them: raw scores, not an estimate, so it says no more than the data."""
    from ganarch.analysis.rules import scored_trials

    scored, _ = scored_trials(study)
    params = {t.number: t.params for t in results.trials(study)}
    rows: dict[tuple[str, str], list[float]] = {}
    for s in scored:
        for name, value in sorted(params.get(s.number, {}).items()):
            if isinstance(value, float) and not float(value).is_integer():
                continue  # a continuous choice has no rows of equal values
            rows.setdefault((name.split("|")[0], str(value)), []).append(s.score)
    if not rows:
        return None
    rows = dict(sorted(rows.items()))  # grouped by choice, top to bottom
    labels = [f"{name} = {value}" for name, value in rows][::-1]
    values = list(rows.values())[::-1]
    fig = _new_figure(7.0, 0.28 * len(rows) + 1.4)
    ax = fig.add_subplot()
    for y, scores in enumerate(values):
        ax.scatter(scores, [y] * len(scores), s=14, color="#0969da", alpha=0.7)
        mean = sum(scores) / len(scores)
        ax.plot([mean, mean], [y - 0.3, y + 0.3], color="#1f2328", lw=1.5)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    better = "higher" if table.higher_is_better else "lower"
    ax.set_xlabel(
        f"{table.score} of each complete trial (dots) and their mean (bar); {better} is better"
    )
    ax.set_title(
        f"Scores by choice — {len(scored)} distinct complete trials (not an importance estimate)",
        fontsize=10,
    )
    return _figure_png(fig)


def effect_plot(table: RulesTable) -> bytes:
    """Each claim's effect (paper − alternative) with its 95% CI, coloured by verdict."""
    return _figure_png(effect_figure(table))


def effect_figure(table: RulesTable) -> Any:
    """The figure of :func:`effect_plot`. A claim without a verdict ("not enough trials")
    gets no point and no interval, only its counts: an interval from one or two trials per
    side would look like evidence."""
    rows = list(table.rows)
    fig = _new_figure(7.0, 0.45 * len(rows) + 1.2)
    ax = fig.add_subplot()
    labels = [f"{r.claim.id}. {r.claim.name}" for r in rows]
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows, strict=True):
        e = r.effect
        colour = _VERDICT_COLOURS.get(r.verdict, "#6e7781")
        if e.effect is None:
            ax.text(0, y, " no data on one side", va="center", fontsize=8, color=colour)
            continue
        if r.verdict == "not enough trials":
            ax.text(
                0, y, f" not enough trials ({e.n_paper} vs {e.n_alt})", va="center",
                fontsize=8, color=colour,
            )  # fmt: skip
            continue
        lo = e.ci_low if e.ci_low is not None else e.effect
        hi = e.ci_high if e.ci_high is not None else e.effect
        ax.errorbar(
            e.effect, y, xerr=[[e.effect - lo], [hi - e.effect]], fmt="o", color=colour, capsize=4
        )
    ax.axvline(0.0, color="#1f2328", lw=0.8, ls="--")
    ax.set_yticks(ys, labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    better = "higher" if table.higher_is_better else "lower"
    ax.set_xlabel(f"effect on {table.score}: mean(paper) − mean(alternative); {better} is better")
    ax.set_title(f"Rule effects with 95% CIs — {table.evidence}", fontsize=10)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in _VERDICT_COLOURS.items()
    ]
    ax.legend(handles=handles, fontsize=7, loc="best", frameon=False)
    return fig


# -- trials ------------------------------------------------------------------------------------


def best_trials(study: Study, n: int = 3) -> list[Trial]:
    """The ``n`` best successful trials, ranked as ``ganarch best`` ranks them
    (``ganarch.search.study.ranked_trials``: by value; for a multi-objective study the Pareto
    front first, by quality × stability)."""
    from ganarch.search.study import ranked_trials

    return [t for t in ranked_trials(study) if not t.user_attrs.get("failure")][:n]


def _artifact_dirs(art: Any) -> list[Path]:
    """The run directory (or a mapping's ``dir``), then its ``seed-*`` runs (multi-seed)."""
    root = art if isinstance(art, str) else art.get("dir") if isinstance(art, Mapping) else None
    if not isinstance(root, str):
        return []
    path = Path(root)
    seeds = sorted(path.glob("seed-*"), key=lambda p: p.name) if path.is_dir() else []
    return [path, *seeds]


def _artifact_images(trial: Trial, base: Path | None) -> list[tuple[str, bytes]]:
    """``samples.png`` and ``curves.png`` of a trial's run (the first seed's if per seed)."""
    art = trial.user_attrs.get("artifacts")
    if isinstance(art, str) and base is not None and not Path(art).is_absolute():
        art = str(base / art) if not Path(art).exists() else art
    files: dict[str, Path] = {}
    if isinstance(art, Mapping):  # explicit image paths win
        for value in art.values():
            path = Path(value) if isinstance(value, str) else None
            if path is not None and path.name in ARTIFACT_IMAGES and path.is_file():
                files.setdefault(path.name, path)
    for folder in _artifact_dirs(art):
        for name in ARTIFACT_IMAGES:
            if name not in files and (folder / name).is_file():
                files[name] = folder / name
    return [(name, files[name].read_bytes()) for name in ARTIFACT_IMAGES if name in files]


def _template(trial: Trial) -> str:
    meta = (trial.user_attrs.get("spec") or {}).get("meta") or {}
    return str(meta.get("template", "dcgan"))


def _changed_choices(trial: Trial) -> dict[str, Any]:
    choices = trial.user_attrs.get("choices")
    if not isinstance(choices, Mapping):
        return dict(trial.params)
    return results.changed_choices(choices, _template(trial))


# -- the page ----------------------------------------------------------------------------------


def _rules_html(table: RulesTable) -> str:
    # The flips column (rate, then seed flips where measured) as in the terminal table, so a
    # row marked "(unstable)" shows why, and the flips note has its column.
    rated = any(r.flips or r.flip_rate is not None for r in table.rows)
    head = (
        "<tr><th>#</th><th>paper's claim</th><th>n paper</th><th>n alt</th>"
        "<th>mean paper</th><th>mean alt</th><th>effect [95% CI]</th>"
        "<th>importance</th>" + ("<th>flips</th>" if rated else "") + "<th>verdict</th></tr>"
    )
    shared = _shared_importance_note(table)  # said once, under the table, not per cell
    body = []
    for r in table.rows:
        e = r.effect
        ci = (
            f"{_num(e.effect)} [{_num(e.ci_low)}, {_num(e.ci_high)}]"
            if e.effect is not None
            else "-"
        )
        if e.effect is not None and r.verdict == "not enough trials":  # as in the plot
            ci = f'{_num(e.effect)}<br><span class="muted">no interval: too few trials</span>'

        imp = _num(r.importance) if r.importance is not None else "-"
        if r.importance_note and r.importance is None and r.importance_note != shared:
            imp += f'<br><span class="muted">{_e(r.importance_note)}</span>'
        elif r.param_importances:
            imp += "<br>" + "<br>".join(
                f'<span class="muted">{_e(p)} {_num(v)}</span>'
                for p, v in r.param_importances.items()
            )
        colour = _VERDICT_COLOURS.get(r.verdict, "#1f2328")
        body.append(
            f"<tr><td>{r.claim.id}</td>"
            f'<td class="claim"><b>{_e(r.claim.name)}</b><br>'
            f'<span class="muted">“{_e(r.claim.paper)}”<br>paper: {_e(r.claim.paper_side)}'
            f"<br>alternative: {_e(r.claim.alternative_side)}</span></td>"
            f'<td class="num">{e.n_paper}</td><td class="num">{e.n_alt}</td>'
            f'<td class="num">{_num(e.mean_paper)}</td><td class="num">{_num(e.mean_alt)}</td>'
            f'<td class="num">{ci}</td><td class="num">{imp}</td>'
            + (f'<td class="num">{_e(r.shown_flips)}</td>' if rated else "")
            + f'<td class="verdict" style="color:{colour}">{_e(r.shown_verdict)}</td></tr>'
        )
    foot = f"<p class='muted'>Importance (every “-” above): {_e(shared)}.</p>" if shared else ""
    return f"<table>{head}{''.join(body)}</table>{foot}"


def _shared_importance_note(table: RulesTable) -> str | None:
    """The importance note every row without an importance shares (e.g. too few trials)."""
    notes = {r.importance_note for r in table.rows if r.importance is None}
    return notes.pop() if len(notes) == 1 and None not in notes else None


def _summary_html(study: Study, table: RulesTable) -> str:
    trials = results.trials(study)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    directions = ", ".join(results.directions(study))
    rows = [
        ("study", study.study_name),
        ("trials", f"{len(trials)} (" + ", ".join(f"{v} {k}" for k, v in states.items()) + ")"),
        ("directions", directions),
        (
            "score in the table",
            f"{table.score} ({'higher' if table.higher_is_better else 'lower'} is better)",
        ),
        ("evidence", table.evidence),
        ("importance evaluator", table.evaluator or "-"),
    ]
    for key, value in sorted(study.user_attrs.items()):
        if isinstance(value, str | int | float | bool):
            rows.append((key, value))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    # the importance note is said under the rules table and in the importance section
    notes = "".join(f"<li>{_e(n)}</li>" for n in table.notes if not n.startswith("importance:"))
    return f"<table>{body}</table><ul class='muted'>{notes}</ul>"


def _trials_html(study: Study, trials: Sequence[Trial], base: Path | None) -> str:
    if not trials:
        return "<p class='muted'>No complete trials yet.</p>"
    names = results.metric_names(study)
    parts = []
    for t in trials:
        values = ", ".join(
            f"{_e(names[i]) if names and i < len(names) and names[i] else f'value {i}'} {_num(v)}"
            for i, v in enumerate(t.values or [])
        )
        extra = [
            f"{k} {_num(t.user_attrs[k])}"
            for k in ("quality", "stability")
            if isinstance(t.user_attrs.get(k), int | float)
        ]
        changed = _changed_choices(t)
        template = _template(t)
        unchanged = "the paper's DCGAN" if template == "dcgan" else f"the {template!r} defaults"
        choice_rows = (
            "".join(
                f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(changed.items())
            )
            or f"<tr><td colspan=2 class='muted'>{_e(unchanged)}</td></tr>"
        )
        images = (
            "".join(
                f'<figure><img alt="{_e(name)}" src="{_png_data_uri(data)}">'
                f"<figcaption>{_e(name)}</figcaption></figure>"
                for name, data in _artifact_images(t, base)
            )
            or "<p class='muted'>no sample grid or curves recorded</p>"
        )
        parts.append(
            f"<h3>Trial {t.number}: {values}</h3>"
            + (f"<p class='muted'>{_e(', '.join(extra))}</p>" if extra else "")
            + "<div class='trial'><table><tr><th>choice</th><th>value (differs from the template's defaults; dcgan's are the paper's)</th></tr>"
            + choice_rows
            + "</table>"
            + images
            + "</div>"
        )
    return "".join(parts)


def _ablation_html(table: RulesTable | None) -> str:
    if table is None:
        return ""
    notes = "".join(f"<li>{_e(n)}</li>" for n in table.notes)
    return (
        f"<h2>Ablation: {_e(table.source)}</h2>"
        f"<p class='muted'>Evidence: {_e(table.evidence)}. The paper's DCGAN against the same net "
        "with one rule flipped, trained with the same seeds; the effect is the mean per-seed "
        "difference.</p>"
        + _rules_html(table)
        + f"<ul class='muted'>{notes}</ul>"
        + f'<img alt="ablation effects" src="{_png_data_uri(effect_plot(table))}">'
    )


def render_html(
    study: Study,
    table: RulesTable,
    *,
    top: int = 3,
    artifacts_base: Path | None = None,
    ablation: RulesTable | None = None,
) -> str:
    """The report page as a string (see the module docstring); ``ablation`` adds the
    controlled experiment's table and effect plot beside the search's."""
    imp = importance_plot(table)
    eff = effect_plot(table)
    if imp:
        imp_html = f'<img alt="parameter importance" src="{_png_data_uri(imp)}">'
    else:
        why = next((r.importance_note for r in table.rows if r.importance_note), "none computed")
        scores = choice_scores_plot(study, table)
        imp_html = (
            f"<p class='muted'>No importance estimate: {_e(why)}. {_e(table.evaluator or '')} "
            f"needs at least {MIN_IMPORTANCE_TRIALS} distinct complete trials; run the same "
            "search again with a higher <code>--trials</code> to resume it. Meanwhile, each "
            "trial's score by choice:</p>"
            + (f'<img alt="scores by choice" src="{_png_data_uri(scores)}">' if scores else "")
        )
    rule_text = _e(stats.VERDICT_RULE)
    kind = (  # a designed study's runs are fixed in advance: its effects are controlled
        "Its runs follow a fixed design, so these effects are controlled comparisons."
        if table.design
        else "A search's trials are chosen by its sampler, so these effects are associations; "
        "<code>ganarch ablate</code> is the controlled test."
    )
    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ganarch report: {_e(study.study_name)}</title>
<style>{_CSS}</style></head>
<body>
<h1>ganarch report: {_e(study.study_name)}</h1>
<p class="muted">Which of Radford et al.'s DCGAN rules (2015) this search rediscovers. Written {created}.</p>
<h2>Study</h2>
{_summary_html(study, table)}
<h2>Rules table</h2>
<p class="muted">Evidence: {_e(table.evidence)}. {kind}
Importance: {_e(table.evaluator or "-")}.</p>
{_rules_html(table)}
<p class="muted">Verdict rule: {rule_text}</p>
<h2>Rule effects</h2>
<img alt="rule effects with confidence intervals" src="{_png_data_uri(eff)}">
{_ablation_html(ablation)}
<h2>Parameter importance</h2>
{imp_html}
<h2>Best trials</h2>
{_trials_html(study, best_trials(study, top), artifacts_base)}
</body></html>
"""


def write_report(
    study: Study,
    out_dir: str | Path,
    *,
    force: bool = False,
    evaluator: str = "ped-anova",
    top: int = 3,
    artifacts_base: str | Path | None = None,
    ablation: str | Path | None = None,
) -> Path:
    """Write ``out_dir/report.html`` and return its path.

    ``ablation`` names a ``ganarch ablate`` output directory whose table joins the page.

    ``out_dir`` is created if missing (its parent must exist); an existing report there is
    replaced only with ``force``. Relative artifact paths are tried as given, then under
    ``artifacts_base``.

    Example::

        write_report(ganarch.load_study("demo", storage), "report/")
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GanarchError(f"{out} exists and is not a directory")
    if not out.parent.exists():
        raise GanarchError(f"{out.parent} does not exist")
    path = out / REPORT_NAME
    if path.exists() and not force:
        raise GanarchError(f"{path} already exists; pass --force to overwrite it")
    ablation_table = None
    if ablation is not None:
        from ganarch.analysis.ablation import ablation_table as read_ablation

        if not (Path(ablation) / "variants").is_dir():
            raise GanarchError(f"{ablation} is not a `ganarch ablate` output directory")
        ablation_table = read_ablation(ablation)
    table = rules_table(study, evaluator=evaluator)
    text = render_html(
        study,
        table,
        top=top,
        artifacts_base=Path(artifacts_base) if artifacts_base else None,
        ablation=ablation_table,
    )
    out.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
