"""What a study's trials add up to, in the words every command uses.

``--trials N`` counts *trained* trials: complete, failed (a configuration that could not be
built or trained, penalised) and pruned. A *repeat* is a configuration the sampler proposed
again: its earlier result is reused without training, so it does not count. *Interrupted*
trials (Ctrl-C, or left running by a killed process) run again and do not count either.
Every trial is in exactly one group, so the groups add up to the study's trial count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from optuna.trial import FrozenTrial, TrialState

from ganarch.search.objective import DUPLICATE_ATTR

__all__ = ["TrialCounts", "state_label"]


def state_label(t: FrozenTrial) -> str:
    """A trial's state for a table: ``complete``, ``failed``, ``diverged``, ``pruned``,
    ``repeat`` (of another trial), ``stopped`` (interrupted, or left running by a killed
    process: it runs again), ``running`` or ``waiting``."""
    if DUPLICATE_ATTR in t.user_attrs:
        return "repeat"
    if t.state == TrialState.COMPLETE:
        failure = str(t.user_attrs.get("failure") or "")
        if failure:
            return "diverged" if failure.startswith("diverged") else "failed"
        return "complete"
    if t.state == TrialState.FAIL:
        return "stopped"
    return t.state.name.lower()


@dataclass(frozen=True)
class TrialCounts:
    """A study's trials in disjoint groups (see the module docs)."""

    complete: int = 0
    failed: int = 0  # failed or diverged: finished with a failure reason
    pruned: int = 0
    repeats: int = 0
    interrupted: int = 0
    running: int = 0
    waiting: int = 0

    @classmethod
    def of(cls, trials: Iterable[FrozenTrial]) -> TrialCounts:
        n = dict.fromkeys(cls.__dataclass_fields__, 0)
        for t in trials:
            label = state_label(t)
            key = {"diverged": "failed", "repeat": "repeats", "stopped": "interrupted"}
            key = key.get(label, label)
            n[key] = n.get(key, 0) + 1
        return cls(**{k: n[k] for k in cls.__dataclass_fields__})

    @property
    def trained(self) -> int:
        """What ``--trials`` counts: complete + failed + pruned."""
        return self.complete + self.failed + self.pruned

    @property
    def total(self) -> int:
        return self.trained + self.repeats + self.interrupted + self.running + self.waiting

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "trained": self.trained, "total": self.total}

    def trained_text(self) -> str:
        """``"8 complete + 8 pruned"`` (only the groups present; ``"none"`` if empty)."""
        parts = [(self.complete, "complete"), (self.failed, "failed"), (self.pruned, "pruned")]
        return " + ".join(f"{n} {w}" for n, w in parts if n) or "none"

    def extra_text(self) -> str:
        """The trials ``--trials`` does not count, each group saying what it is, or ``""``."""
        parts = []
        if self.repeats:
            parts.append(
                f"{self.repeats} repeat{'s' if self.repeats > 1 else ''} (a configuration "
                "proposed again: the earlier result is reused, nothing is trained)"
            )
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted (run again on resume)")
        if self.running:
            parts.append(f"{self.running} running")
        if self.waiting:
            parts.append(f"{self.waiting} waiting")
        return ", ".join(parts)

    def lines(self) -> list[str]:
        """One entry per group present, for a table cell: ``["8 complete", "5 repeats"]``."""
        return [
            f"{n} {k if n > 1 or k != 'repeats' else 'repeat'}"
            for k, n in asdict(self).items()
            if n
        ]
