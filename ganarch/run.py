"""Train one spec and score it: the GAN loop (``ganarch.training``) plus the scorer.

``train(spec, data="digits", steps=1000, seed=0)`` returns a :class:`TrainResult` with the
trained networks, the final metrics, quality, stability and the single objective; with
``out_dir`` it also writes a run directory (spec, metrics, sample grids, curves, checkpoints).
``train_seeds`` trains several seeds of one spec and combines them.

The loop hands each evaluation's samples to a ``ganarch.score.Evaluator``; this module turns
the history into stability (``ganarch.score.stability``) and the objective
(``ganarch.score.objective``), and keeps ``metrics.json`` current after every evaluation, so
a run stopped in ``on_eval`` (a pruned trial) leaves its history so far.

How a run trains is one :class:`ganarch.settings.RunSettings` (``settings=``, or built from
the keyword arguments); the exploding-loss threshold in it is the stability scorer's
(``ganarch.score.stability.EXPLODING_LOSS``). Both results are a :class:`Scored`: the one
type a search's trial records its outcome from.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ganarch import artifacts
from ganarch._version import __version__
from ganarch.builder import Discriminator, GANSpec, Generator
from ganarch.device import choose_device
from ganarch.errors import GanarchError
from ganarch.fused import SeedHooks, fit_seeds
from ganarch.score.objective import objective as combine_objective
from ganarch.score.stability import EXPLODING_LOSS, aggregate_seeds, stability
from ganarch.settings import (
    DEFAULT_N_EVAL,
    Default,
    RunSettings,
    default_eval_every,
    settings_from,
    value,
)
from ganarch.stepper import StepOptions
from ganarch.training import FitContext, FitResult, fit, resolve_data, resolve_spec

__all__ = [
    "RunSettings",
    "Scored",
    "SeedsResult",
    "TrainResult",
    "default_eval_every",
    "scored_settings",
    "train",
    "train_seeds",
]

OnEval = Callable[[int, Mapping[str, Any]], None]
OnPoint = Callable[[int, list[tuple[int, Mapping[str, Any]]]], None]


class _ReadsLikeADict:
    """``result["objective"]`` and ``result.get("failure")`` as well as attribute access, so
    code written against plain metric dicts keeps working."""

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


@dataclass
class Scored(_ReadsLikeADict):
    """A scored outcome: what every result of this module carries, and the one type a
    search's trial records its user attributes from (``ganarch.search.objective``).

    ``metrics`` are the evaluator's (FID, KID, precision, recall, ...); ``stability_components``
    every stability component with the combined ``stability_components["stability"]``;
    ``failure`` why a run diverged (``None`` otherwise); ``engine`` how the step ran.
    """

    quality: float
    stability: float
    stability_components: dict[str, Any]
    objective: float
    diverged: bool
    failure: str | None
    metrics: dict[str, Any]
    engine: dict[str, Any]

    @property
    def seed_objectives(self) -> list[float]:
        """Each seed's own objective, in seed order (one here)."""
        return [self.objective]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Scored:
        """The scores in a mapping of these fields: an evaluation point's ``on_eval``
        record (what a run stopped there, a pruned trial, had so far) or a result in mapping
        form; ``None`` where a score is missing."""
        return cls(
            quality=record.get("quality"),
            stability=record.get("stability"),
            stability_components=dict(record.get("stability_components") or {}),
            objective=record.get("objective"),
            diverged=bool(record.get("diverged", False)),
            failure=record.get("failure"),
            metrics=dict(record.get("metrics") or {}),
            engine=dict(record.get("engine") or {}),
        )


@dataclass
class TrainResult(Scored):
    """What a training run produced.

    ``metrics`` are the final evaluation's metrics (FID, KID, precision, recall, ...);
    ``stability`` is the combined stability score and ``stability_components`` every
    component (with the combined one under ``"stability"``); ``history`` has one record per evaluation (step, losses, D(x), D(G(z)), quality, metrics).
    ``result["objective"]`` works too (mapping-style access to the same fields).
    """

    spec: GANSpec
    generator: Generator
    discriminator: Discriminator
    history: list[dict[str, Any]]
    seed: int
    steps: int  # steps asked for
    steps_done: int
    device: str
    seconds: float
    data: str
    out_dir: Path | None = None

    def summary(self) -> dict[str, Any]:
        """Plain data (what ``metrics.json`` holds, without the history and versions)."""
        return {
            "objective": self.objective,
            "quality": self.quality,
            "stability": self.stability,
            "diverged": self.diverged,
            "failure": self.failure,
            "metrics": self.metrics,
            "stability_components": self.stability_components,
            "seed": self.seed,
            "steps": self.steps,
            "steps_done": self.steps_done,
            "device": self.device,
            "data": self.data,
            "seconds": self.seconds,
            "engine": self.engine,
            "out_dir": str(self.out_dir) if self.out_dir else None,
        }


@dataclass
class SeedsResult(Scored):
    """Several seeds of one spec: the runs, and quality/stability/objective across them
    (``metrics``: each metric's mean over the seeds that did not diverge)."""

    results: list[TrainResult] = field(default_factory=list)

    @property
    def seed_objectives(self) -> list[float]:
        """Each seed's own objective, in seed order: a designed study's paired replicates."""
        return [r.objective for r in self.results]

    def summary(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "quality": self.quality,
            "stability": self.stability,
            "diverged": self.diverged,
            "metrics": self.metrics,
            "stability_components": self.stability_components,
            "engine": self.engine,
            "seeds": [r.seed for r in self.results],
            "runs": [r.summary() for r in self.results],
        }


# --- the pieces --------------------------------------------------------------------------------


def _make_evaluator(dataset: Any, device: torch.device):
    from ganarch.score import Evaluator

    return Evaluator(dataset, device=device)


def _score(evaluator: Any, images: torch.Tensor) -> tuple[dict[str, Any], float]:
    metrics = dict(evaluator.evaluate(images))
    q = metrics.get("quality")
    if q is None:
        q = evaluator.quality(metrics)
    q = float(q)
    metrics["quality"] = q
    return metrics, q


def _versions() -> dict[str, str]:
    return {
        "ganarch": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _metrics_file(
    spec: GANSpec, summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]], finished: bool
) -> dict[str, Any]:
    """What ``metrics.json`` holds: the summary, the training settings, versions, history."""
    return {
        "finished": finished,
        **summary,
        "training": spec.training.to_dict(),
        "versions": _versions(),
        "history": list(history),
    }


def _unscored(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record of the evaluation point where the run diverged: no quality was measured."""
    rest = {k: v for k, v in record.items() if k != "failure"}
    return {**rest, "quality": None, "failure": record["failure"]}


# --- one run -----------------------------------------------------------------------------------


class _Scoring:
    """One seed's scoring around the trainer: ``fit``'s ``prepare``/``evaluate``/``after_eval``
    (the evaluator, ``metrics.json`` kept current, ``on_eval``) and the final result."""

    def __init__(self, seed: int, steps: int, evaluator: Any, on_eval: OnEval | None) -> None:
        self.seed, self.steps = seed, steps
        self.evaluator, self.on_eval = evaluator, on_eval
        self.metrics: dict[str, Any] = {}
        self.quality = 0.0
        self.ctx: FitContext | None = None

    def hooks(self) -> SeedHooks:
        return SeedHooks(self.prepare, self.evaluate, self.after_eval)

    def prepare(self, ctx: FitContext) -> None:
        self.ctx = ctx
        if self.evaluator is None:
            self.evaluator = _make_evaluator(ctx.dataset, ctx.device)

    def evaluate(self, step: int, samples: torch.Tensor) -> dict[str, Any]:
        self.metrics, self.quality = _score(self.evaluator, samples)
        return {"quality": self.quality, "metrics": self.metrics}

    def after_eval(self, step: int, history: list[dict[str, Any]]) -> None:
        ctx = self.ctx
        assert ctx is not None  # prepare runs first
        stab = stability(history)
        obj = combine_objective(self.quality, stab["stability"])
        if ctx.out_dir is not None:
            # metrics.json so far, so a run stopped in ``on_eval`` (pruned) keeps its history
            summary = {
                "objective": obj,
                "quality": self.quality,
                "stability": stab["stability"],
                "diverged": False,
                "failure": None,
                "metrics": self.metrics,
                "stability_components": stab,
                "seed": self.seed,
                "steps": self.steps,
                "steps_done": step,
                "device": str(ctx.device),
                "data": ctx.data,
                "seconds": time.perf_counter() - ctx.started,
            }
            artifacts.write_json(
                ctx.out_dir / "metrics.json", _metrics_file(ctx.spec, summary, history, False)
            )
        if self.on_eval is not None:
            record = {k: v for k, v in history[-1].items() if k != "metrics"}
            self.on_eval(
                step,
                {
                    **record,
                    "stability": stab["stability"],
                    "objective": obj,
                    "metrics": self.metrics,
                },
            )

    def finish(self, fitted: FitResult) -> TrainResult:
        """The scored result of the run; writes the final ``metrics.json``."""
        history = fitted.history
        if history and "failure" in history[-1]:
            history[-1] = _unscored(history[-1])
        # diverged or not is the scorer's rule, whatever threshold stopped the trainer
        stab = stability(history, diverged=fitted.diverged)
        diverged = stab["diverged"]
        quality = 0.0 if diverged else self.quality
        result = TrainResult(
            spec=fitted.spec,
            generator=fitted.generator,
            discriminator=fitted.discriminator,
            metrics=self.metrics if not diverged else {},
            quality=quality,
            stability=stab["stability"],
            stability_components=stab,
            objective=combine_objective(quality, stab["stability"], diverged=diverged),
            diverged=diverged,
            failure=stab["failure"],
            history=history,
            seed=fitted.seed,
            steps=fitted.steps,
            steps_done=fitted.steps_done,
            device=fitted.device,
            seconds=fitted.seconds,
            data=fitted.data,
            out_dir=fitted.out_dir,
            engine=dict(fitted.engine),
        )
        if fitted.out_dir is not None:
            summary = result.summary()
            summary.pop("out_dir")
            artifacts.write_json(
                fitted.out_dir / "metrics.json",
                _metrics_file(result.spec, summary, result.history, True),
            )
        return result


def train(
    spec: GANSpec | str | Path,
    data: Any = "digits",
    steps: int = Default(1000),
    *,
    seed: int = Default(0),
    device: str | torch.device | None = Default(None),
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    eval_every: int | None = Default(None),
    evaluator: Any = None,
    on_eval: OnEval | None = None,
    progress: bool = Default(True),
    training: Mapping[str, Any] | None = Default(None),
    n_eval: int = Default(DEFAULT_N_EVAL),
    options: StepOptions | None = Default(None),
    settings: RunSettings | None = None,
) -> TrainResult:
    """Train ``spec`` on ``data`` for ``steps`` generator updates and score it.

    :param spec: a ``GANSpec`` or the path of a spec file.
    :param data: a dataset reference (``"digits"``, ``"shapes:2048"``, ...) or an
        ``ImageDataset`` of the spec's image size and channels.
    :param steps: generator updates (each after ``spec.training.d_steps`` D updates).
    :param seed: seeds the initial weights, the batches and the noise.
    :param device: ``None``/``"auto"`` (CUDA, then MPS, then CPU), or a device name.
    :param out_dir: write the run directory here (refused when it is a non-empty directory,
        unless ``overwrite``).
    :param eval_every: evaluate every so many steps (default: 5 evaluations per run); the
        last step is always evaluated.
    :param evaluator: a ``ganarch.score.Evaluator`` for this dataset and device, to reuse its
        feature network across runs (built here when ``None``).
    :param on_eval: called as ``on_eval(step, record)`` after each evaluation, where
        ``record`` holds ``quality``, ``stability`` and ``objective`` so far, the losses,
        ``d_real``, ``d_fake`` and the evaluator's ``metrics``. Its exceptions propagate
        (a search raises ``optuna.TrialPruned`` there).
    :param progress: show a progress bar on stderr (default on).
    :param training: overrides of ``spec.training`` (``{"lr_d": 1e-4}``); the result's spec
        and the saved ``spec.json`` carry the settings actually used.
    :param n_eval: images generated per evaluation (fewer is faster, noisier).
    :param options: how the step runs (``ganarch.stepper.StepOptions``: precision, CUDA
        graph); default from the environment. ``result.engine`` records how it ran.
    :param settings: ``steps``, ``seed``, ``device``, ``eval_every``, ``n_eval``,
        ``progress``, ``training`` and ``options`` as one :class:`RunSettings` (one seed);
        those keyword arguments must then be left out. The same settings give the same
        result bit for bit on the CPU, whichever way they are passed.

    A run whose losses become NaN/inf or explode (above the stability scorer's
    ``EXPLODING_LOSS``) stops early and is reported with ``diverged=True``, stability 0 and
    objective 0; it does not raise. ``settings=RunSettings(exploding_loss=X)`` changes only
    where the trainer *stops*, never how the run is scored: the scorer applies its own
    ``EXPLODING_LOSS`` to the history, so with a looser X a loss above ``EXPLODING_LOSS`` is
    still diverged, and with a stricter X a run stopped at losses the scorer does not call
    exploding is not diverged; it is scored from its evaluations so far (its last history
    record, where it stopped, has no quality and names the stop in ``failure``).

    Example::

        import ganarch

        result = ganarch.train(ganarch.dcgan_spec(32, 1, width=32), "digits", steps=800)
        result.objective, result.metrics["fid"]
    """
    given = dict(
        steps=steps,
        seed=seed,
        device=device,
        eval_every=eval_every,
        n_eval=n_eval,
        progress=progress,
        training=training,
        options=options,
    )
    settings = scored_settings(settings_from(settings, given))
    scoring = _Scoring(settings.seed, settings.steps, evaluator, on_eval)
    fitted = fit(
        spec,
        data,
        out_dir=out_dir,
        overwrite=overwrite,
        prepare=scoring.prepare,
        evaluate=scoring.evaluate,
        after_eval=scoring.after_eval,
        settings=settings,
    )
    return scoring.finish(fitted)


def scored_settings(settings: RunSettings) -> RunSettings:
    """``settings`` with the stability scorer's exploding-loss threshold where none is set: a
    run stops exactly where ``ganarch.score.stability`` would call it diverged. (Another
    threshold moves only the stop; the scorer still judges the history by its own.)"""
    if settings.exploding_loss is not None:
        return settings
    return settings.replace(exploding_loss=EXPLODING_LOSS)


# --- several seeds -----------------------------------------------------------------------------


def train_seeds(
    spec: GANSpec | str | Path,
    data: Any = "digits",
    steps: int = Default(1000),
    *,
    seeds: Sequence[int] = Default((0, 1, 2)),
    device: str | torch.device | None = Default(None),
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    evaluator: Any = None,
    on_eval: Callable[[int, int, Mapping[str, Any]], None] | None = None,
    progress: bool = Default(True),
    training: Mapping[str, Any] | None = Default(None),
    eval_every: int | None = Default(None),
    n_eval: int = Default(DEFAULT_N_EVAL),
    options: StepOptions | None = Default(None),
    on_point: OnPoint | None = None,
    settings: RunSettings | None = None,
) -> SeedsResult:
    """Train ``spec`` once per seed and combine: quality is the mean final quality,
    stability adds the spread across seeds (see ``ganarch.score.stability.aggregate_seeds``).

    Runs go to ``out_dir/seed-{S}``; ``out_dir/metrics.json`` holds the combined scores.
    ``on_eval(seed, step, record)`` is called after each evaluation of each seed.
    ``on_point(effort, [(seed, record), ...])`` once per evaluation point, with the records
    of the seeds evaluated there and the training done so far in seed-steps (see
    ``fit_seeds``'s ``after_point``): all live seeds at one step when fused, one seed when
    sequential. A search reports to its pruner here, so both ways prune alike.

    Where the spec allows (and by default on CUDA) the seeds train as one fused network
    (``ganarch.fused``), each with its own weights, statistics, optimizer state and data
    order, and are evaluated in seed order at each evaluation point; otherwise one after
    another. ``result.engine`` says which and why.

    ``settings`` (a :class:`RunSettings` naming every seed) replaces the keyword arguments
    ``steps``, ``seeds``, ``device``, ``eval_every``, ``n_eval``, ``progress``, ``training``
    and ``options``.
    """
    if settings is None:
        seeds = list(value(seeds))
        if not seeds:
            raise GanarchError("train_seeds needs at least one seed")
        if len(set(seeds)) != len(seeds):
            raise GanarchError(f"seeds must be distinct, got {seeds}")
    given = dict(
        steps=steps,
        seeds=seeds,
        device=device,
        eval_every=eval_every,
        n_eval=n_eval,
        progress=progress,
        training=training,
        options=options,
    )
    settings = scored_settings(settings_from(settings, given))
    seeds, steps = list(settings.seeds), settings.steps
    dev = choose_device(settings.device)
    spec = resolve_spec(spec, settings.training)
    root = artifacts.prepare_run_dir(out_dir, overwrite) if out_dir is not None else None
    dataset, data_name = resolve_data(data, spec, dev)
    if evaluator is None:
        evaluator = _make_evaluator(dataset, dev)
    point: list[tuple[int, Mapping[str, Any]]] = []  # this evaluation point's records

    def seed_eval(seed: int, step: int, record: Mapping[str, Any]) -> None:
        if on_eval is not None:
            on_eval(seed, step, record)
        if on_point is not None:
            point.append((seed, record))

    def after_point(effort: int) -> None:
        if on_point is not None and point:
            records = list(point)
            point.clear()
            on_point(effort, records)

    scorings = []
    for s in seeds:
        scorings.append(
            _Scoring(s, steps, evaluator, lambda step, rec, _s=s: seed_eval(_s, step, rec))
        )
    fitted = fit_seeds(
        spec,
        dataset,
        out_dirs=[root / f"seed-{s}" if root is not None else None for s in seeds],
        overwrite=overwrite,
        hooks=[sc.hooks() for sc in scorings],
        after_point=after_point,
        settings=settings.replace(device=dev, training=None),  # applied to ``spec`` above
    )
    results = [sc.finish(f) for sc, f in zip(scorings, fitted, strict=True)]
    agg = aggregate_seeds([{**r.stability_components, "quality": r.quality} for r in results])
    obj = combine_objective(agg["quality"], agg["stability"], diverged=agg["diverged"])
    metrics = _mean_metrics([r.metrics for r in results if not r.diverged])
    combined = SeedsResult(
        results=results,
        quality=agg["quality"],
        stability=agg["stability"],
        stability_components=agg,
        objective=obj,
        diverged=agg["diverged"],
        failure=None,  # each seed's own is in ``results``
        metrics=metrics,
        engine=dict(results[0].engine),
    )
    if root is not None:
        artifacts.write_json(
            root / "metrics.json",
            {**combined.summary(), "data": data_name, "steps": steps, "versions": _versions()},
        )
    return combined


def _mean_metrics(all_metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean of each numeric metric over runs (``None`` when no run has it)."""
    keys = {k for m in all_metrics for k, v in m.items() if isinstance(v, int | float)}
    out: dict[str, Any] = {}
    for k in sorted(keys):
        vals = [float(m[k]) for m in all_metrics if isinstance(m.get(k), int | float)]
        vals = [v for v in vals if math.isfinite(v)]
        out[k] = sum(vals) / len(vals) if vals else None
    return out
