"""Samplers and pruners: what plugins register through ``ganarch_register_samplers`` and
``ganarch_register_pruners``, checked on the way in, and looked up by ``--sampler NAME`` and
``--pruner NAME``.

A factory receives a :class:`StrategyContext` (the space, this worker's seed, the trial budget,
the trial settings) and returns an Optuna sampler or pruner. Importing this module imports no
Optuna: the factories do, when a study is opened. The built-ins live in ``plugins/search.py``.
A plugin's factory, ``design_runs`` or ``check`` that raises anything but a ``GanarchError``
(e.g. ``ModuleNotFoundError`` for a missing optional package) is reported in one line naming
the plugin (a ``PluginError``: exit 2), not as a bug in ganarch.

Example::

    @ganarch.hookimpl
    def ganarch_register_samplers(registrar):
        registrar.add("cmaes", factory=lambda ctx: optuna.samplers.CmaEsSampler(seed=ctx.seed))
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ganarch.errors import GanarchError, PluginError, closest
from ganarch.plugin import manager
from ganarch.plugin.registry import Registrar, Registry, guarded

if TYPE_CHECKING:
    from ganarch.search.objective import TrialSettings
    from ganarch.search.space import SearchSpace

__all__ = [
    "PrunerInfo",
    "PrunerRegistrar",
    "SamplerInfo",
    "SamplerRegistrar",
    "StrategyContext",
    "get_pruner",
    "get_sampler",
    "pruners",
    "samplers",
]

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_RULE = "a lower-case word (letters, digits, '_', '-'), as typed after --sampler/--pruner"


@dataclass(frozen=True)
class StrategyContext:
    """What a sampler or pruner factory receives (one per worker process and study opening)."""

    #: The registered name the factory was asked by (one factory may serve several names).
    name: str
    #: What every trial shares: ``data``, ``steps``, ``seeds``, ``eval_every``, ``objective``...
    settings: TrialSettings
    #: The searched space (always given to a sampler; ``None`` for a pruner made on its own).
    space: SearchSpace | None = None
    #: This worker's sampler seed: distinct per worker and per resume (``None``: unseeded).
    seed: int | None = None
    #: Trials the study should hold (``--trials``).
    trials: int = 20
    #: True for ``--objective multi`` (quality and stability, two directions).
    multi: bool = False
    #: Local worker processes sharing the study (``--workers``).
    workers: int = 1

    @property
    def eval_every(self) -> int:
        """Training steps between evaluations (each one reports to the pruner)."""
        from ganarch.run import default_eval_every

        return self.settings.eval_every or default_eval_every(self.settings.steps)

    @property
    def budget(self) -> int:
        """A trial's whole resource in the unit it reports in: seed-steps (steps × seeds;
        ``K`` seeds report the training done so far summed over seeds, fused or not)."""
        return self.settings.steps * self.settings.seeds


#: ``factory(context)`` returns an ``optuna.samplers.BaseSampler`` / ``BasePruner``.
Factory = Callable[[StrategyContext], Any]


@dataclass(frozen=True)
class SamplerInfo:
    """A registered sampler."""

    name: str
    factory: Factory
    plugin: str
    description: str = ""
    #: A designed experiment: ``design_runs(space)`` is how many runs it trains over
    #: ``space`` (raising ``GanarchError`` for a space it cannot cover). ``--trials`` defaults
    #: to that number and fewer are refused, pruning is off, and ``ganarch search`` prints the
    #: rules when the study is done. ``None``: a sampler that guesses.
    design_runs: Callable[[SearchSpace], int] | None = None
    #: ``check(space)`` raises ``GanarchError`` (or ``SpecError``) for a space the sampler
    #: cannot search, before any study is created (the grid: a continuous choice).
    check: Callable[[SearchSpace], Any] | None = None
    #: How many samplers were registered before it (the built-ins first): lists keep this order.
    position: int = 0

    @property
    def is_design(self) -> bool:
        return self.design_runs is not None


@dataclass(frozen=True)
class PrunerInfo:
    """A registered pruner."""

    name: str
    factory: Factory
    plugin: str
    description: str = ""
    #: How many pruners were registered before it (the built-ins first): lists keep this order.
    position: int = 0


def _checked_callable(who: str, noun: str, name: str, what: str, fn: Any) -> None:
    if not callable(fn):
        raise PluginError(f"{who}: {what} of {noun} {name!r} is not callable: {fn!r}")
    try:
        inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{who}: cannot read the signature of {noun} {name!r}'s {what}") from exc


def _description(who: str, name: str, given: str | None, factory: Any) -> str:
    if given is not None and not isinstance(given, str):
        raise PluginError(f"{who}: description of {name!r} must be text, got {given!r}")
    doc = given if given is not None else inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class SamplerRegistrar(Registrar[SamplerInfo]):
    """What ``ganarch_register_samplers`` receives: checks each sampler, then stages it."""

    noun = "sampler"

    def add(
        self,
        name: str,
        *,
        factory: Factory,
        description: str | None = None,
        design_runs: Callable[[SearchSpace], int] | None = None,
        check: Callable[[SearchSpace], Any] | None = None,
    ) -> None:
        """Register sampler ``name``: ``factory(context)`` returns an Optuna sampler.

        ``design_runs`` marks a designed experiment (see :class:`SamplerInfo`); ``check``
        refuses a space early. ``description`` defaults to the factory's docstring.
        """
        self.claim(name, _NAME, _RULE)
        _checked_callable(self.who, self.noun, name, "factory", factory)
        for what, fn in (("design_runs", design_runs), ("check", check)):
            if fn is not None:
                _checked_callable(self.who, self.noun, name, what, fn)
        where = f"--sampler {name}"  # a failure of the plugin's code: one line naming it
        info = SamplerInfo(
            name,
            guarded(factory, self.plugin, where, "factory"),
            self.plugin,
            _description(self.who, name, description, factory),
            None
            if design_runs is None
            else guarded(design_runs, self.plugin, where, "design_runs"),
            None if check is None else guarded(check, self.plugin, where, "check"),
            self.count(),
        )
        self.stage(name, info)


class PrunerRegistrar(Registrar[PrunerInfo]):
    """What ``ganarch_register_pruners`` receives: checks each pruner, then stages it."""

    noun = "pruner"

    def add(self, name: str, *, factory: Factory, description: str | None = None) -> None:
        """Register pruner ``name``: ``factory(context)`` returns an Optuna pruner, which is
        told each evaluation at its step in seed-steps (``context.budget`` in all)."""
        self.claim(name, _NAME, _RULE)
        _checked_callable(self.who, self.noun, name, "factory", factory)
        doc = _description(self.who, name, description, factory)
        made = guarded(factory, self.plugin, f"--pruner {name}", "factory")
        self.stage(name, PrunerInfo(name, made, self.plugin, doc, self.count()))


#: Every sampler and pruner plugins registered, cached until the set of plugins changes.
SAMPLERS_REGISTRY: Registry[SamplerInfo] = Registry("ganarch_register_samplers", SamplerRegistrar)
PRUNERS_REGISTRY: Registry[PrunerInfo] = Registry("ganarch_register_pruners", PrunerRegistrar)


def samplers() -> dict[str, SamplerInfo]:
    """Every registered sampler by name, in name order."""
    return SAMPLERS_REGISTRY.entries()


def pruners() -> dict[str, PrunerInfo]:
    """Every registered pruner by name, in name order."""
    return PRUNERS_REGISTRY.entries()


def _lookup(registry: Registry[Any], flag: str, noun: str, name: Any) -> Any:
    info = registry.get(name)
    if info is not None:
        return info
    table = registry.entries()
    why = registry.unknown(name)  # names the plugin that would add it, if one failed
    if not why.startswith(f"{name!r} is not available"):
        hint = closest(str(name), table)
        if not hint.startswith("did you mean"):  # every name, in the order registered
            hint = "choose one of " + ", ".join(sorted(table, key=lambda n: table[n].position))
        why = f"{name!r} is not one of the registered {noun}s; {hint}" + manager.why_missing()
    raise GanarchError(f"{flag}: {why}")


def get_sampler(name: Any) -> SamplerInfo:
    """The sampler ``name``; a one-line ``GanarchError`` naming the closest if unknown."""
    return _lookup(SAMPLERS_REGISTRY, "--sampler", "sampler", name)


def get_pruner(name: Any) -> PrunerInfo:
    """The pruner ``name``; a one-line ``GanarchError`` naming the closest if unknown."""
    return _lookup(PRUNERS_REGISTRY, "--pruner", "pruner", name)
