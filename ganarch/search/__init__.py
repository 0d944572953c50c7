"""The search layer, the only part of ganarch that talks to Optuna.

``load_space`` reads a search-space file; ``run_search`` runs or resumes a study;
``best_spec`` reads the best trial's spec back. Names load on first use, so importing
``ganarch.search.defaults`` (the command line's help) does not import Optuna.
"""

from __future__ import annotations

from ganarch._lazy import lazy_getattr
from ganarch.search.defaults import DEFAULT_STORAGE, PRUNERS, SAMPLERS

_LAZY = {
    "TrialSettings": "ganarch.search.objective",
    "best_spec": "ganarch.search.results",
    "best_trial": "ganarch.search.results",
    "list_studies": "ganarch.search.results",
    "list_trials": "ganarch.search.results",
    "open_study": "ganarch.search.results",
    "Choice": "ganarch.search.space",
    "SearchSpace": "ganarch.search.space",
    "available_spaces": "ganarch.search.space",
    "load_space": "ganarch.search.space",
    "open_storage": "ganarch.search.storage",
    "SearchConfig": "ganarch.search.study",
    "SearchSummary": "ganarch.search.study",
    "default_study_name": "ganarch.search.study",
    "run_search": "ganarch.search.study",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


__all__ = ["DEFAULT_STORAGE", "PRUNERS", "SAMPLERS", *_LAZY]
