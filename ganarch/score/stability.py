"""Training stability from a run's evaluation history: pure functions of plain numbers.

A history is a list of evaluation records, one per evaluation point, each a mapping with at
least ``step``, ``loss_d``, ``loss_g``, ``d_real`` (mean D(x)), ``d_fake`` (mean D(G(z))) and
``quality`` (higher is better, in [0, 1]); the losses and D outputs are means over the steps
since the previous evaluation. Every component is a *badness* in [0, 1] (0 = no sign of the
problem) and ``stability`` combines them:

    stability = 0                                             if the run diverged
    stability = learned × (1 − (0.4·saturation + 0.2·oscillation + 0.2·gap + 0.2·seed_spread) / W)

where ``W`` is the sum of the weights of the components that could be measured (seed spread
needs two or more seeds, oscillation three or more evaluations). So 1 means perfectly stable.

- learned: ``min(1, best quality / LEARNED_QUALITY)``. A run whose samples never rose above
  noise has nothing to be stable about: its losses can sit still and its quality never move,
  yet it is not a stable GAN. Stability counts fully only once quality reached
  ``LEARNED_QUALITY`` at some evaluation (1 when no quality was recorded).

- divergence: a non-finite loss or D output, or a loss above ``EXPLODING_LOSS``.
- saturation: the share of evaluations at which D had won — D(x) > 0.95 and D(G(z)) < 0.05,
  or D's loss below 0.01 — counting only stretches of at least two evaluations in a row (a
  single evaluation counts when it is the only one, or the last one: a run that ends
  saturated).
- oscillation: over the last third of the evaluations (at least three), the standard
  deviation of quality around its least-squares line (steady progress or steady decline is
  not oscillation), divided by the mean quality (at least 0.1); ``min(1, cv / 0.25)``.
- gap: how far the final quality fell below the best one, relative to the best:
  ``(best − final) / best``.
- seed spread: the standard deviation of the final quality across seeds divided by its mean
  (at least 0.1); ``min(1, cv / 0.25)``.

Several seeds of one spec (``aggregate_seeds``): quality is the mean final quality (a
diverged seed counts 0); learned, saturation, oscillation and gap are averaged over the seeds
that did not diverge; the seed spread is measured on all final qualities; and the combined
stability is multiplied by the share of seeds that did not diverge (all diverged: 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: A mean loss above this is an explosion (BCE of a logit of −100: D is beyond any use).
#: The scorer owns the rule; ``ganarch.train`` hands it to the trainer (through
#: ``RunSettings.exploding_loss``), so a run stops exactly where its history reads diverged.
EXPLODING_LOSS = 100.0

__all__ = [
    "EXPLODING_LOSS",
    "WEIGHTS",
    "aggregate_seeds",
    "combine",
    "divergence",
    "is_saturated",
    "learned",
    "oscillation",
    "quality_gap",
    "saturation",
    "seed_spread",
    "stability",
]

#: D(x) above this and D(G(z)) below ``1 − SATURATED_D`` means D has won.
SATURATED_D = 0.95
#: A D loss below this means D has won, whatever its outputs.
SATURATED_LOSS_D = 0.01
#: The coefficient of variation that counts as fully bad for oscillation and seed spread.
FULL_CV = 0.25
#: The smallest mean quality a coefficient of variation is taken relative to.
MIN_MEAN = 0.1
#: The best quality at which a run counts as having learned something (stability counts fully).
LEARNED_QUALITY = 0.3
#: Weights of the components in ``stability``.
WEIGHTS: dict[str, float] = {
    "saturation": 0.4,
    "oscillation": 0.2,
    "gap": 0.2,
    "seed_spread": 0.2,
}

Record = Mapping[str, Any]


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def divergence(history: Sequence[Record]) -> str | None:
    """``"nan"`` when a loss or D output is NaN/inf, ``"exploding loss"`` when a loss exceeds
    ``EXPLODING_LOSS``, else ``None``."""
    for rec in history:
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            if key in rec and rec[key] is not None and not _finite(rec[key]):
                return "nan"
    for rec in history:
        for key in ("loss_d", "loss_g"):
            if _finite(rec.get(key)) and rec[key] > EXPLODING_LOSS:
                return "exploding loss"
    return None


def is_saturated(rec: Record) -> bool:
    """Whether D had won at this evaluation (see the module docstring)."""
    d_real, d_fake, loss_d = rec.get("d_real"), rec.get("d_fake"), rec.get("loss_d")
    if _finite(d_real) and _finite(d_fake) and d_real > SATURATED_D and d_fake < 1 - SATURATED_D:
        return True
    return _finite(loss_d) and loss_d < SATURATED_LOSS_D


def saturation(history: Sequence[Record]) -> dict[str, float]:
    """``{"saturated_fraction", "saturated_longest", "saturation"}``: the share of evaluations
    with D saturated, the longest such stretch, and the badness (share in sustained stretches)."""
    flags = [is_saturated(r) for r in history]
    n = len(flags)
    if n == 0:
        return {"saturated_fraction": 0.0, "saturated_longest": 0, "saturation": 0.0}
    sustained = 0
    longest = 0
    run = 0
    for i, flag in enumerate([*flags, False]):
        if flag:
            run += 1
            continue
        if run:
            ends_run = i == n  # the stretch reaches the end of training
            if run >= 2 or ends_run or n == 1:
                sustained += run
            longest = max(longest, run)
        run = 0
    return {
        "saturated_fraction": sum(flags) / n,
        "saturated_longest": longest,
        "saturation": sustained / n,
    }


def _qualities(history: Sequence[Record]) -> list[float]:
    return [float(r["quality"]) for r in history if _finite(r.get("quality"))]


def oscillation(history: Sequence[Record]) -> float | None:
    """Badness of quality oscillating late in training, or ``None`` with fewer than three
    evaluations."""
    q = _qualities(history)
    if len(q) < 3:
        return None
    tail = q[-max(3, math.ceil(len(q) / 3)) :]
    n = len(tail)
    xs = range(n)
    mx, my = (n - 1) / 2, sum(tail) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, tail, strict=True)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, tail, strict=True)]
    std = math.sqrt(sum(r * r for r in resid) / n)
    return min(1.0, std / max(my, MIN_MEAN) / FULL_CV)


def quality_gap(history: Sequence[Record]) -> dict[str, float | None]:
    """``{"best_quality", "final_quality", "gap"}``; ``gap`` is ``(best − final) / best``."""
    q = _qualities(history)
    if not q:
        return {"best_quality": None, "final_quality": None, "gap": None}
    best, final = max(q), q[-1]
    gap = (best - final) / best if best > 0 else 0.0
    return {"best_quality": best, "final_quality": final, "gap": min(1.0, max(0.0, gap))}


def learned(history: Sequence[Record]) -> float | None:
    """``min(1, best quality / LEARNED_QUALITY)``, or ``None`` when no quality was recorded."""
    q = _qualities(history)
    if not q:
        return None
    return min(1.0, max(0.0, max(q) / LEARNED_QUALITY))


def seed_spread(final_qualities: Sequence[float]) -> dict[str, float | None]:
    """``{"quality_std", "seed_spread"}`` across seeds; ``None`` with fewer than two seeds."""
    q = [float(x) for x in final_qualities if _finite(x)]
    if len(q) < 2:
        return {"quality_std": None, "seed_spread": None}
    mean = sum(q) / len(q)
    std = math.sqrt(sum((x - mean) ** 2 for x in q) / (len(q) - 1))
    return {"quality_std": std, "seed_spread": min(1.0, std / max(mean, MIN_MEAN) / FULL_CV)}


def combine(components: Mapping[str, float | None], diverged: bool = False) -> float:
    """One stability in [0, 1] from the components (``None`` = not measured): ``learned``
    times one minus the weighted mean badness."""
    if diverged:
        return 0.0
    total = weight = 0.0
    for name, w in WEIGHTS.items():
        value = components.get(name)
        if value is None:
            continue
        total += w * min(1.0, max(0.0, float(value)))
        weight += w
    factor = components.get("learned")
    factor = 1.0 if factor is None else min(1.0, max(0.0, float(factor)))
    return factor * (1.0 - total / weight if weight else 1.0)


def stability(
    history: Sequence[Record],
    *,
    diverged: bool | None = None,
    seed_qualities: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Every component and the combined ``stability`` for one run's history.

    Whether the run diverged is this scorer's rule (:func:`divergence`: a non-finite loss or D
    output, or a loss above ``EXPLODING_LOSS``), applied to the history whatever threshold
    stopped the trainer. ``diverged`` is the trainer's flag: it adds only what the history
    cannot show, samples that became NaN/inf while the losses stayed finite (the stop
    record's ``failure`` is then ``"nan"``). A trainer stopped by its own, stricter
    ``exploding_loss`` at losses this rule does not call exploding has not diverged here, and
    a looser one does not keep a loss above ``EXPLODING_LOSS`` from counting as diverged.
    ``seed_qualities`` are the final qualities of several seeds of the same spec.

    Example::

        s = stability([{"step": 100, "loss_d": 1.2, "loss_g": 0.9, "d_real": 0.6,
                        "d_fake": 0.4, "quality": 0.5}])
        s["stability"]   # 1.0
    """
    failure = divergence(history)
    if failure is None and diverged:
        stop = history[-1].get("failure") if history else None
        if stop != "exploding loss":  # the trainer saw non-finite samples: not in the losses
            failure = stop or "nan"
    diverged = failure is not None
    sat = saturation(history)
    gap = quality_gap(history)
    spread = seed_spread(seed_qualities or [])
    components = {
        "learned": learned(history),
        "saturation": sat["saturation"],
        "oscillation": None if diverged else oscillation(history),
        "gap": gap["gap"],
        "seed_spread": spread["seed_spread"],
    }
    return {
        "stability": combine(components, diverged=bool(diverged)),
        "diverged": bool(diverged),
        "failure": failure if diverged else None,
        **components,
        "saturated_fraction": sat["saturated_fraction"],
        "saturated_longest": sat["saturated_longest"],
        "best_quality": gap["best_quality"],
        "final_quality": gap["final_quality"],
        "quality_std": spread["quality_std"],
        "evaluations": len(history),
    }


def aggregate_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine the ``stability()`` results of several seeds, each with its final ``quality``.

    Returns the mean ``quality``, the combined ``stability``, ``diverged`` (every seed
    diverged), ``diverged_seeds``, the averaged components and ``seed_spread``.
    """
    if not runs:
        raise ValueError("aggregate_seeds needs at least one run")
    ok = [r for r in runs if not r.get("diverged")]
    qualities = [
        0.0 if r.get("diverged") or not _finite(r.get("quality")) else float(r["quality"])
        for r in runs
    ]
    spread = seed_spread(qualities)

    def mean_of(name: str) -> float | None:
        vals = [float(r[name]) for r in ok if _finite(r.get(name))]
        return sum(vals) / len(vals) if vals else None

    components = {
        "learned": mean_of("learned"),
        "saturation": mean_of("saturation"),
        "oscillation": mean_of("oscillation"),
        "gap": mean_of("gap"),
        "seed_spread": spread["seed_spread"],
    }
    diverged = not ok
    value = 0.0 if diverged else combine(components) * len(ok) / len(runs)
    return {
        "quality": sum(qualities) / len(qualities),
        "stability": value,
        "diverged": diverged,
        "diverged_seeds": len(runs) - len(ok),
        "seeds": len(runs),
        **components,
        "quality_std": spread["quality_std"],
        "saturated_fraction": mean_of("saturated_fraction"),
    }
