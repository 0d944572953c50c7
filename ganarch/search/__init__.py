"""The search layer, the only part of ganarch that talks to Optuna.

``load_space`` reads a search-space file; ``run_search`` runs or resumes a study;
``best_spec`` reads the best trial's spec back.
"""

from ganarch.search.objective import TrialSettings
from ganarch.search.results import best_spec, best_trial, list_studies, list_trials, open_study
from ganarch.search.space import Choice, SearchSpace, available_spaces, load_space
from ganarch.search.storage import DEFAULT_STORAGE, open_storage
from ganarch.search.study import (
    PRUNERS,
    SAMPLERS,
    SearchConfig,
    SearchSummary,
    default_study_name,
    run_search,
)

__all__ = [
    "DEFAULT_STORAGE",
    "PRUNERS",
    "SAMPLERS",
    "Choice",
    "SearchConfig",
    "SearchSpace",
    "SearchSummary",
    "TrialSettings",
    "available_spaces",
    "best_spec",
    "best_trial",
    "default_study_name",
    "list_studies",
    "list_trials",
    "load_space",
    "open_storage",
    "open_study",
    "run_search",
]
