"""Built-in samplers and pruners, registered through the same hooks as any plugin's.

Every sampler is seeded with the worker's seed; all see failed trials as infeasible through
``trial.set_constraint`` (TPE and NSGA-II use it; the others need not learn). Optuna is
imported when a factory runs, so loading the plugins (``ganarch blocks``) does not import it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ganarch.plugin import hookimpl
from ganarch.search.defaults import DESIGN_DESCRIPTIONS

if TYPE_CHECKING:
    from ganarch.search.space import SearchSpace
    from ganarch.search.strategies import StrategyContext


def tpe(ctx: StrategyContext) -> Any:
    """Tree-structured Parzen estimator (Optuna's default), with fewer startup trials in short searches."""
    import optuna

    # Optuna 5 defaults: multivariate=True, constant_liar=True (parallel workers see each
    # other's running trials). Fewer startup trials than the default 10 in short searches.
    startup = max(3, min(10, ctx.trials // 3))
    return optuna.samplers.TPESampler(seed=ctx.seed, n_startup_trials=startup)


def random(ctx: StrategyContext) -> Any:
    """Independent uniform draws."""
    import optuna

    return optuna.samplers.RandomSampler(seed=ctx.seed)


def _grid_check(space: SearchSpace) -> None:
    space.grid()  # a continuous choice: SpecError naming it


def grid(ctx: StrategyContext) -> Any:
    """Every combination of a finite space, in random order; the study ends when all ran."""
    import optuna

    # a continuous choice: grid() raises a SpecError naming it
    return optuna.samplers.GridSampler(ctx.space.grid(), seed=ctx.seed)


def qmc(ctx: StrategyContext) -> Any:
    """Scrambled Sobol quasi-random points (categorical choices drawn at random)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(
            seed=ctx.seed,
            scramble=True,  # categorical choices come from the independent random sampler
            independent_sampler=optuna.samplers.RandomSampler(seed=ctx.seed),
            warn_independent_sampling=False,
            warn_asynchronous_seeding=False,
        )


def nsga2(ctx: StrategyContext) -> Any:
    """NSGA-II, the genetic algorithm for multi-objective searches (--objective multi)."""
    import optuna

    population = max(4, min(50, ctx.trials // 3))
    return optuna.samplers.NSGAIISampler(seed=ctx.seed, population_size=population)


def design(ctx: StrategyContext) -> Any:
    """A fixed two-level design (``ganarch.search.design``): the runs, not the seed, decide
    what is trained; the design is the one named by ``ctx.name``."""
    from ganarch.search.design import DesignSampler, design_for

    return DesignSampler(design_for(ctx.space, ctx.name))


def _design_runs(name: str):
    def runs(space: SearchSpace) -> int:
        from ganarch.search.design import design_for

        return design_for(space, name).runs

    return runs


def _pruning_start(ctx: StrategyContext) -> int:
    """The first step a trial may be pruned at. A GAN's quality early in training predicts
    its final quality poorly (slow starters such as the paper's own DCGAN would be cut
    first), so no trial is pruned before half its budget: the first evaluation at or after
    budget / 2."""
    every, budget = ctx.eval_every, ctx.budget
    return max(every, -(-(budget // 2) // every) * every)


def hyperband(ctx: StrategyContext) -> Any:
    """Hyperband (reduction factor 3), its first rung at half the training budget."""
    import optuna

    return optuna.pruners.HyperbandPruner(
        min_resource=_pruning_start(ctx), max_resource=ctx.budget, reduction_factor=3
    )


def median(ctx: StrategyContext) -> Any:
    """Prune below the median of earlier trials at the same step, from half the budget on."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=_pruning_start(ctx) - 1)


def none(ctx: StrategyContext) -> Any:
    """No pruning: every trial trains to the end."""
    import optuna

    return optuna.pruners.NopPruner()


@hookimpl
def ganarch_register_samplers(registrar) -> None:
    registrar.add("tpe", factory=tpe)
    registrar.add("random", factory=random)
    registrar.add("grid", factory=grid, check=_grid_check)
    registrar.add("qmc", factory=qmc)
    registrar.add("nsga2", factory=nsga2)
    for name, description in DESIGN_DESCRIPTIONS.items():
        registrar.add(name, factory=design, description=description, design_runs=_design_runs(name))


@hookimpl
def ganarch_register_pruners(registrar) -> None:
    registrar.add("hyperband", factory=hyperband)
    registrar.add("median", factory=median)
    registrar.add("none", factory=none)
