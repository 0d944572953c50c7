"""The rediscovery table: for each of the paper's claims, what a study's trials say about it.

Which trials count: only ``COMPLETE`` trials. Trials that failed and were recorded as
``FAIL`` or ``PRUNED`` are left out (a pruned trial has no final score); a failed trial that
the search recorded as ``COMPLETE`` with a penalised value (``user_attrs["failure"]`` set)
counts with that penalised score, because the failure is part of the evidence about the
configuration (the table counts them in its notes).

The score: a single-objective study's objective value. For a multi-objective study
(quality and stability), the quality objective (``study.metric_names`` entry ``"quality"``,
otherwise the first objective), because the paper's claims are mostly about sample quality
and a single score is needed for an effect; stability remains visible in ``ganarch trials``.
Whether a higher score is better follows the study's direction for that objective.

Importance: ``ganarch.search.results.param_importances`` (Optuna's ``get_param_importances``)
with an explicitly named evaluator (``PedAnovaImportanceEvaluator`` by default, Optuna 5.0's
default too); a claim's importance is
the sum of the normalised importances of the Optuna parameters it maps to (the template
choice, or its per-branch names ``choice|branch``). Parameters the study did not search, or a
study with too few complete trials, give no importance (shown as "-") with a note.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ganarch.analysis import designed
from ganarch.analysis.claims import CLAIMS, PAPER_TEMPLATE, Claim, declared_claims
from ganarch.analysis.stats import (
    N_MIN,
    UNSTABLE_RATE,
    Effect,
    flip_rate,
    search_diff,
    verdict,
)
from ganarch.errors import SpecError
from ganarch.search import results
from ganarch.search.design import DESIGN_ATTR
from ganarch.search.results import IMPORTANCE_EVALUATORS, Study, Trial
from ganarch.templates import TemplateInfo, get_template

__all__ = [
    "EVALUATORS",
    "EVIDENCE_ABLATION",
    "EVIDENCE_SEARCH",
    "MIN_IMPORTANCE_TRIALS",
    "RuleRow",
    "RulesTable",
    "ScoredTrial",
    "flip_rate_note",
    "floor_check",
    "make_evaluator",
    "rules_table",
    "scored_trials",
    "study_score",
    "study_template",
    "table_from_scores",
]

EVIDENCE_SEARCH = "search (sampler-biased)"
EVIDENCE_ABLATION = "ablation (controlled, paired seeds)"
EVIDENCE_DESIGN = "designed study (controlled)"
#: The template whose choices the claims read (``ganarch.analysis.claims``). On a study of
#: another template only the claims it declares apply (judged by its declared toggles), and
#: the table says so instead of judging look-alikes.
CLAIMS_TEMPLATE = PAPER_TEMPLATE
#: Fewer complete trials than this: no importance (PED-ANOVA looks at the top 10%).
MIN_IMPORTANCE_TRIALS = 10
BRANCH_SEP = "|"  # the search layer's per-branch parameter names: "choice|branch"
#: The scores bounded below by 0 (both in [0, 1], higher is better), and the value under which
#: a run counts as at that floor: its generator still makes noise, so the run says nothing
#: about how much a setting helps, only that it did not leave the floor.
FLOOR_SCORES = ("objective", "quality")
FLOOR = 0.01

#: Importance evaluators by CLI name: (factory, the name printed in every output).
EVALUATORS = IMPORTANCE_EVALUATORS


def make_evaluator(name: str) -> tuple[Any, str]:
    """``(evaluator, description)`` for ``"ped-anova"``, ``"fanova"`` or ``"mdi"``."""
    key = name.strip().lower().replace("_", "-")
    if key not in EVALUATORS:
        from ganarch.errors import GanarchError

        raise GanarchError(
            f"unknown importance evaluator {name!r}; choose one of {', '.join(EVALUATORS)}"
        )
    factory, description = EVALUATORS[key]
    return factory(), description


@dataclass(frozen=True)
class ScoredTrial:
    """One trial (or one training run) reduced to what the table needs."""

    number: int
    choices: Mapping[str, Any]
    score: float
    failed: bool = False


@dataclass(frozen=True)
class RuleRow:
    claim: Claim
    effect: Effect
    verdict: str
    importance: float | None = None
    param_importances: Mapping[str, float] = field(default_factory=dict)
    importance_note: str | None = None
    #: A designed study's re-seeding check, ``(flips, refits)`` (see ``analysis.designed``).
    flips: tuple[int, int] | None = None
    #: A designed study's aliases of this claim's column (interactions it also estimates).
    aliases: str | None = None
    #: A designed study with runs missing: the verdict may change when they finish.
    provisional: bool = False
    #: The flip rate, a model-based prediction (a function of t and df): the chance a re-run
    #: gives another verdict if the true effect were the estimate (``stats.flip_rate``);
    #: None: no verdict, or an interval without width.
    flip_rate: float | None = None
    #: A designed study whose runs present cannot estimate this claim: what it is aliased with.
    confounded_with: str | None = None

    @property
    def stable(self) -> bool | None:
        """For a *confirmed* or *contradicted* verdict: False when a refit with one seed left
        out (the measured re-seeding check) gave another verdict, or the model-based flip rate
        is ``UNSTABLE_RATE`` (20%) or more; one rule for every table. None: not measured, or a verdict that claims no
        effect (inconclusive: its flip rate is shown, but it gets no mark; for it the rate
        only says how close its t is to the interval's edge)."""
        if self.verdict not in ("confirmed", "contradicted"):
            return None
        if not self.flips and self.flip_rate is None:
            return None
        seed_flip = bool(self.flips) and self.flips[0] > 0
        return not (seed_flip or (self.flip_rate or 0.0) >= UNSTABLE_RATE)

    @property
    def shown_flips(self) -> str:
        """The flips cell of every table: the flip rate ("12%"), then the leave-one-seed-out
        count where it was measured ("12% 1/2": a designed study with 2+ seeds, an ablation
        with 4+); "-" for neither."""
        count = f"{self.flips[0]}/{self.flips[1]}" if self.flips else ""
        if self.flip_rate is not None:
            return f"{self.flip_rate:.0%} {count}".strip()
        return count or "-"

    @property
    def shown_verdict(self) -> str:
        """The verdict as tables and the report show it: a confirmed or contradicted verdict
        that is not :attr:`stable` is marked "(unstable)" -- kept, not downgraded, so the
        direction stays visible, but not a verdict to publish."""
        if self.confounded_with is not None:
            return "aliased"
        if self.verdict == "not enough trials":
            return self.verdict
        marks = ["unstable"] if self.stable is False else []
        marks += ["provisional"] if self.provisional else []
        return f"{self.verdict} ({', '.join(marks)})" if marks else self.verdict

    def to_dict(self) -> dict[str, Any]:
        e = self.effect
        return {
            "claim": self.claim.id,
            "name": self.claim.name,
            "paper": self.claim.paper,
            "paper_side": self.claim.paper_side,
            "alternative_side": self.claim.alternative_side,
            "n_paper": e.n_paper,
            "n_alt": e.n_alt,
            "mean_paper": e.mean_paper,
            "mean_alt": e.mean_alt,
            "effect": e.effect,
            "ci_low": e.ci_low,
            "ci_high": e.ci_high,
            "paired": e.paired,
            "interval": e.method,
            "df": e.df,
            "importance": self.importance,
            "param_importances": dict(self.param_importances),
            "importance_note": self.importance_note,
            "verdict": self.verdict,
            "flips": list(self.flips) if self.flips else None,
            "flip_rate": self.flip_rate,
            "confounded_with": self.confounded_with,
            "stable": self.stable,
            "provisional": self.provisional,
            "shown_verdict": self.shown_verdict,
            "aliases": self.aliases,
        }


@dataclass(frozen=True)
class RulesTable:
    """The table of ``ganarch rules`` and ``ganarch ablate``; ``to_dict()`` is its JSON."""

    rows: tuple[RuleRow, ...]
    evidence: str
    score: str  # what the effect is measured in, e.g. "objective" or "quality"
    higher_is_better: bool
    evaluator: str | None  # the importance evaluator, named; None for an ablation
    source: str  # the study name, or the ablation's directory
    n_trials: int  # trials (or runs) counted
    notes: tuple[str, ...] = ()
    n_min: int = N_MIN
    #: Every searched parameter's normalised importance (claims' parameters and the rest).
    importances: Mapping[str, float] = field(default_factory=dict)
    #: A designed study's design (``Design.to_dict()``); ``None`` for a search or an ablation.
    design: Mapping[str, Any] | None = None
    #: How many runs sit at the score's floor (``floor_check``); ``None`` where the score has
    #: no floor of 0 (a plugin metric, lower is better).
    at_floor: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "evidence": self.evidence,
            "score": self.score,
            "higher_is_better": self.higher_is_better,
            "importance_evaluator": self.evaluator,
            "n_trials": self.n_trials,
            "n_min": self.n_min,
            "notes": list(self.notes),
            "rules": [row.to_dict() for row in self.rows],
            "param_importances": dict(self.importances),
            "design": dict(self.design) if self.design else None,
            "at_floor": dict(self.at_floor) if self.at_floor else None,
        }


# -- reading a study ---------------------------------------------------------------------------


def study_score(study: Study) -> tuple[str, int, bool]:
    """``(score name, objective index, higher is better)`` for a study (see module docs)."""
    directions = results.directions(study)
    if len(directions) == 1:
        names = results.metric_names(study)
        name = names[0] if names and names[0] else "objective"
        return name, 0, directions[0] == "maximize"
    names = results.metric_names(study) or []
    index = names.index("quality") if "quality" in names else 0
    name = "quality" if "quality" in names else f"objective {index}"
    return name, index, directions[index] == "maximize"


def _choices_of(trial: Trial) -> dict[str, Any]:
    choices = trial.user_attrs.get("choices")
    if isinstance(choices, Mapping):
        return dict(choices)
    # No recorded choices: rebuild them from the parameters ("choice|branch" -> "choice").
    out: dict[str, Any] = {}
    for name, value in trial.params.items():
        key = name.split(BRANCH_SEP, 1)[0]
        if key == "lr":
            out["lr_g"] = out["lr_d"] = value
        else:
            out[key] = value
    return out


def scored_trials(study: Study) -> tuple[list[ScoredTrial], dict[str, int]]:
    """The ``COMPLETE`` trials with a finite score, and counts of every trial state."""
    _, index, _ = study_score(study)
    counts = {
        "complete": 0,
        "penalised": 0,
        "pruned": 0,
        "fail": 0,
        "running": 0,
        "no score": 0,
        "repeats": 0,
    }
    out: list[ScoredTrial] = []
    for t in results.trials(study):
        state = results.state(t)
        if state == "PRUNED":
            counts["pruned"] += 1
        elif state == "FAIL":
            counts["fail"] += 1
        elif state != "COMPLETE":
            counts["running"] += 1
        else:
            value = t.values[index] if t.values else None
            if value is None or not math.isfinite(value):
                counts["no score"] += 1
                continue
            if t.user_attrs.get("duplicate_of") is not None:
                counts["repeats"] += 1  # a reused result is not new evidence: count it once
                continue
            failed = bool(t.user_attrs.get("failure"))
            counts["complete"] += 1
            counts["penalised"] += failed
            out.append(ScoredTrial(t.number, _choices_of(t), float(value), failed))
    return out, counts


def _claim_params(claim: Claim, searched: Iterable[str]) -> list[str]:
    return [
        p
        for p in searched
        if any(p == key or p.startswith(key + BRANCH_SEP) for key in claim.params)
    ]


def _importances(
    study: Study, n_complete: int, evaluator: str
) -> tuple[dict[str, float] | None, str, str | None]:
    """All parameter importances, the evaluator's description, and a note when none."""
    ev, description = make_evaluator(evaluator)
    if n_complete < MIN_IMPORTANCE_TRIALS:
        return (
            None,
            description,
            f"too few complete trials ({n_complete} < {MIN_IMPORTANCE_TRIALS})",
        )
    _, index, higher = study_score(study)
    try:  # small-sample warnings are silenced: the table notes its own limits
        result = results.param_importances(study, ev, objective=index, higher=higher)
    except (ValueError, ZeroDivisionError, IndexError) as exc:
        return None, description, f"importance failed: {exc}"
    return result, description, None


# -- the table ---------------------------------------------------------------------------------


def floor_check(
    score: str, higher_is_better: bool, values: Mapping[str, float], what: str = "runs"
) -> tuple[dict[str, Any] | None, str | None]:
    """``(at_floor, note)`` for the ``values`` (labelled runs, trials or seeds) of a table:
    how many scored below ``FLOOR`` (``{"count", "of", "threshold"}``), and a note when at
    least half did — every effect then rests on the few runs off the floor, so a verdict says
    which settings left it, not how much each helps. ``(None, None)`` for a score without a
    floor of 0 (a plugin metric, lower is better); the note is ``None`` under half."""
    if score not in FLOOR_SCORES or not higher_is_better:
        return None, None
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    low = [k for k, v in finite.items() if v < FLOOR]
    at_floor = {"count": len(low), "of": len(finite), "threshold": FLOOR}
    if not finite or 2 * len(low) < len(finite):
        return at_floor, None
    rest = [k for k in finite if k not in low]
    rests = (
        f"every effect rests on the other {len(rest)} {what} ({_labels(rest)})"
        if rest
        else f"no {what} left it, so no effect measures anything"
    )
    return at_floor, (
        f"floor: {len(low)} of {len(finite)} {what} scored below {FLOOR} ({score}; their "
        f"generators still make noise); {rests}, so these verdicts say which settings left the "
        "floor, not how much each rule helps (--json 'at_floor')"
    )


def _labels(values: Sequence[str], most: int = 12) -> str:
    """The first ``most`` labels, comma-separated, and how many more there are."""
    shown = ", ".join(values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def flip_rate_note(rerun: str, *, welch: bool = False, bootstrap: bool = False) -> str:
    """The note under a table that shows flip rates (``stats.flip_rate``); ``rerun`` says what
    a re-run is for this kind of evidence, ``welch`` and ``bootstrap`` whether a rated row has
    such an interval (a paired or least-squares t is the default)."""
    how = (  # a Welch re-run's df and variance ratio are random too: not exact
        "a re-run's t is noncentral t on the interval's Welch–Satterthwaite df: exact on "
        "that df approximation"
        if welch
        else "exact: a re-run's t is noncentral t on the interval's df"
    )
    return (
        f"flips: a model-based prediction, not a measurement: the chance that {rerun} gives "
        f"another verdict if the true effect were the estimate ({how}"
        + ("; the normal limit for a bootstrap interval" if bootstrap else "")
        + "). It is a function of the claim's t and df alone, so it adds no information "
        "beyond the interval: it says how near the interval's edge the verdict sits; "
        f"{UNSTABLE_RATE:.0%} or more marks a confirmed or contradicted verdict '(unstable)', "
        "an inconclusive one gets no mark"
    )


#: What a re-run is in a search: a search's trials are chosen by its sampler, so no re-run
#: of the search would draw the same sides again.
SEARCH_RERUN = (
    "another sample of as many trials a side, drawn independently (a search's trials are "
    "chosen by its sampler, so this describes the interval, not a controlled re-run of the "
    "search)"
)


def table_from_scores(
    scored: Sequence[ScoredTrial],
    *,
    evidence: str,
    score: str,
    higher_is_better: bool,
    source: str,
    evaluator: str | None = None,
    importances: Mapping[str, float] | None = None,
    importance_note: str | None = None,
    claims: Sequence[Claim] = CLAIMS,
    notes: Sequence[str] = (),
    seed: int = 0,
    searched: Iterable[str] | None = None,
) -> RulesTable:
    """The rules table for independent scored trials (the search case).

    ``searched`` names the Optuna parameters the study varied (default: those with an
    importance); a claim's parameter that was searched but has no importance is one the
    evaluator left out (fANOVA and MDI skip conditional parameters).
    """
    rows = []
    searched = list(searched if searched is not None else (importances or {}))
    for claim in claims:
        paper = [s.score for s in scored if claim.side(s.choices) == "paper"]
        alt = [s.score for s in scored if claim.side(s.choices) == "alternative"]
        effect = search_diff(paper, alt, seed=seed + claim.id)
        call = verdict(effect, higher_is_better=higher_is_better)
        params = _claim_params(claim, searched)
        assessed = [p for p in params if importances is not None and p in importances]
        note = importance_note
        value, per = None, {}
        if importances is None:
            pass
        elif not params:
            note = "not searched"
        elif not assessed:
            note = "conditional parameter: not assessed by this evaluator"
        else:
            per = {p: float(importances[p]) for p in assessed}
            value = sum(per.values())
        rows.append(
            RuleRow(
                claim,
                effect,
                call,
                value,
                per,
                note,
                flip_rate=flip_rate(effect, higher_is_better=higher_is_better),
            )
        )
    notes = list(notes)
    if any(r.flip_rate is not None for r in rows):
        rated = [r.effect.method for r in rows if r.flip_rate is not None]
        notes.append(
            flip_rate_note(
                SEARCH_RERUN,
                welch="welch t" in rated,
                bootstrap=any("bootstrap" in m for m in rated),
            )
        )
    return RulesTable(
        tuple(rows),
        evidence,
        score,
        higher_is_better,
        evaluator,
        source,
        len(scored),
        tuple(notes),
        importances=dict(importances or {}),
    )


def rules_table(
    study: Study,
    *,
    evaluator: str = "ped-anova",
    claims: Sequence[Claim] = CLAIMS,
    seed: int = 0,
) -> RulesTable:
    """The rediscovery table of ``study`` (see the module docstring for what counts).

    Example::

        study = ganarch.load_study("demo", "sqlite:///ganarch.db")
        table = rules_table(study)
        for row in table.rows:
            print(row.claim.name, row.effect.effect, row.verdict)
    """
    template = study_template(study)
    claims = _claims_of(template, claims)  # those the template declares; none if it declares none
    if DESIGN_ATTR in study.user_attrs:
        table = designed_table(study, claims=claims)
        return replace(table, notes=(*_foreign(template), *table.notes))
    scored, counts = scored_trials(study)
    score, _, higher = study_score(study)
    importances, description, note = _importances(study, len(scored), evaluator)
    sampler = study.user_attrs.get("sampler") if hasattr(study, "user_attrs") else None
    evidence = EVIDENCE_SEARCH + (f", sampler {sampler}" if sampler else "")
    counted = f"{counts['complete']} complete trials counted"
    if counts["penalised"]:
        counted += f" ({counts['penalised']} of them failed, with their penalised score)"
    kinds = ("fail", "pruned", "running", "no score", "repeats")
    left = [f"{counts[k]} {k}" for k in kinds if counts[k]]
    if left:
        counted += "; left out: " + ", ".join(left)
    notes = [*_foreign(template), counted]
    notes.append(f"score: {score} ({'higher' if higher else 'lower'} is better)")
    if note:
        notes.append(f"importance: {note}")
    at_floor, floor_note = floor_check(
        score, higher, {f"trial {t.number}": t.score for t in scored}, "trials"
    )
    if floor_note:
        notes.append(floor_note)
    table = table_from_scores(
        scored,
        evidence=evidence,
        score=score,
        higher_is_better=higher,
        source=study.study_name,
        evaluator=description,
        importances=importances,
        importance_note=note,
        claims=claims,
        notes=notes,
        seed=seed,
        searched={p for t in results.trials(study, ("COMPLETE",)) for p in t.distributions},
    )
    return replace(table, at_floor=at_floor)


def study_template(study: Study) -> str:
    """The template a study searched, as its trials' specs record it (``meta.template``); a
    study whose trials recorded none is a ``dcgan`` study (the only template before
    templates were plugins)."""
    for t in results.trials(study):
        meta = (t.user_attrs.get("spec") or {}).get("meta") or {}
        if isinstance(meta, Mapping) and isinstance(meta.get("template"), str):
            return meta["template"]
    return CLAIMS_TEMPLATE


def _template_info(template: str) -> TemplateInfo | None:
    """The registered template, or None when its plugin is not installed here."""
    try:
        return get_template(template)
    except SpecError:
        return None


def _claims_of(template: str, claims: Sequence[Claim]) -> tuple[Claim, ...]:
    """The claims ``template`` declares (``TemplateInfo.claims``) among ``claims``: dcgan's as
    written, another template's judged by its declared toggles (``declared_claims``)."""
    info = _template_info(template)
    if info is None:  # a dcgan study always has its template; another's plugin may be gone
        return tuple(claims) if template == CLAIMS_TEMPLATE else ()
    return declared_claims(info, claims)


def _foreign(template: str) -> list[str]:
    """The note of a study whose template is not dcgan: which claims it declares and how
    they are judged, or that none applies (else no note)."""
    if template == CLAIMS_TEMPLATE:
        return []
    info = _template_info(template)
    if info is not None and info.claims:
        ids = ", ".join(str(c) for c in sorted(info.claims))
        return [
            f"template {template!r} declares the paper's claims {ids}: a trial stands with the "
            "paper when the choices it declares for a claim are at the template's defaults, "
            "with the alternative otherwise"
        ]
    why = "" if info is not None else f" (template {template!r} is not registered here)"
    return [
        f"the paper's claims are about the {CLAIMS_TEMPLATE!r} template; this study searched "
        f"template {template!r}, so none of them applies (no verdicts){why}; parameter "
        "importance is the study's own"
    ]


# -- a designed study ----------------------------------------------------------------------------


def designed_table(study: Study, *, claims: Sequence[Claim] = CLAIMS) -> RulesTable:
    """The rules table of a study run with a design sampler (``--sampler fractional`` etc.):
    least-squares main effects with t-intervals (``ganarch.analysis.designed``), one row per
    claim; a claim the design does not vary has no verdict."""
    design = designed.design_of(study.user_attrs)
    assert design is not None
    score, index, higher = study_score(study)
    trials = results.trials(study)
    runs = designed.design_runs(trials, index, per_seed=score == "objective")
    present = [r.run for r in runs]
    names = [str(f.claim) if f.claim is not None else f.name for f in design.factors]
    model = designed.fit_design(design, present, [r.response for r in runs], names)
    fit, inter = model.main, model.interactions
    flips = designed.reseed_flips(design, runs, names, higher_is_better=higher)
    rates = designed.rerun_flip_rates(
        design, present, [r.response for r in runs], names, higher_is_better=higher
    )
    column = {f.claim: j for j, f in enumerate(design.factors) if f.claim is not None}
    incomplete = len(runs) < design.runs
    # With runs missing, what is estimable and aliased comes from the rows present.
    present_aliases = designed.present_aliasing(design, present, names) if incomplete else None
    rows = []
    notes: list[str] = []
    for claim in claims:
        j = column.get(claim.id)
        if j is None:
            empty = Effect(0, 0, None, None, None, None, None, method="least squares t")
            rows.append(
                RuleRow(claim, empty, "not enough trials", importance_note="not in the design")
            )
            continue
        effect = fit.effects[j]
        here = present_aliases[j] if present_aliases else None
        rows.append(
            RuleRow(
                claim,
                effect,
                designed.design_verdict(effect, higher_is_better=higher),
                flips=flips[j] if flips else None,
                aliases=here.text if here else designed.alias_text(design, j, names),
                provisional=incomplete,
                flip_rate=rates[j],
                confounded_with=here.text if here and not here.estimable else None,
            )
        )
        moot = [r for r in runs if claim.side(r.choices) is None]
        if moot:
            notes.append(
                f"claim {claim.id}: in {len(moot)} of {len(runs)} runs its toggle changes "
                "nothing (no norm anywhere for claim 4), so its effect averages over those runs"
            )
    record = study.user_attrs.get("ganarch") or {}
    k = {len(r.seeds) for r in runs if r.seeds}
    seeds = f"{next(iter(k))} paired seeds" if len(k) == 1 else f"{record.get('seeds', 1)} seed(s)"
    size = record.get("image_size")
    evidence = (
        f"designed study (controlled): {design.label()}"
        f" ({len(runs)} finished) × {seeds}"
        + (f"; {record.get('data')} {size}×{size}, width {record.get('width')}" if size else "")
        + (f", {record.get('steps')} steps" if record.get("steps") else "")
    )
    notes.insert(
        0,
        "effects: least-squares main effects on the design's levels"
        + (" (fitted with the two-factor interaction chains)" if inter else "")
        + f", 95% t-intervals with {fit.df} residual df; score: {score} ({'higher' if higher else 'lower'} is better)"
        + (", each run's mean over its seeds" if k or flips else ""),
    )
    at_floor, floor_note = floor_check(
        score, higher, {f"run {r.run} (trial {r.trial})": r.response for r in runs}
    )
    if floor_note:
        notes.insert(1, floor_note)
    if design.generators:
        free = (design.resolution or 0) >= 4
        notes.append(
            f"aliasing: generators {', '.join(design.generators)} (resolution "
            f"{design.resolution}): "
            + (
                "with runs missing the design's aliasing no longer holds (recomputed from the "
                "runs present below)"
                if incomplete
                else "main effects "
                + ("are free of" if free else "share columns with")
                + " two-factor interactions"
            )
            + "; the 'aliases' of each claim in --json"
        )
        chains = designed.chain_text(design, names)
        if chains:
            notes.append(
                ("in the planned design, " if incomplete else "")
                + "two-factor interactions that share a column: "
                + "; ".join(chains)
            )
    if inter:
        top = "; ".join(
            f"{' = '.join(i.chain)}: {i.effect.effect:+.3f} "
            f"[{i.effect.ci_low:+.3f}, {i.effect.ci_high:+.3f}]"
            for i in inter[:3]
        )
        notes.append(
            "largest two-factor interactions (mean where both factors are on the same side − "
            f"mean where they differ; unadjusted 95% t, {int(inter[0].effect.df or 0)} df, "
            f"selected by size from {len(inter)}, so not 95% for these; Bonferroni "
            f"intervals in --json): {top}"
        )
    if incomplete:
        missing = sorted(set(range(design.runs)) - set(present))
        notes.append(
            f"incomplete design: {len(runs)} of {design.runs} runs finished (missing: runs "
            f"{_labels([str(m) for m in missing])}); every verdict is provisional until they finish (run the "
            "same search command to resume), and the effect is the fitted one, no longer "
            "mean(paper) − mean(alternative)"
        )
    held: dict[int, list[int]] = {}  # run -> trained COMPLETE trials (repeats left out)
    running: list[str] = []
    for t in trials:
        run = t.user_attrs.get(designed.RUN_ATTR)
        if run is None:
            continue
        if results.state(t) == "RUNNING":
            running.append(f"run {run} (trial {t.number})")
        elif results.state(t) == "COMPLETE" and not t.user_attrs.get("duplicate_of"):
            held.setdefault(int(run), []).append(t.number)
    twice = [
        f"run {r} (trials {', '.join(map(str, n))}; trial {n[0]} used)"
        for r, n in sorted(held.items())
        if len(n) > 1
    ]
    if twice:
        notes.append("runs trained more than once, the first result used: " + "; ".join(twice))
    if running:
        notes.append(
            "runs still held by running trials (a trial of another machine is never judged "
            "stale; fail it there, or wait): " + "; ".join(running)
        )
    by_number = {t.number: t for t in trials}
    failed = [
        f"run {r.run} (trial {r.trial}: {by_number[r.trial].user_attrs.get('failure')})"
        for r in runs
        if r.failed and r.trial in by_number
    ]
    if failed:
        notes.append(
            "runs scored 0 after a failure, in the fit as measured (a failure of the machine, "
            "e.g. out of memory, is not the architecture's: rerun those runs before publishing): "
            + "; ".join(failed)
        )
    if present_aliases:
        lost = [f"claim {r.claim.id} with {r.confounded_with}" for r in rows if r.confounded_with]
        leaks = [a.leaks for a in present_aliases if a.estimable and a.leaks]
        leaky = (
            f"{len(leaks)} (each carries part of up to {max(map(len, leaks))} two-factor "
            f"interactions, alias coefficients up to "
            f"{max(abs(v) for lk in leaks for _, v in lk):.2f}; each claim's in --json "
            "'aliases')"
            if leaks
            else ""
        )
        notes.append(
            f"aliasing recomputed from the {len(runs)} runs present, not the planned matrix: "
            + (
                "not estimable (its column coincides with another's in these runs, so no "
                "verdict, shown 'aliased'): " + "; ".join(lost)
                if lost
                else "every main effect is estimable"
            )
            + (
                "; estimable main effects biased by interactions: " + leaky
                if leaky
                else "; no main effect carries a two-factor interaction"
            )
        )
    elif not fit.estimable:
        notes.append(
            "the finished runs do not separate every main effect: claims that cannot be told "
            "apart get no verdict"
        )
    if any(r is not None for r in rates):
        notes.append(
            flip_rate_note(
                "a re-run of the design (the same runs; fitted responses plus fresh noise with "
                "the residual variance)"
            )
        )
    if flips:
        notes.append(
            "seed flips (after the rate in 'flips', e.g. '0% 1/2'; --json 'flips'): the "
            "measured re-seeding check, refits leaving one seed out whose verdict differs "
            "from the full fit's; a confirmed or contradicted verdict that flips is shown "
            "'(unstable)': not one to publish"
            + (
                " (with 2 seeds each refit has one seed, half the data: a flip measures lost "
                "power as much as seed noise)"
                if k == {2}
                else ""
            )
        )
    else:
        notes.append(
            "seed flips: not measured (needs verdicts and every run with the same 2 or more seeds)"
        )
    return RulesTable(
        tuple(rows),
        evidence,
        score,
        higher,
        None,
        study.study_name,
        len(runs),
        tuple(notes),
        design={
            **design.to_dict(),
            "interactions": [
                {"chain": list(i.chain), **_effect_dict(i.effect, len(inter))} for i in inter or []
            ],
        },
        at_floor=at_floor,
    )


def _effect_dict(e: Effect, family: int = 1) -> dict[str, Any]:
    """An interaction's effect, its unadjusted 95% t-interval and the Bonferroni one over the
    ``family`` of interactions it was listed with (simultaneous 95%)."""
    out = {"effect": e.effect, "ci_low": e.ci_low, "ci_high": e.ci_high, "df": e.df}
    if e.effect is not None and e.ci_low is not None and e.df:
        from scipy.stats import t

        wide = t.ppf(1 - 0.025 / family, e.df) / t.ppf(0.975, e.df)
        half = (e.ci_high - e.ci_low) / 2 * wide
        mid = (e.ci_high + e.ci_low) / 2
        out.update(ci_low_bonferroni=mid - half, ci_high_bonferroni=mid + half)
    return out
