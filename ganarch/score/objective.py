"""The single number a search maximises: sample quality, discounted by instability.

    objective = quality × (0.5 + 0.5 × stability)      (0 when the run diverged)

``quality`` and ``stability`` both lie in [0, 1] with 1 best, so the objective does too. A
perfectly stable run keeps its whole quality; the least stable run that still finished keeps
half of it, so quality dominates and stability breaks ties between runs of similar quality.
A diverged run (NaN/inf or exploding losses) scores 0 whatever its last samples looked like.
"""

from __future__ import annotations

import math

__all__ = ["objective"]


def objective(quality: float | None, stability: float | None, diverged: bool = False) -> float:
    """``quality × (0.5 + 0.5 × stability)``, or 0 for a diverged run (see the module docstring).

    A missing or non-finite quality counts as 0; a missing stability as 1 (not measured).

    Example::

        objective(0.8, 1.0)   # 0.8
        objective(0.8, 0.0)   # 0.4
        objective(0.8, 0.5, diverged=True)   # 0.0
    """
    if diverged:
        return 0.0
    q = float(quality) if quality is not None else 0.0
    s = float(stability) if stability is not None else 1.0
    if not math.isfinite(q):
        return 0.0
    if not math.isfinite(s):
        s = 0.0
    q = min(1.0, max(0.0, q))
    s = min(1.0, max(0.0, s))
    return q * (0.5 + 0.5 * s)
