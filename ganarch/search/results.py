"""Reading studies back: list studies and trials, and the best spec as a ``GANSpec``. The
analysis layer reads studies through this module only (their trials, states, directions,
metric names and parameter importances), so Optuna stays behind the search layer.

The best trial of a single-objective study is the feasible ``COMPLETE`` trial with the
highest value. For a multi-objective study (quality, stability) it is a documented pick from
the Pareto front: the front trial with the highest product quality × stability, ties to the
lower trial number. Trials that failed (penalised, infeasible) never count.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optuna
from optuna.importance import (
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    MeanDecreaseImpurityImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from ganarch.builder import GANSpec
from ganarch.errors import GanarchError
from ganarch.search.counts import TrialCounts, state_label
from ganarch.search.storage import load_study, open_storage, require_existing
from ganarch.search.study import ranked_trials, trial_row
from ganarch.templates import TEMPLATES

__all__ = [
    "IMPORTANCE_EVALUATORS",
    "Study",
    "Trial",
    "best_spec",
    "best_trial",
    "changed_choices",
    "directions",
    "list_studies",
    "list_trials",
    "metric_names",
    "open_study",
    "param_importances",
    "state",
    "trials",
]

#: A study and one of its trials, as the analysis layer receives them (Optuna's objects).
Study = optuna.Study
Trial = FrozenTrial
StudyLike = str | optuna.Study


def open_study(study: StudyLike, storage: str | os.PathLike | None = None) -> optuna.Study:
    """A study object from a study or a name in ``storage`` (default ``ganarch.journal``)."""
    if isinstance(study, optuna.Study):
        return study
    return load_study(study, open_storage(require_existing(storage)))


def best_trial(study: StudyLike, storage: str | os.PathLike | None = None) -> FrozenTrial:
    """The best feasible ``COMPLETE`` trial (see the module docs for multi-objective)."""
    st = open_study(study, storage)
    ranked = ranked_trials(st)
    if not ranked:
        n = len(st.get_trials(deepcopy=False))
        raise GanarchError(
            f"study {st.study_name!r} has no successful completed trial yet ({n} trials in all)"
        )
    return ranked[0]


def best_spec(study: StudyLike, storage: str | os.PathLike | None = None) -> GANSpec:
    """The best trial's spec, with its training settings, ready to ``.build()`` or train.

    Example::

        spec = ganarch.best_spec("quick-digits")            # from ./ganarch.journal
        spec = ganarch.best_spec("dcgan-digits", storage="sqlite:///ganarch.db")
        G, D = spec.build()
    """
    st = open_study(study, storage)
    trial = best_trial(st)
    d = trial.user_attrs.get("spec")
    if not isinstance(d, dict):
        raise GanarchError(f"trial {trial.number} of study {st.study_name!r} recorded no spec")
    spec = GANSpec.from_dict(d)
    meta = dict(spec.meta)
    meta["search"] = {
        "study": st.study_name,
        "trial": trial.number,
        "values": list(trial.values or []),
        "quality": trial.user_attrs.get("quality"),
        "stability": trial.user_attrs.get("stability"),
        "objective": trial.user_attrs.get("objective"),
    }
    return spec.replace(meta=meta)


def changed_choices(choices: Mapping[str, Any], template: str = "dcgan") -> dict[str, Any]:
    """The choices that differ from ``template``'s defaults and training defaults (for
    ``dcgan``: the paper's), as ``ganarch best`` and the report show a trial. A choice the
    template does not declare (``X_params``) counts as changed, and so does every choice of a
    template no plugin registers any more.

    Example::

        changed_choices({"g_norm": "batchnorm", "d_norm": "none", "beta1": 0.5})
        # {"d_norm": "none"}
    """
    found = TEMPLATES.get(template)
    defaults = found.resolve() if found is not None else {}
    missing = object()
    return {k: v for k, v in choices.items() if defaults.get(k, missing) != v}


def list_studies(storage: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every study in the storage: name, trial counts by state, directions, best value(s)."""
    store = open_storage(require_existing(storage))
    out = []
    for summary in sorted(store.get_all_studies(), key=lambda s: s.study_name):
        st = optuna.load_study(study_name=summary.study_name, storage=store)
        trials = st.get_trials(deepcopy=False)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        ranked = ranked_trials(st) if counts.get("COMPLETE") else []
        grouped = TrialCounts.of(trials)
        settings = st.user_attrs.get("ganarch", {}) or {}
        out.append(
            {
                "name": st.study_name,
                "directions": [d.name.lower() for d in st.directions],
                "metric_names": st.metric_names,
                "n_trials": len(trials),
                "states": counts,  # Optuna's states; "counts" says what they are
                "counts": {**grouped.to_dict(), "lines": grouped.lines()},
                "best_trial": ranked[0].number if ranked else None,
                "best_values": list(ranked[0].values) if ranked else None,
                "space": settings.get("space"),
                "data": settings.get("data"),
                "sampler": st.user_attrs.get("sampler"),
            }
        )
    return out


def list_trials(study: StudyLike, storage: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every trial of a study as plain data (number, state, values, params, failure, ...);
    ``label`` is the state a table shows (``repeat``, ``failed``, ... see ``state_label``)."""
    st = open_study(study, storage)
    return [{**trial_row(t, st), "label": state_label(t)} for t in st.get_trials(deepcopy=False)]


# -- what the analysis layer reads ---------------------------------------------------------------


def trials(study: Study, states: Iterable[str] | None = None) -> list[Trial]:
    """The study's trials in number order, or only those whose :func:`state` is in ``states``
    (e.g. ``("COMPLETE",)``). Not copies: read them, do not change them."""
    every = study.get_trials(deepcopy=False)
    if states is None:
        return list(every)
    wanted = set(states)
    return [t for t in every if state(t) in wanted]


def state(trial: Trial) -> str:
    """``"COMPLETE"``, ``"PRUNED"``, ``"FAIL"``, ``"RUNNING"`` or ``"WAITING"``."""
    return trial.state.name


def directions(study: Study) -> list[str]:
    """Each objective's direction: ``"maximize"`` or ``"minimize"``."""
    return ["maximize" if d == StudyDirection.MAXIMIZE else "minimize" for d in study.directions]


def metric_names(study: Study) -> list[str] | None:
    """The objectives' names as recorded (``["objective"]``, ``["quality", "stability"]``), or
    ``None`` when the study recorded none."""
    try:
        return study.metric_names
    except (AttributeError, ValueError):
        return None


#: Importance evaluators by CLI name: (factory, the name printed in every output).
IMPORTANCE_EVALUATORS: dict[str, tuple[Callable[[], BaseImportanceEvaluator], str]] = {
    "ped-anova": (
        lambda: PedAnovaImportanceEvaluator(),
        "PED-ANOVA (optuna PedAnovaImportanceEvaluator, top 10% of trials vs all)",
    ),
    "fanova": (
        lambda: FanovaImportanceEvaluator(seed=0),
        "fANOVA (optuna FanovaImportanceEvaluator, seed 0)",
    ),
    "mdi": (
        lambda: MeanDecreaseImpurityImportanceEvaluator(seed=0),
        "mean decrease impurity (optuna MeanDecreaseImpurityImportanceEvaluator, seed 0)",
    ),
}


def param_importances(
    study: Study, evaluator: BaseImportanceEvaluator, *, objective: int = 0, higher: bool = True
) -> dict[str, float]:
    """Normalised importance of every searched parameter for objective ``objective`` (whose
    direction is ``higher`` is better), from ``optuna.importance.get_param_importances``.
    Small-sample warnings are silenced (the caller notes its own limits); Optuna's errors on
    too little data (``ValueError``, ``ZeroDivisionError``, ``IndexError``) propagate."""
    target = None  # single objective: every evaluator reads the value and the direction
    if len(study.directions) > 1:
        # PED-ANOVA with a target treats lower as better, so a maximised score is negated.
        sign = -1.0 if higher and isinstance(evaluator, PedAnovaImportanceEvaluator) else 1.0
        target = lambda t: sign * t.values[objective]  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)
    return dict(result)
