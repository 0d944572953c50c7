"""The hooks a ganarch plugin can implement.

Each hook receives a small registrar and calls it; the registrar checks what it is given.
Plugin authors decorate their functions with :data:`ganarch.hookimpl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # registrars live in the layer that owns what they register
    from ganarch.data.registry import DatasetRegistrar
    from ganarch.registry import BlockKindRegistrar, BlockRegistrar
    from ganarch.score.registry import MetricRegistrar
    from ganarch.search.strategies import PrunerRegistrar, SamplerRegistrar
    from ganarch.templates import TemplateRegistrar

PROJECT = "ganarch"

_hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@_hookspec
def ganarch_register_block_kinds(registrar: BlockKindRegistrar) -> None:
    """Register block kinds: what a block of the kind does to a shape, as a rule.

    :param registrar: call ``registrar.add(name, shape=..., description=...)`` once per kind;
        ``shape(in_shape, params)`` returns the output ``ganarch.Shape`` (raising
        ``ValueError`` when the input cannot fit); ``description`` is one line.
    """


@_hookspec
def ganarch_register_blocks(registrar: BlockRegistrar) -> None:
    """Register neural-network blocks that specs and search spaces can name.

    :param registrar: call ``registrar.add(name, kind=..., factory=...)`` once per block.
        ``kind`` is a registered kind (``ganarch.BLOCK_KINDS``, built-in or a plugin's);
        ``factory(in_shape, **params)`` returns a ``torch.nn.Module``; an optional ``shape(in_shape, params)`` overrides the kind's
        shape rule.
    """


@_hookspec
def ganarch_register_datasets(registrar: DatasetRegistrar) -> None:
    """Register datasets that ``--data NAME`` or ``--data NAME:ARG`` can load.

    :param registrar: call ``registrar.add(name, loader=..., description=..., takes_arg=...)``;
        ``loader(arg, *, image_size, channels, seed)`` returns a ``ganarch.data.ImageDataset``
        (``arg`` is the text after ``NAME:``, or ``None``; ``seed`` may be left out).
    """


@_hookspec
def ganarch_register_metrics(registrar: MetricRegistrar) -> None:
    """Register sample-quality metrics computed at each evaluation.

    :param registrar: call ``registrar.add(name, fn=..., higher_is_better=...)``;
        ``fn(context)`` returns a ``dict[str, float]`` of values to record. A metric may also
        declare how its values enter the quality score (see docs/plugins.md).
    """


@_hookspec
def ganarch_register_templates(registrar: TemplateRegistrar) -> None:
    """Register architecture templates: a family of specs laid out from keyword choices.

    :param registrar: call ``registrar.add(name, build=..., defaults=..., block_choices=...)``;
        ``build(image_size, channels, latent_dim, width, **choices)`` returns a
        ``ganarch.GANSpec``; ``defaults`` holds every choice with its default. The choices are
        declared as data (block kinds, which may be ``"none"``, ``X_params`` owners, integer
        and bool choices, ``requires`` for conditional ones), so a search space over the
        template needs nothing else (see docs/plugins.md).
    """


@_hookspec
def ganarch_register_samplers(registrar: SamplerRegistrar) -> None:
    """Register Optuna samplers that ``ganarch search --sampler NAME`` can use.

    :param registrar: call ``registrar.add(name, factory=..., design_runs=None, check=None)``;
        ``factory(context)`` returns an ``optuna.samplers.BaseSampler``, where ``context`` is a
        ``ganarch.search.strategies.StrategyContext`` (space, this worker's seed, trials,
        settings, multi, workers). ``design_runs(space)`` marks a designed experiment;
        ``check(space)`` refuses a space before any study is created.
    """


@_hookspec
def ganarch_register_pruners(registrar: PrunerRegistrar) -> None:
    """Register Optuna pruners that ``ganarch search --pruner NAME`` can use.

    :param registrar: call ``registrar.add(name, factory=...)``; ``factory(context)`` returns an
        ``optuna.pruners.BasePruner``. Evaluations report at their step in seed-steps;
        ``context.budget`` (steps × seeds) and ``context.eval_every`` size the rungs. Not
        called for multi-objective studies, which Optuna cannot prune.
    """
