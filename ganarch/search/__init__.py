"""The search layer, the only part of ganarch that talks to Optuna.

``load_space`` reads a search-space file; ``run_search`` runs or resumes a study;
``best_spec`` reads the best trial's spec back. The package is callable:
``ganarch.search(...)`` is ``ganarch search`` from Python (``ganarch.search.api``). Names load on first use, so importing
``ganarch.search.defaults`` (the command line's help) does not import Optuna.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

from ganarch._lazy import lazy_getattr
from ganarch.search import api as _api
from ganarch.search.defaults import DEFAULT_STORAGE

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
    "load_study": "ganarch.search.api",
    "default_study_name": "ganarch.search.study",
    "run_search": "ganarch.search.study",
    "samplers": "ganarch.search.strategies",
    "pruners": "ganarch.search.strategies",
}


_lazy_getattr = lazy_getattr(__name__, globals(), _LAZY)


def __getattr__(name: str) -> Any:
    # The names registered now (a plugin may add more later): looked up on every use.
    if name in ("SAMPLERS", "PRUNERS"):
        from ganarch.search import strategies

        table = strategies.samplers() if name == "SAMPLERS" else strategies.pruners()
        return tuple(sorted(table, key=lambda n: table[n].position))  # as registered
    return _lazy_getattr(name)


def _call(self: types.ModuleType, *args: Any, **kwargs: Any) -> Any:
    return _api.search(*args, **kwargs)


_signature = inspect.signature(_api.search)
_self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
_call.__signature__ = _signature.replace(parameters=[_self, *_signature.parameters.values()])
_call.__doc__ = _api.search.__doc__


class _CallablePackage(types.ModuleType):
    """``ganarch.search`` is this package *and* ``ganarch search`` as a function: importing a
    submodule sets the package as the attribute ``ganarch.search``, so the package itself
    must be the callable (see ``ganarch.search.api.search``)."""

    __call__ = _call


sys.modules[__name__].__class__ = _CallablePackage


__all__ = ["DEFAULT_STORAGE", "PRUNERS", "SAMPLERS", *_LAZY]
