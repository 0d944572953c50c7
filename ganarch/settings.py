"""How a run trains: one frozen settings object instead of the same dozen keyword arguments
repeated by ``ganarch.training.fit``, ``ganarch.fused.fit_seeds``, ``ganarch.train``,
``ganarch.train_seeds`` and the search engine.

``RunSettings`` says *how* to train (steps, seeds, device, evaluation points, images per
evaluation, training overrides, the step's options, the progress bar, the exploding-loss
rule); *what* to train (the spec, the data), *where* to write (``out_dir``) and the callbacks
stay arguments of their own. The public functions keep their keyword arguments and build the
settings from them (:func:`settings_from`); ``settings=`` passes one directly.

Example::

    from ganarch import RunSettings, train

    settings = RunSettings(steps=800, seeds=(0,), eval_every=200, n_eval=500)
    result = train(spec, "digits", settings=settings)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from ganarch.errors import GanarchError
from ganarch.stepper import StepOptions

__all__ = [
    "DEFAULT_EVALUATIONS",
    "DEFAULT_N_EVAL",
    "Default",
    "RunSettings",
    "default_eval_every",
    "settings_from",
]

#: Images generated per evaluation.
DEFAULT_N_EVAL = 1000
#: Evaluations in a run when ``eval_every`` is not given.
DEFAULT_EVALUATIONS = 5


def default_eval_every(steps: int) -> int:
    """About ``DEFAULT_EVALUATIONS`` evaluations per run."""
    return max(1, math.ceil(steps / DEFAULT_EVALUATIONS))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunSettings:
    """How a run (or the K seeds of one spec) trains; checked when made.

    :param steps: generator updates (each after ``spec.training.d_steps`` D updates).
    :param seeds: the seeds to train (one for ``fit``/``train``); each seeds the initial
        weights, the batches and the noise of its run.
    :param device: ``None``/``"auto"`` (CUDA, then MPS, then CPU), or a device name.
    :param eval_every: an evaluation point every so many steps (``None``: about
        ``DEFAULT_EVALUATIONS`` per run); the last step is always one.
    :param n_eval: images generated from fixed noise at each evaluation point.
    :param training: overrides of ``spec.training`` (``{"lr_d": 1e-4}``).
    :param options: how the step runs (precision, channels_last, CUDA graph, fused seeds;
        :class:`ganarch.stepper.StepOptions`); ``None``: from the environment at run time.
    :param progress: show a progress bar on stderr.
    :param exploding_loss: a mean loss above this at an evaluation point stops the run
        (``fit``: as diverged). ``ganarch.train`` fills in the stability scorer's
        ``EXPLODING_LOSS`` when it is ``None``; another value there moves only where the
        trainer stops, never the score: the scorer judges divergence by its own threshold
        (``ganarch.score.stability.stability``). ``None`` at the trainer (bare ``fit``)
        means only non-finite values stop a run.
    """

    steps: int = 1000
    seeds: tuple[int, ...] = (0,)
    device: str | torch.device | None = None
    eval_every: int | None = None
    n_eval: int = DEFAULT_N_EVAL
    training: Mapping[str, Any] | None = None
    options: StepOptions | None = None
    progress: bool = True
    exploding_loss: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seeds, int | str) or not isinstance(self.seeds, Sequence):
            raise GanarchError(f"seeds must be a sequence of integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.training is not None:  # a copy: the settings stay what they were made with
            object.__setattr__(self, "training", dict(self.training))
        if not _whole(self.steps) or self.steps < 1:
            raise GanarchError(f"steps must be a positive integer, got {self.steps!r}")
        if not self.seeds:
            raise GanarchError("at least one seed is needed")
        for seed in self.seeds:
            if not _whole(seed):
                raise GanarchError(f"seed must be an integer, got {seed!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise GanarchError(f"seeds must be distinct, got {list(self.seeds)}")
        if not _whole(self.n_eval) or self.n_eval < 6:
            raise GanarchError(f"n_eval must be an integer of at least 6, got {self.n_eval!r}")
        if self.eval_every is not None and (not _whole(self.eval_every) or self.eval_every < 1):
            raise GanarchError(f"eval_every must be a positive integer, got {self.eval_every!r}")
        if self.options is not None and not isinstance(self.options, StepOptions):
            raise GanarchError(f"options must be a StepOptions, got {type(self.options).__name__}")
        loss = self.exploding_loss
        if loss is not None and (
            isinstance(loss, bool)
            or not isinstance(loss, int | float)
            or not math.isfinite(loss)
            or loss <= 0
        ):
            raise GanarchError(f"exploding_loss must be a positive number, got {loss!r}")

    @property
    def seed(self) -> int:
        """The one seed of a single run (``fit``, ``train``)."""
        if len(self.seeds) != 1:
            raise GanarchError(
                f"one run trains one seed, got seeds {list(self.seeds)} (use train_seeds)"
            )
        return self.seeds[0]

    @property
    def every(self) -> int:
        """``eval_every`` resolved: the steps between evaluation points."""
        return self.eval_every if self.eval_every is not None else default_eval_every(self.steps)

    def step_options(self) -> StepOptions:
        """``options``, or the defaults overridden by the environment (``GANARCH_*``)."""
        return self.options if self.options is not None else StepOptions.from_env()

    def for_seed(self, seed: int) -> RunSettings:
        """These settings for one of the seeds."""
        return replace(self, seeds=(seed,))

    def replace(self, **changes: Any) -> RunSettings:
        return replace(self, **changes)


_FIELDS = {f.name for f in fields(RunSettings)}


class Default:
    """A settings keyword's default in the signature of ``fit``, ``fit_seeds``, ``train`` and
    ``train_seeds``: told apart from the same value passed on purpose, so ``seed=0`` together
    with ``settings=`` is refused like any other keyword. Shown as its value in ``help()``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def value(arg: Any) -> Any:
    """A keyword argument's value: a :class:`Default`'s own value, else ``arg`` itself."""
    return arg.value if isinstance(arg, Default) else arg


def settings_from(settings: RunSettings | None, given: Mapping[str, Any]) -> RunSettings:
    """The run's settings: ``settings`` when passed (then every keyword argument in ``given``
    must be left out: one source of truth), else built from ``given``.

    ``given`` maps each settings keyword, by the name the caller's signature uses (``seed``
    for one run, ``seeds`` for several), to what was passed, a :class:`Default` when nothing
    was."""
    if settings is None:
        values = {k: value(v) for k, v in given.items()}
        if "seed" in values:
            values["seeds"] = (values.pop("seed"),)
        return RunSettings(**{k: v for k, v in values.items() if k in _FIELDS})
    if not isinstance(settings, RunSettings):
        raise GanarchError(f"settings must be a RunSettings, got {type(settings).__name__}")
    clash = [k for k, v in given.items() if not isinstance(v, Default)]
    if clash:
        raise GanarchError(
            "pass the run's settings either as settings= or as keyword arguments, not both "
            f"(also given: {', '.join(clash)})"
        )
    return settings
