"""Effect sizes, confidence intervals that stay honest at small n, and the verdict rule.

The verdict rule (the README states it in these words):

    For each claim, the trials (or, in an ablation, the seeds; in a designed study, the
    design's runs) are split into the paper's side and the alternative side. The effect is
    mean(score on the paper's side) − mean(score on the alternative side), with a 95%
    confidence interval: in an ablation a t-interval on the per-seed paired differences; in a
    designed study a t-interval on the least-squares main effect (residual degrees of
    freedom); in a search a Welch t-interval while either side has fewer than 30 trials and a
    percentile bootstrap (2,000 resamples, each side resampled on its own, fixed seed) once
    both sides have 30 or more. If either side has fewer than 3 trials (3 paired seeds in an
    ablation) there is no verdict: "not enough trials". Otherwise the claim is "confirmed"
    when the whole interval lies on the side that favours the paper (above zero when a higher
    score is better), "contradicted" when the whole interval lies on the other side, and
    "inconclusive" when the interval contains zero, or when it has no width (the scores
    showed no variance, so the interval measures nothing).

Why t and not a bootstrap at small n: a percentile bootstrap over n values uses the plug-in
variance (biased low by (n − 1)/n), a normal rather than a t quantile, and cannot reach
beyond the range of the values: over 3 paired differences its "95%" interval is far too
narrow. From 30 values a side the t quantile is within 5% of the normal one, and the
bootstrap no longer assumes normal scores (scores in [0, 1] are skewed near the ends).

How firm a verdict is: :func:`flip_rate` gives, for any interval, the chance that a re-run
with the same design and n would give another verdict if the true effect were the estimate
(exact for a paired or least-squares t-interval, exact on the Welch–Satterthwaite df
approximation for a Welch one, the normal limit for a bootstrap one). Every table shows it, and a
confirmed or contradicted verdict with a rate of ``UNSTABLE_RATE`` (20%) or more, or one that
changes when a seed is left out (where that is measured), is marked "(unstable)".

A search's trials are chosen by its sampler (TPE visits what scored well before), so its
effects are associations, not controlled comparisons; ``ganarch ablate`` and a designed study
(``--sampler fractional``, ``fractional32`` or ``factorial``) are controlled tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "CONFIDENCE",
    "N_BOOTSTRAP",
    "N_MIN",
    "N_RESAMPLES",
    "SEED",
    "UNSTABLE_RATE",
    "VERDICTS",
    "VERDICT_RULE",
    "Effect",
    "bootstrap_diff",
    "bootstrap_paired",
    "flip_rate",
    "search_diff",
    "t_paired",
    "t_quantile",
    "verdict",
    "welch_diff",
]

#: The verdict rule as one paragraph (the module docstring's indented text, so the two agree).
VERDICT_RULE = " ".join(
    line.strip() for line in (__doc__ or "").splitlines() if line.startswith("    ")
)

#: An interval narrower than this, relative to the scores' size, has no variance behind it.
NO_VARIANCE = 1e-9

#: The fewest trials (or paired seeds) on each side for a verdict.
N_MIN = 3
N_RESAMPLES = 2000
#: From this many trials on *each* side a search's CI is a percentile bootstrap; below it a
#: Welch t-interval (see the module docstring for why).
N_BOOTSTRAP = 30
CONFIDENCE = 0.95
SEED = 0
#: A flip rate (:func:`flip_rate`) from this share up marks a confirmed or contradicted
#: verdict "(unstable)" in every table (a designed study, an ablation, a search).
UNSTABLE_RATE = 0.2

Verdict = Literal["confirmed", "contradicted", "inconclusive", "not enough trials"]
VERDICTS: tuple[str, ...] = ("confirmed", "contradicted", "inconclusive", "not enough trials")


@dataclass(frozen=True)
class Effect:
    """mean(paper) − mean(alternative) with its CI (``None`` where undefined).

    ``method`` names the interval: ``"bootstrap"``, ``"paired bootstrap"``, ``"paired t"``,
    ``"welch t"`` or ``"least squares t"``; ``df`` is the t-interval's degrees of freedom.
    """

    n_paper: int
    n_alt: int
    mean_paper: float | None
    mean_alt: float | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    paired: bool = False
    method: str = "bootstrap"
    df: float | None = None


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
        a.size,
        b.size,
        float(a.mean()),
        float(b.mean()),
        float(d.mean()),
        low,
        high,
        paired=True,
        method="paired bootstrap",
    )


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided t quantile: ``t_quantile(0.95, 2)`` is 4.303 (a normal one would be 1.960)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2.0, df))


def t_paired(
    paper: Sequence[float], alt: Sequence[float], *, confidence: float = CONFIDENCE
) -> Effect:
    """t-interval of the mean per-seed difference ``paper[i] − alt[i]`` (df = pairs − 1).

    The ablation's interval: over 3 seeds it is as wide as 3 differences honestly allow. Pairs
    with a non-finite score are dropped; one pair has an effect but no interval.
    """
    if len(paper) != len(alt):
        raise ValueError(f"paired scores need equal lengths, got {len(paper)} and {len(alt)}")
    a = np.asarray(list(paper), dtype=float)
    b = np.asarray(list(alt), dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if not n:
        return Effect(0, 0, None, None, None, None, None, paired=True, method="paired t")
    d = a - b
    mean = float(d.mean())
    low = high = None
    if n >= 2:
        half = t_quantile(confidence, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        low, high = mean - half, mean + half
    return Effect(
        n,
        n,
        float(a.mean()),
        float(b.mean()),
        mean,
        low,
        high,
        paired=True,
        method="paired t",
        df=float(n - 1) if n >= 2 else None,
    )


def welch_diff(
    paper: Sequence[float], alt: Sequence[float], *, confidence: float = CONFIDENCE
) -> Effect:
    """Welch t-interval of ``mean(paper) − mean(alt)`` (unequal variances, Welch–Satterthwaite
    degrees of freedom). Non-finite scores are dropped; a side of one value gives no interval.
    """
    a, b = _finite(paper), _finite(alt)
    mean_a, mean_b = _mean(a), _mean(b)
    if not (a.size and b.size):
        return Effect(a.size, b.size, mean_a, mean_b, None, None, None, method="welch t")
    effect = mean_a - mean_b
    if a.size < 2 or b.size < 2:
        return Effect(a.size, b.size, mean_a, mean_b, effect, None, None, method="welch t")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:  # identical scores on each side: the difference is exact
        return Effect(a.size, b.size, mean_a, mean_b, effect, effect, effect, method="welch t")
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = t_quantile(confidence, df) * se
    return Effect(
        a.size,
        b.size,
        mean_a,
        mean_b,
        effect,
        effect - half,
        effect + half,
        method="welch t",
        df=df,
    )


def search_diff(
    paper: Sequence[float],
    alt: Sequence[float],
    *,
    seed: int = SEED,
    n_bootstrap: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> Effect:
    """A search's interval: Welch t while either side has fewer than ``n_bootstrap`` finite
    scores, the percentile bootstrap of :func:`bootstrap_diff` from then on."""
    if min(_finite(paper).size, _finite(alt).size) >= n_bootstrap:
        return bootstrap_diff(paper, alt, seed=seed, confidence=confidence)
    return welch_diff(paper, alt, confidence=confidence)


def _no_width(effect: Effect, low: float, high: float) -> bool:
    """Whether the interval [low, high] is narrower than ``NO_VARIANCE`` relative to the
    scores' size: it then measures nothing. One test for :func:`verdict` and :func:`flip_rate`."""
    scale = max(1.0, abs(effect.mean_paper or 0.0), abs(effect.mean_alt or 0.0))
    return high - low <= NO_VARIANCE * scale


def verdict(effect: Effect, *, higher_is_better: bool = True, n_min: int = N_MIN) -> Verdict:
    """The verdict rule of this module's docstring."""
    if effect.n_paper < n_min or effect.n_alt < n_min:
        return "not enough trials"
    if effect.ci_low is None or effect.ci_high is None:
        return "inconclusive"
    if not (math.isfinite(effect.ci_low) and math.isfinite(effect.ci_high)):
        return "inconclusive"
    low, high = effect.ci_low, effect.ci_high
    if _no_width(effect, low, high):  # rounding noise or identical scores: no evidence
        return "inconclusive"
    if not higher_is_better:  # a lower score is better: the paper is favoured below zero
        low, high = -high, -low
    if low > 0:
        return "confirmed"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def flip_rate(
    effect: Effect,
    *,
    higher_is_better: bool = True,
    confidence: float = CONFIDENCE,
    n_min: int = N_MIN,
) -> float | None:
    """The chance that an independent re-run with the same design and n gives another verdict
    *if the true effect were the estimate* (a model-based prediction, not a measurement).

    For a t-interval (paired t, least squares t, Welch t) the re-run's t statistic is
    noncentral t with the interval's ``df`` and noncentrality the observed t (effect over its
    standard error, the half-width over the t quantile): the re-run's mean is normal around
    the estimate and its variance estimate scaled χ²_df/df, so its t is (t + Z)/√(χ²_df/df).
    P(T' > q) is the chance of an interval above zero, P(T' < −q) of one below it (q the t
    quantile), and the rate is the chance of any other outcome than the observed one. This
    is exact for paired and least-squares t. For Welch t it is exact only on the
    Welch–Satterthwaite df approximation (a re-run's df and variance ratio are random too;
    a Monte Carlo at 3 vs 20 values a side agreed within 0.6 points). A bootstrap interval
    has no df: there the normal limit is used, with a re-run's interval the observed one
    shifted by a normal error of standard error se = half-width / z (z the normal quantile),
    so P(above) = Φ(low / se) and P(below) = Φ(−high / se). For a symmetric interval that
    is Φ(t − z) and Φ(−t − z); a lopsided percentile interval (skewed scores) keeps its
    shape, so a confirmed or contradicted verdict's rate stays under 50%. The normal limit needs 30
    or more values on each side (``N_BOOTSTRAP``, as ``search_diff`` uses); a bootstrap
    over fewer gets no rate.

    ``confidence`` must be the level the interval was built with (every table uses the
    default, 95%): the Effect does not record it, and another level gives another quantile
    and so a wrong rate, silently.

    The rate is a function of the observed t and df alone ("observed power"): it adds no
    information beyond the interval, it says how near the interval's edge the verdict sits
    (a strong effect: near 0; an estimate at the edge: about half, 38% at df 2; an estimate
    of 0: about 1 − confidence). It does not depend on ``higher_is_better``, which only names the sides.
    ``None`` (no rate) for "not enough trials", an interval without width, a t-interval
    without ``df``, or a bootstrap interval with fewer than 30 values on a side.

    Example::

        e = t_paired([0.8, 0.9, 0.75], [0.6, 0.65, 0.62])  # +0.19 [0.04, 0.34]: confirmed
        flip_rate(e)  # 0.21: a re-run of 3 seeds loses that verdict about 1 time in 5
    """
    from scipy.stats import nct, norm

    call = verdict(effect, higher_is_better=higher_is_better, n_min=n_min)
    low, high, d = effect.ci_low, effect.ci_high, effect.effect
    if call == "not enough trials" or low is None or high is None or d is None:
        return None
    if not all(math.isfinite(v) for v in (low, high, d)):
        return None
    if _no_width(effect, low, high):
        return None
    half = (high - low) / 2.0
    if effect.df is not None and effect.df > 0:
        q = t_quantile(confidence, effect.df)
        t = d / (half / q)
        above = float(nct.sf(q, effect.df, t))
        below = float(nct.cdf(-q, effect.df, t))
    elif "bootstrap" in effect.method and min(effect.n_paper, effect.n_alt) >= N_BOOTSTRAP:
        # The normal limit, the observed interval shifted (see above): a percentile interval
        # over skewed scores is lopsided, and re-centring it on the estimate could put a
        # confirmed verdict's own side under 50%.
        se = half / float(norm.ppf(0.5 + confidence / 2.0))
        above, below = float(norm.cdf(low / se)), float(norm.cdf(-high / se))
    else:  # a t-interval without df, or a bootstrap over too few values for the normal limit
        return None
    if low > 0:  # the observed interval lies above zero
        same = above
    elif high < 0:
        same = below
    else:
        same = 1.0 - above - below
    return min(1.0, max(0.0, 1.0 - same))
