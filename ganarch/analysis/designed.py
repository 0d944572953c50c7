"""The statistics of a designed study: main effects by least squares, their t-intervals,
what each is aliased with, whether a verdict survives leaving a seed out, and its flip rate.

The model is the main-effects model on the design's coded levels (``+1`` the paper's side):
``y = b0 + sum_j b_j x_j + e``, fitted by least squares to one response per run. The effect
of factor ``j`` is ``2 b_j`` = mean(y at +1) − mean(y at −1) (exactly, in a complete
orthogonal design), and its 95% interval is ``2 b_j ± t(0.975, df) · se``, with ``df`` = runs
− factors − 1 residual degrees of freedom. The residual holds everything the model leaves
out (seed noise and the interactions), so the interval is honest at small n and, where
interactions are real, conservative. In a resolution IV design no main effect shares its
column with a two-factor interaction; the two-factor interactions share columns in alias
chains, which the table names.

A run's response is the mean of its seeds' objectives (``seed_objectives``; every run of a
study uses the same seeds, so they pair), else the trial's value. With K ≥ 2 seeds the fit is
repeated K times, each time without one seed, and a claim's ``flips`` counts the refits whose
verdict differs from the full fit's: a verdict that flips when one seed is left out is not one
to publish.

That leave-one-seed-out count is the measured re-seeding check. The flip rate
(:func:`rerun_flip_rates`, any number of seeds) is a model-based prediction, not a
measurement: the chance that a re-run gives another verdict if the true effects were the
fitted ones, :func:`ganarch.analysis.stats.flip_rate` of each main effect. A re-run (each
run's fitted response plus fresh normal noise with the residual variance, refitted with the
same model) has a t distributed as (t + Z)/√(χ²_df/df), noncentral t, so the rate is exact
and a function of the claim's observed t and df alone ("observed power"): it carries no
information beyond the interval; it says how near the interval's edge the verdict sits (a
strong effect: near 0; an estimate at the edge: about half; an estimate of 0: about 5%). A
rate of ``UNSTABLE_RATE`` or more, or any seed flip, marks a *confirmed* or *contradicted*
verdict "(unstable)"; an inconclusive verdict shows its rate but gets no mark.

A design with runs missing (a study stopped early, or runs that failed) is analysed as the
runs present: which main effects are estimable and what each is aliased with are recomputed
from their rows (:func:`present_aliasing`), not read from the planned matrix.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ganarch.analysis.stats import (
    CONFIDENCE,
    N_MIN,
    UNSTABLE_RATE,
    Effect,
    flip_rate,
    t_quantile,
    verdict,
)
from ganarch.search.design import DESIGN_ATTR, RUN_ATTR, Design, Factor

__all__ = [
    "MIN_INTERACTION_DF",
    "UNSTABLE_RATE",
    "Aliasing",
    "DesignFit",
    "DesignRun",
    "Fit",
    "Interaction",
    "design_of",
    "design_runs",
    "fit_design",
    "fit_main_effects",
    "present_aliasing",
    "rerun_flip_rates",
    "reseed_flips",
]


@dataclass(frozen=True)
class DesignRun:
    """One run of the design with its finished trial's response."""

    run: int
    trial: int
    choices: Mapping[str, Any]
    response: float
    seeds: tuple[float, ...] | None  # each seed's response, in seed order, when all are known
    failed: bool = False


@dataclass(frozen=True)
class Fit:
    """Main effects (``effects[j]`` for factor ``j``) and the residual degrees of freedom."""

    effects: tuple[Effect, ...]
    df: int
    estimable: bool  # False: the runs present do not separate every main effect
    #: Per column: whether the runs present estimate it (apart from every other column).
    columns: tuple[bool, ...] = ()
    #: The model's fitted response per run and the residual standard deviation (a re-run
    #: of the study draws around them); ``None`` when nothing was estimable.
    fitted: np.ndarray | None = field(default=None, compare=False, repr=False)
    sigma: float | None = field(default=None, compare=False, repr=False)


def design_of(user_attrs: Mapping[str, Any]) -> Design | None:
    """The design a study recorded (its ``design`` user attribute), or ``None``."""
    d = user_attrs.get(DESIGN_ATTR)
    if not isinstance(d, Mapping):
        return None
    factors = tuple(
        Factor(f["name"], f.get("claim"), dict(f["high"]), dict(f["low"])) for f in d["factors"]
    )
    matrix = np.asarray(d["matrix"], dtype=int).reshape(-1, len(factors))
    return Design(str(d["name"]), factors, matrix, tuple(d.get("generators") or ()))


def design_runs(trials: Sequence[Any], index: int = 0, per_seed: bool = True) -> list[DesignRun]:
    """The design's runs from a study's finished trials (``optuna`` ``FrozenTrial``\\ s).

    Only ``COMPLETE`` trials with a finite value count, one per run (the first; a repeat that
    reused an earlier result is left out). ``index`` picks the objective; ``per_seed`` reads
    the trials' ``seed_objectives`` (single-objective studies, where they are the value).
    """
    from ganarch.search.results import state

    out: dict[int, DesignRun] = {}
    for t in trials:
        run = t.user_attrs.get(RUN_ATTR)
        if state(t) != "COMPLETE" or run is None or int(run) in out:
            continue
        if t.user_attrs.get("duplicate_of") is not None or not t.values:
            continue
        value = t.values[index]
        if value is None or not math.isfinite(value):
            continue
        seeds = t.user_attrs.get("seed_objectives") if per_seed else None
        clean = None
        if isinstance(seeds, list) and seeds and all(_finite(s) for s in seeds):
            clean = tuple(float(s) for s in seeds)
        response = float(np.mean(clean)) if clean else float(value)
        out[int(run)] = DesignRun(
            int(run),
            t.number,
            dict(t.user_attrs.get("choices") or t.params),
            response,
            clean,
            bool(t.user_attrs.get("failure")),
        )
    return [out[r] for r in sorted(out)]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def fit_main_effects(
    levels: np.ndarray, y: Sequence[float], *, confidence: float = CONFIDENCE
) -> Fit:
    """Least-squares main effects of ``levels`` (runs × factors, ±1) on ``y``, with t-intervals.

    Example::

        X = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
        fit = fit_main_effects(X, [3.0, 2.0, 1.1, 0.1])   # effects ≈ 1.9 and 0.95, df = 1
    """
    X = np.asarray(levels, dtype=float)
    yv = np.asarray(list(y), dtype=float)
    n, k = X.shape
    A = np.column_stack([np.ones(n), X])
    p = k + 1
    rank = int(np.linalg.matrix_rank(A)) if n else 0
    df = n - rank
    pinv = np.linalg.pinv(A) if n else np.zeros((p, 0))
    # A column is estimable when its coefficient is a function of the data alone: its unit
    # vector lies in A's row space (pinv(A) A leaves it unchanged).
    proj = pinv @ A if n else np.zeros((p, p))
    columns = tuple(
        bool(n) and bool(np.allclose(proj[:, j + 1], np.eye(p)[:, j + 1], atol=1e-8))
        for j in range(k)
    )
    estimable = rank == p
    effects: list[Effect] = []
    if any(columns):
        coef = pinv @ yv
        resid = yv - A @ coef
        cov = pinv @ pinv.T  # (AᵀA)⁺: the variance of any estimable coefficient, over σ²
        sigma2 = float(resid @ resid) / df if df > 0 else math.nan
        half_t = t_quantile(confidence, df) if df > 0 else math.nan
    for j in range(k):
        hi, lo = yv[X[:, j] > 0], yv[X[:, j] < 0]
        mean_hi = float(hi.mean()) if hi.size else None
        mean_lo = float(lo.mean()) if lo.size else None
        if not columns[j]:
            effects.append(
                Effect(
                    hi.size, lo.size, mean_hi, mean_lo, None, None, None, method="least squares t"
                )
            )
            continue
        effect = 2.0 * float(coef[j + 1])
        low = high = None
        if df > 0:
            half = half_t * 2.0 * math.sqrt(max(sigma2 * float(cov[j + 1, j + 1]), 0.0))
            low, high = effect - half, effect + half
        effects.append(
            Effect(
                hi.size,
                lo.size,
                mean_hi,
                mean_lo,
                effect,
                low,
                high,
                method="least squares t",
                df=float(df) if df > 0 else None,
            )
        )
    fitted = A @ coef if any(columns) else None
    sigma = math.sqrt(sigma2) if any(columns) and df > 0 else None
    return Fit(tuple(effects), max(df, 0), estimable, columns, fitted, sigma)


def design_verdict(effect: Effect, *, higher_is_better: bool = True) -> str:
    """The verdict rule, with no verdict where the fit left no degrees of freedom."""
    if effect.df is None or effect.df < 1:
        return "not enough trials"
    return verdict(effect, higher_is_better=higher_is_better, n_min=N_MIN)


def reseed_flips(
    design: Design,
    runs: Sequence[DesignRun],
    names: Sequence[str],
    *,
    higher_is_better: bool = True,
) -> list[tuple[int, int]] | None:
    """Per factor ``(flips, refits)``: refit (the model of :func:`fit_design`) without each
    seed in turn and count verdicts that differ from the full fit's. ``None`` unless every
    run has the same K ≥ 2 seed responses and the full fit gives verdicts."""
    ks = {len(r.seeds) if r.seeds else 0 for r in runs}
    if len(ks) != 1 or (k := ks.pop()) < 2:
        return None
    present = [r.run for r in runs]
    seeds = np.array([r.seeds for r in runs], dtype=float)  # runs × K
    full = fit_design(design, present, seeds.mean(axis=1), names).main
    if not any(full.columns) or full.df < 1:
        return None  # no verdicts to flip (a column the runs cannot estimate never flips)
    base = [design_verdict(e, higher_is_better=higher_is_better) for e in full.effects]
    flips = [0] * len(base)
    for s in range(k):
        keep = [i for i in range(k) if i != s]
        fit = fit_design(design, present, seeds[:, keep].mean(axis=1), names).main
        for j, e in enumerate(fit.effects):
            flips[j] += design_verdict(e, higher_is_better=higher_is_better) != base[j]
    return [(f, k) for f in flips]


def alias_text(design: Design, j: int, names: Sequence[str]) -> str:
    """What factor ``j``'s column also estimates, in the table's names (``"1×2×5"``)."""
    letters = design.letters
    aliases = design.aliases(letters[j], max_order=3)
    if not aliases:
        return "none up to 3-factor interactions"
    return ", ".join("×".join(names[letters.index(c)] for c in a) for a in aliases)


def chain_text(design: Design, names: Sequence[str]) -> list[str]:
    """Two-factor interaction alias chains with more than one member, in the table's names."""
    letters = design.letters
    out = []
    for chain in design.two_factor_chains():
        if len(chain) > 1:
            out.append(" = ".join("×".join(names[letters.index(c)] for c in ab) for ab in chain))
    return out


#: The fewest residual degrees of freedom left after fitting the interaction chains too.
MIN_INTERACTION_DF = 3


@dataclass(frozen=True)
class Interaction:
    """One two-factor interaction column (an alias chain, e.g. ``3×5 = 6×7``) and its effect:
    mean(y where the two factors agree) − mean(y where they differ), with a t-interval."""

    chain: tuple[str, ...]
    effect: Effect


@dataclass(frozen=True)
class DesignFit:
    """A designed study's fit: the main effects, and the interaction chains when fitted."""

    main: Fit
    interactions: list[Interaction] | None  # largest first; None: not in the model


def fit_design(
    design: Design,
    runs: Sequence[int],
    y: Sequence[float],
    names: Sequence[str],
    *,
    confidence: float = CONFIDENCE,
) -> DesignFit:
    """The model a designed study's table uses: main effects plus one column per two-factor
    alias chain when the runs leave at least ``MIN_INTERACTION_DF`` residual degrees of freedom
    for them (32 runs for seven factors: 6), else main effects alone (16 runs: 8 df).

    The columns are orthogonal in a complete design, so adding the chains leaves every main
    effect's estimate unchanged; it takes real interactions out of the residual, which would
    otherwise widen every interval. Chains are named in ``names`` (``"3×5 = 6×7"``).
    """
    letters = design.letters
    m = design.matrix[list(runs)]
    chains = design.two_factor_chains()
    cols = _chain_columns(design, m)
    k = m.shape[1]
    if cols and len(runs) - 1 - k - len(cols) >= MIN_INTERACTION_DF:
        fit = fit_main_effects(np.column_stack([m, *cols]), y, confidence=confidence)
        if fit.estimable:
            inter = [
                Interaction(tuple("×".join(names[letters.index(c)] for c in ab) for ab in ch), e)
                for ch, e in zip(chains, fit.effects[k:], strict=True)
            ]
            inter.sort(key=lambda i: -abs(i.effect.effect or 0.0))
            main = Fit(fit.effects[:k], fit.df, True, fit.columns[:k], fit.fitted, fit.sigma)
            return DesignFit(main, inter)
    return DesignFit(fit_main_effects(m, y, confidence=confidence), None)


def _chain_columns(design: Design, m: np.ndarray) -> list[np.ndarray]:
    """One column per two-factor alias chain (its first member's product), rows of ``m``."""
    letters = design.letters
    return [
        m[:, letters.index(c[0][0])] * m[:, letters.index(c[0][1])]
        for c in design.two_factor_chains()
    ]


def rerun_flip_rates(
    design: Design,
    runs: Sequence[int],
    y: Sequence[float],
    names: Sequence[str],
    *,
    higher_is_better: bool = True,
) -> list[float | None]:
    """Per factor, the flip rate: a model-based prediction of the chance that a re-run gives
    another verdict *if the true effects were the fitted ones* (``None`` where the fit gives
    that factor no verdict, or its interval no width). Not a measurement of seed noise: the
    leave-one-seed-out refits (:func:`reseed_flips`) are the measured re-seeding check.

    A re-run keeps the runs present and the model of :func:`fit_design`, with responses the
    fitted ones plus independent normal noise with the fit's residual variance. Its t is then
    (t + Z)/√(χ²_df/df), noncentral t, so the rate is :func:`ganarch.analysis.stats.flip_rate`
    of the fitted effect: exact, and a function of the claim's observed t and df alone
    ("observed power"); it adds nothing to the interval but says how near its edge the
    verdict sits. (Earlier releases simulated 400 such re-runs; the tests check that a
    simulation agrees.) Example: a planted effect of 10 residual standard deviations flips in
    none of the re-runs; an estimate just past its interval's edge in about half; an
    estimate of exactly 0 in about 5%.
    """
    model = fit_design(design, runs, list(y), names)
    return [
        flip_rate(e, higher_is_better=higher_is_better)
        if design_verdict(e, higher_is_better=higher_is_better) != "not enough trials"
        else None
        for e in model.main.effects
    ]


@dataclass(frozen=True)
class Aliasing:
    """What the runs present say about one factor's column."""

    estimable: bool
    #: Not estimable: the factors (or "the mean") it cannot be told apart from; estimable:
    #: the two-factor interactions that leak into its estimate, with their coefficients.
    text: str
    #: Estimable: ``(interaction, alias coefficient)`` for each that leaks into the estimate.
    leaks: tuple[tuple[str, float], ...] = ()


def present_aliasing(design: Design, runs: Sequence[int], names: Sequence[str]) -> list[Aliasing]:
    """Per factor, recomputed from the rows of ``runs`` (not the planned matrix): whether its
    main effect is estimable, and what it is aliased with.

    A column the runs present cannot separate is named with the columns it coincides with
    (equal or opposite in every run present), or "the mean" alone for a factor left at one
    level (a study stopped half-way: the design hands out its runs in standard order, so the
    first half holds one factor fixed). An estimable one lists each two-factor interaction
    ``a×b`` whose column is not orthogonal to the model's in these runs, with its alias
    coefficient: the estimate of the main effect carries that multiple of the interaction's
    effect. Interactions with a factor at one level are left out: there ``a×b`` is ``±b``, a
    main effect, not an interaction.
    """
    m = design.matrix[list(runs)].astype(float)
    n, k = m.shape
    fit = fit_main_effects(m, np.zeros(n)) if n else None
    columns = fit.columns if fit is not None else (False,) * k
    constant = [not n or np.ptp(m[:, i]) == 0 for i in range(k)]
    A = np.column_stack([np.ones(n), m])
    pairs = [
        (a, b)
        for a, b in itertools.combinations(range(k), 2)
        if not constant[a] and not constant[b]
    ]
    alias = (
        np.linalg.pinv(A) @ np.column_stack([m[:, a] * m[:, b] for a, b in pairs])
        if n and pairs
        else np.zeros((k + 1, len(pairs)))
    )
    centred = m - m.mean(axis=0) if n else m
    out: list[Aliasing] = []
    for j in range(k):
        if not columns[j]:
            if constant[j]:
                out.append(Aliasing(False, "the mean (one level only)"))
                continue
            with_ = [  # the columns it equals or opposes in every run: |correlation| = 1
                names[i]
                for i in range(k)
                if i != j
                and not constant[i]
                and abs(
                    abs(centred[:, i] @ centred[:, j])
                    - np.linalg.norm(centred[:, i]) * np.linalg.norm(centred[:, j])
                )
                < 1e-9 * n
            ]
            out.append(
                Aliasing(False, ", ".join(with_) if with_ else "a combination of the others")
            )
            continue
        leaks = tuple(
            (f"{names[a]}×{names[b]}", float(alias[j + 1, c]))
            for c, (a, b) in enumerate(pairs)
            if abs(alias[j + 1, c]) > 1e-9
        )
        text = ", ".join(f"{name} ({v:+.2f})" for name, v in leaks)
        out.append(Aliasing(True, text or "no two-factor interaction", leaks))
    return out
