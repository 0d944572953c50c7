"""Designed experiments: two-level factorial designs over a space's rule toggles, as a sampler.

A designed study trains the runs of a fixed design instead of what a sampler guesses next,
so every main effect is estimated from balanced, controlled comparisons. Each *factor* is
one of the paper's rule toggles (the choices the space's template groups per claim in its
``claims`` declaration, moved together between the template's default and the space's other
value; only ``dcgan`` declares them) or any other two-value choice of the space (its first
value is the ``+1`` level).

Designs (``--sampler``):

- ``fractional``: 16 runs. Up to 4 factors a full factorial; 5 a 2^(5-1) of resolution V;
  6 to 8 a 2^(k-(k-4)) of resolution IV (seven claims: the 2^(7-3) design, generators
  E = ABC, F = BCD, G = ACD), so every main effect is free of two-factor interactions.
- ``fractional32``: 32 runs. Up to 5 factors a full factorial; 6 resolution VI; 7 to 9
  resolution IV with fewer two-factor interactions sharing an alias chain.
- ``factorial``: the full 2^k design (every combination; 128 runs for seven claims).

Replication: ``--seeds K`` trains every run with the same K seeds, so each seed's responses
form a paired replicate of the whole design (the analysis refits without each seed to show
whether a verdict survives re-seeding).

The sampler works through Optuna's own machinery, so storage, resume and local workers need
nothing new: when a trial is created (``before_trial``, which the study runner calls under its
worker lock) it takes the first design run no live trial holds and records it as the user
attribute ``design_run``; the run's levels then answer every ``suggest``. A trial that failed
without a result (interrupted, a dead worker) frees its run for the next trial.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ganarch.errors import GanarchError
from ganarch.search.defaults import DESIGNS
from ganarch.search.space import BRANCH_SEP, SearchSpace
from ganarch.templates import CLAIM_TOGGLES  # re-exported; factors read the space's template

__all__ = [
    "CLAIM_TOGGLES",
    "DESIGNS",
    "DESIGN_ATTR",
    "RUN_ATTR",
    "Design",
    "DesignSampler",
    "Factor",
    "check_resumed_design",
    "design_for",
    "make_design",
]

#: The study user attribute describing the design; the trial user attribute naming its run.
DESIGN_ATTR = "design"
RUN_ATTR = "design_run"

_LETTERS = "ABCDEFGHJKLMNOPQ"  # factor letters as the design literature writes them (no I)

#: Generators of the fractional designs by (runs, factors): each added factor is the product
#: of base factors (indices into the base letters). Montgomery, Design and Analysis of
#: Experiments, Table 8.14 (minimum aberration designs).
_GENERATORS: dict[tuple[int, int], tuple[str, ...]] = {
    (16, 5): ("ABCD",),
    (16, 6): ("ABC", "BCD"),
    (16, 7): ("ABC", "BCD", "ACD"),
    (16, 8): ("BCD", "ACD", "ABC", "ABD"),
    (32, 6): ("ABCDE",),
    (32, 7): ("ABCD", "ABDE"),
    (32, 8): ("ABC", "ABD", "BCDE"),
    (32, 9): ("BCDE", "ACDE", "ABDE", "ABCE"),
}
_MAX_FACTORIAL = 10  # 1,024 runs


@dataclass(frozen=True)
class Factor:
    """One two-level factor: the template choices it sets at its ``+1`` and ``-1`` levels."""

    name: str  # "claim3" for a rule toggle, else the choice's name
    claim: int | None
    high: Mapping[str, Any]  # level +1: the paper's values (or a choice's first value)
    low: Mapping[str, Any]  # level -1: the alternative

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "claim": self.claim,
            "high": dict(self.high),
            "low": dict(self.low),
        }


@dataclass(frozen=True)
class Design:
    """A two-level design: ``matrix[run, factor]`` in {+1, -1}; run 0 is all ``+1``."""

    name: str
    factors: tuple[Factor, ...]
    matrix: np.ndarray
    generators: tuple[str, ...]  # e.g. ("E=ABC", "F=BCD", "G=ACD"); () for a full factorial

    @property
    def runs(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def letters(self) -> str:
        return _LETTERS[: len(self.factors)]

    def defining_words(self) -> list[frozenset[str]]:
        """The defining relation's words (``I = ABCE = ...``), every product of generators."""
        gens = [frozenset(g.replace("=", "")) for g in self.generators]
        words: set[frozenset[str]] = set()
        for r in range(1, len(gens) + 1):
            for combo in itertools.combinations(gens, r):
                w: frozenset[str] = frozenset()
                for g in combo:
                    w = w ^ g
                words.add(w)
        return sorted(words, key=lambda w: (len(w), sorted(w)))

    @property
    def resolution(self) -> int | None:
        """The shortest defining word's length; ``None`` for a full factorial (no aliasing)."""
        words = self.defining_words()
        return min(len(w) for w in words) if words else None

    def aliases(self, effect: str, max_order: int = 3) -> list[str]:
        """Effects aliased with ``effect`` (letters, e.g. ``"A"`` or ``"CD"``) up to ``max_order``."""
        e = frozenset(effect)
        out = {"".join(sorted(e ^ w)) for w in self.defining_words()}
        return sorted((a for a in out if 0 < len(a) <= max_order), key=lambda a: (len(a), a))

    def two_factor_chains(self) -> list[list[str]]:
        """Two-factor interactions grouped by alias chain (each chain one estimable column)."""
        seen: set[str] = set()
        chains: list[list[str]] = []
        for pair in itertools.combinations(self.letters, 2):
            ab = "".join(pair)
            if ab in seen:
                continue
            chain = [ab, *[a for a in self.aliases(ab, 2) if len(a) == 2]]
            seen.update(chain)
            chains.append(chain)
        return chains

    def label(self) -> str:
        """``"2^(7-3) resolution IV, 16 runs"``."""
        k, p = len(self.factors), len(self.generators)
        if not p:
            return f"full 2^{k} factorial, {self.runs} runs"
        roman = {3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}
        res = self.resolution or 0
        return (
            f"2^({k}-{p}) fractional factorial, resolution {roman.get(res, res)}, {self.runs} runs"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label(),
            "factors": [f.to_dict() for f in self.factors],
            "letters": self.letters,
            "generators": list(self.generators),
            "resolution": self.resolution,
            "matrix": self.matrix.astype(int).tolist(),
        }

    def choices(self, run: int) -> dict[str, Any]:
        """The template choices of design run ``run``."""
        out: dict[str, Any] = {}
        for factor, level in zip(self.factors, self.matrix[run], strict=True):
            out.update(factor.high if level > 0 else factor.low)
        return out


def _full(k: int) -> np.ndarray:
    """All 2^k sign combinations, starting from all +1 (column 0 changes slowest)."""
    return np.array(list(itertools.product([1, -1], repeat=k)), dtype=int).reshape(-1, k)


def make_design(name: str, factors: Sequence[Factor]) -> Design:
    """The design ``name`` (one of ``DESIGNS``) for ``factors``."""
    k = len(factors)
    if k < 1:
        raise GanarchError("a design needs at least one two-value choice in the space")
    if name == "factorial":
        if k > _MAX_FACTORIAL:
            raise GanarchError(
                f"--sampler factorial: {k} factors need 2^{k} runs; at most {_MAX_FACTORIAL} factors"
            )
        return Design(name, tuple(factors), _full(k), ())
    runs = {"fractional": 16, "fractional32": 32}.get(name)
    if runs is None:
        raise GanarchError(
            f"--sampler: unknown design {name!r}; choose one of {', '.join(DESIGNS)}"
        )
    base = int(math.log2(runs))
    if k <= base:  # small enough for every combination
        return Design(name, tuple(factors), _full(k), ())
    gens = _GENERATORS.get((runs, k))
    if gens is None:
        most = max(f for r, f in _GENERATORS if r == runs)
        raise GanarchError(
            f"--sampler {name}: {k} factors do not fit a resolution IV design of {runs} runs "
            f"(at most {most}); use fractional32 or fewer two-value choices"
        )
    matrix = _full(base)
    columns = [matrix[:, i] for i in range(base)]
    for word in gens:
        col = np.ones(runs, dtype=int)
        for letter in word:
            col = col * matrix[:, _LETTERS.index(letter)]
        columns.append(col)
    added = _LETTERS[base:k]
    return Design(
        name,
        tuple(factors),
        np.stack(columns, axis=1),
        tuple(f"{a}={w}" for a, w in zip(added, gens, strict=True)),
    )


# -- factors from a search space ----------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal values of one kind (``0.5 == 0.5``, ``1 == 1.0``) but ``False`` is not ``0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def factors_of(space: SearchSpace) -> list[Factor]:
    """The space's two-level factors: claim toggles first (claim order), then other choices.

    Claim toggles are those the space's template declares (``TemplateInfo.claims``); a
    template that declares none has only plain factors. Every searched choice must be a list
    of exactly two values (a claim toggle's list must hold the template's default, the
    paper's value) and unconditional; the error names the first one that is not.
    """
    by_claim: dict[int, list[tuple[str, Any, Any]]] = {}
    others: list[Factor] = []
    info = space.info
    paper_values = info.resolve()
    owner = {name: claim for claim, names in info.claims.items() for name in names}
    for choice in space.choices:
        values = list(choice.values) if choice.values is not None else None
        if values is not None and len(values) == 1:
            continue  # held constant: not a factor
        where = choice.where or choice.name
        if values is None or len(values) != 2:
            raise GanarchError(
                f"{where}: a two-level design needs a list of exactly two values, "
                f"not {'a range' if values is None else f'{len(values)} values'}"
            )
        if space.is_conditional(choice):
            raise GanarchError(f"{where}: a two-level design cannot vary a conditional choice")
        claim = owner.get(choice.name)
        if claim is None:
            others.append(
                Factor(choice.name, None, {choice.name: values[0]}, {choice.name: values[1]})
            )
            continue
        paper = paper_values[choice.name]
        if not any(_same(v, paper) for v in values):
            raise GanarchError(
                f"{where}: a claim toggle's two values must include the paper's {paper!r}"
            )
        alt = next(v for v in values if not _same(v, paper))
        by_claim.setdefault(claim, []).append((choice.name, paper, alt))
    factors = [
        Factor(f"claim{claim}", claim, {n: p for n, p, _ in moves}, {n: a for n, _, a in moves})
        for claim, moves in sorted(by_claim.items())
    ]
    return factors + others


def design_for(space: SearchSpace, name: str) -> Design:
    """The design ``name`` over ``space``'s factors (bad input: a one-line ``GanarchError``)."""
    return make_design(name, factors_of(space))


def check_resumed_design(study: optuna.Study, space: SearchSpace, sampler: str) -> None:
    """A study run with a design resumes only with that design: another one would train
    other rows under the same run numbers, analysed against the recorded matrix."""
    recorded = study.user_attrs.get(DESIGN_ATTR)
    if recorded is None:
        return
    if sampler in DESIGNS and _stored(design_for(space, sampler)) == recorded:
        return
    raise _other_design(study.study_name, recorded)


def _stored(design: Design) -> Any:
    """``design.to_dict()`` as the storage gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(design.to_dict()))


def _other_design(study_name: str, recorded: Mapping[str, Any]) -> GanarchError:
    name = recorded.get("name", "?")
    return GanarchError(
        f"study {study_name!r} was run with --sampler {name} ({recorded.get('label', name)}); "
        f"resume it with --sampler {name}, or pick a new --study NAME"
    )


# -- the sampler ---------------------------------------------------------------------------------

_LIVE = (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED)


class DesignSampler(optuna.samplers.BaseSampler):
    """Places trial ``i`` on the first free run of ``design`` (see the module docstring).

    Past the design's last run, trials repeat runs in order (the search's repeat detection
    reuses their results); ``is_exhausted(study)`` tells the study runner to stop first.
    """

    def __init__(self, design: Design) -> None:
        self.design = design
        self._runs: dict[int, int] = {}  # trial id -> design run, for this process's trials

    # Optuna's sampler interface: no relative sampling, every parameter answered by the run.
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        storage = study._storage  # not study.user_attrs: a pruner may wrap the study
        recorded = storage.get_study_user_attrs(study._study_id).get(DESIGN_ATTR)
        if recorded is None:
            storage.set_study_user_attr(study._study_id, DESIGN_ATTR, self.design.to_dict())
        elif recorded != _stored(self.design):
            raise _other_design(study.study_name, recorded)
        # a queued retry names its run by its params (all of them, or those set before it
        # was interrupted): the first free run they fit; a new trial: the first free run
        fixed = trial.system_attrs.get("fixed_params") or {}
        fits = self._runs_of_params(fixed)
        if not fits:  # not a retry of this design (enqueued by hand): never guess a run
            storage.set_trial_user_attr(trial._trial_id, "failure", "fits no design run")
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            raise GanarchError(
                f"trial {trial.number}: its queued params {dict(fixed)} fit no run of the "
                f"{self.design.name} design; it is marked failed, run the command again"
            )
        taken = self._taken(study, exclude=trial._trial_id)
        free = [r for r in fits if r not in taken]
        # past the design (or a retry of a run done meanwhile): repeat runs in order
        run = free[0] if free else fits[trial.number % len(fits)]
        self._runs[trial._trial_id] = run
        storage.set_trial_user_attr(trial._trial_id, RUN_ATTR, run)
        trial.user_attrs[RUN_ATTR] = run  # the cached copy the suggest calls read

    def sample_independent(
        self, study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        run = self._runs.get(trial._trial_id, trial.user_attrs.get(RUN_ATTR))
        if run is None:
            raise GanarchError(f"trial {trial.number} has no design run (before_trial not called)")
        choices = self.design.choices(int(run))
        name = param_name.split(BRANCH_SEP, 1)[0]
        if name not in choices:
            raise GanarchError(f"{param_name}: not a factor of the {self.design.name} design")
        return choices[name]

    def is_exhausted(self, study: optuna.Study) -> bool:
        """Every design run is held by a finished or running trial and no queued retry is
        left (a queued retry must still run: it is how an interrupted run is trained)."""
        live = study.get_trials(deepcopy=False, states=_LIVE)
        if any(t.state == TrialState.WAITING for t in live):
            return False
        return len(self._taken(study)) >= self.design.runs

    def _taken(self, study: optuna.Study, exclude: int | None = None) -> set[int]:
        taken: set[int] = set()
        for t in study.get_trials(deepcopy=False, states=_LIVE):
            if t._trial_id == exclude:
                continue
            run = t.user_attrs.get(RUN_ATTR)
            if run is None and t.state == TrialState.WAITING:
                run = self._run_of_params(t.system_attrs.get("fixed_params") or {})
            if run is not None:
                taken.add(int(run))
        return taken

    def _run_of_params(self, params: Mapping[str, Any]) -> int | None:
        """The first run whose levels ``params`` (a queued retry's) fit, if they name one."""
        fits = self._runs_of_params(params) if params else []
        return fits[0] if fits else None

    def _runs_of_params(self, params: Mapping[str, Any]) -> list[int]:
        """The runs whose levels fit ``params`` (every run for no params)."""
        named = {k.split(BRANCH_SEP, 1)[0]: v for k, v in params.items()}
        return [
            run
            for run in range(self.design.runs)
            if all(_same(named[k], v) for k, v in self.design.choices(run).items() if k in named)
        ]
