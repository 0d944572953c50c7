"""Effect sizes, bootstrap confidence intervals and the verdict rule.

The verdict rule (the README states it in these words):

    For each claim, the trials (or, in an ablation, the seeds) are split into the paper's side
    and the alternative side. The effect is mean(score on the paper's side) − mean(score on the
    alternative side), with a 95% percentile-bootstrap confidence interval (2,000 resamples,
    fixed seed; in a search each side is resampled independently, in an ablation the per-seed
    paired differences are resampled). If either side has fewer than 3 trials (3 paired seeds
    in an ablation) there is no verdict: "not enough trials". Otherwise the claim is
    "confirmed" when the whole interval lies on the side that favours the paper (above zero
    when a higher score is better), "contradicted" when the whole interval lies on the other
    side, and "inconclusive" when the interval contains zero.

A search's trials are chosen by its sampler (TPE visits what scored well before), so its
effects are associations, not controlled comparisons; ``ganarch ablate`` is the controlled test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "CONFIDENCE",
    "N_MIN",
    "N_RESAMPLES",
    "SEED",
    "VERDICTS",
    "VERDICT_RULE",
    "Effect",
    "bootstrap_diff",
    "bootstrap_paired",
    "verdict",
]

#: The verdict rule as one paragraph (the module docstring's indented text).
VERDICT_RULE = (
    "For each claim, the trials (or, in an ablation, the seeds) are split into the paper's"
    " side and the alternative side. The effect is mean(score on the paper's side) − "
    "mean(score on the alternative side), with a 95% percentile-bootstrap confidence "
    "interval (2,000 resamples, fixed seed; in a search each side is resampled "
    "independently, in an ablation the per-seed paired differences are resampled). If "
    "either side has fewer than 3 trials (3 paired seeds in an ablation) there is no "
    'verdict: "not enough trials". Otherwise the claim is "confirmed" when the whole '
    "interval lies on the side that favours the paper (above zero when a higher score is "
    'better), "contradicted" when the whole interval lies on the other side, and '
    '"inconclusive" when the interval contains zero.'
)

#: The fewest trials (or paired seeds) on each side for a verdict.
N_MIN = 3
N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0

Verdict = Literal["confirmed", "contradicted", "inconclusive", "not enough trials"]
VERDICTS: tuple[str, ...] = ("confirmed", "contradicted", "inconclusive", "not enough trials")


@dataclass(frozen=True)
class Effect:
    """mean(paper) − mean(alternative) with its bootstrap CI (``None`` where undefined)."""

    n_paper: int
    n_alt: int
    mean_paper: float | None
    mean_alt: float | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    paired: bool = False


def _finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(list(values), dtype=float)
    return a[np.isfinite(a)]


def _mean(a: np.ndarray) -> float | None:
    return float(a.mean()) if a.size else None


def _percentile_ci(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_diff(
    paper: Sequence[float],
    alt: Sequence[float],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Effect:
    """Percentile-bootstrap CI of ``mean(paper) − mean(alt)``, each side resampled on its own.

    Non-finite scores are dropped. The CI is ``None`` when a side is empty.

    Example::

        e = bootstrap_diff([1.0, 1.2, 0.9], [0.5, 0.6, 0.4])
        e.effect, (e.ci_low, e.ci_high)
    """
    a, b = _finite(paper), _finite(alt)
    mean_a, mean_b = _mean(a), _mean(b)
    if not (a.size and b.size):
        return Effect(a.size, b.size, mean_a, mean_b, None, None, None)
    rng = np.random.default_rng(seed)
    boot_a = a[rng.integers(0, a.size, size=(n_resamples, a.size))].mean(axis=1)
    boot_b = b[rng.integers(0, b.size, size=(n_resamples, b.size))].mean(axis=1)
    low, high = _percentile_ci(boot_a - boot_b, confidence)
    return Effect(a.size, b.size, mean_a, mean_b, mean_a - mean_b, low, high)


def bootstrap_paired(
    paper: Sequence[float],
    alt: Sequence[float],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Effect:
    """Percentile-bootstrap CI of the mean per-seed difference ``paper[i] − alt[i]``.

    ``paper`` and ``alt`` are aligned by seed; a pair with a non-finite score on either side
    is dropped. ``n_paper`` and ``n_alt`` are then both the number of usable pairs.
    """
    if len(paper) != len(alt):
        raise ValueError(f"paired scores need equal lengths, got {len(paper)} and {len(alt)}")
    a = np.asarray(list(paper), dtype=float)
    b = np.asarray(list(alt), dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if not a.size:
        return Effect(0, 0, None, None, None, None, None, paired=True)
    d = a - b
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)
    low, high = _percentile_ci(boot, confidence)
    return Effect(
        a.size, b.size, float(a.mean()), float(b.mean()), float(d.mean()), low, high, paired=True
    )


def verdict(effect: Effect, *, higher_is_better: bool = True, n_min: int = N_MIN) -> Verdict:
    """The verdict rule of this module's docstring."""
    if effect.n_paper < n_min or effect.n_alt < n_min:
        return "not enough trials"
    if effect.ci_low is None or effect.ci_high is None:
        return "inconclusive"
    if not (math.isfinite(effect.ci_low) and math.isfinite(effect.ci_high)):
        return "inconclusive"
    low, high = effect.ci_low, effect.ci_high
    if not higher_is_better:  # a lower score is better: the paper is favoured below zero
        low, high = -high, -low
    if low > 0:
        return "confirmed"
    if high < 0:
        return "contradicted"
    return "inconclusive"
