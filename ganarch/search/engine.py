"""The search's view of the engine: load the dataset once per worker process, keep one
evaluator (its feature network is built once, not per trial), and train a trial's spec with
K paired seeds (the same seeds for every trial, so trials differ only in their choices).

This is the only module of ``ganarch.search`` that knows the trainer's API.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ganarch.data.dataset import DatasetError
from ganarch.data.registry import native_channels
from ganarch.errors import GanarchError, SpecError

__all__ = ["Engine", "free_device_memory", "release"]

OnEval = Callable[[int, Mapping[str, Any]], None]

_EVALUATORS: dict[tuple[Any, ...], Any] = {}


def release() -> None:
    """Drop this process's cached evaluator and datasets (a parent whose workers train)."""
    from ganarch.data.registry import clear_cache

    _EVALUATORS.clear()
    clear_cache()
    free_device_memory()


def free_device_memory() -> None:
    """Return freed CUDA memory to the device (after a trial ran out of it, or on release)."""
    gc.collect()  # tensors in reference cycles, before the CUDA cache is emptied
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Engine:
    """Per-process training context of a search (dataset, device, evaluator)."""

    def __init__(self, settings: Any, space: Any) -> None:
        self.settings = settings
        self.space = space
        self.image_size: int = settings.image_size or space.image_size
        self._channels: int | None = settings.channels
        self._data: Any = None
        self._evaluator: Any = None
        self._device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        if self._device is None:
            from ganarch.device import choose_device

            self._device = choose_device(self.settings.device)
        return self._device

    @property
    def channels(self) -> int:
        if self._channels is None:
            self._channels = native_channels(self.settings.data)
        return self._channels

    def data(self) -> Any:
        """The dataset on the training device (loaded once)."""
        if self._data is None:
            from ganarch.data.registry import load_dataset

            self._data = load_dataset(
                self.settings.data, self.image_size, self.channels, device=self.device
            )
        return self._data

    def evaluator(self) -> Any:
        """One evaluator per (dataset, device) for every trial of this process: its feature
        network and the real images' features are computed once, not per trial."""
        if self._evaluator is None:
            key = (self.settings.data, self.image_size, self.channels, str(self.device))
            evaluator = _EVALUATORS.get(key)
            if evaluator is None:
                from ganarch.score import Evaluator

                evaluator = Evaluator(self.data(), device=self.device)
                _EVALUATORS.clear()  # one dataset per search: keep memory flat
                _EVALUATORS[key] = evaluator
            self._evaluator = evaluator
        return self._evaluator

    def prepare(self) -> None:
        """Check the settings before any trial exists, so bad input is an error (exit 2), not
        a study of failed trials: the space's first point must build at this image size,
        width and latent size; then load the data and build the evaluator."""
        s = self.settings
        try:
            self.space.spec(
                self.space.first_choices(),
                channels=s.channels or 1,  # channels cannot make a template invalid
                image_size=self.image_size,
                width=s.width,
                latent_dim=s.latent_dim,
            )
        except SpecError as exc:
            raise GanarchError(
                f"--image-size/--width: the space's template rejects image size "
                f"{self.image_size}, width {s.width or self.space.width}: {exc}"
            ) from None
        try:
            self.evaluator()
        except DatasetError as exc:
            raise GanarchError(f"--data {s.data}: {exc}") from None

    def train(self, spec: Any, *, out_dir: Path, on_eval: OnEval) -> dict[str, Any]:
        """Train ``spec`` with the search's seeds; ``on_eval(step, record)`` at evaluations.

        With K seeds the reported step is the training done so far in seed-steps, so
        pruners compare trials at equal effort and the pruner's "not before half of
        ``steps * seeds``" means the same both ways. Seeds trained one after another report
        each evaluation of seed i at step s as ``i * steps + s``. Seeds trained fused
        (``ganarch.fused``; the default on CUDA) all reach step s together: they report once
        per evaluation point, as ``K * s``, with the mean of the live seeds' values (a
        per-seed report would put seed K-1 at ``(K-1) * steps + s`` after only s steps of
        training, and prune at a fifth of the budget).
        """
        from ganarch.run import train, train_seeds

        s = self.settings
        common: dict[str, Any] = dict(
            device=self.device,
            out_dir=out_dir,
            overwrite=True,  # the artifacts folder belongs to this study (see artifacts.py)
            evaluator=self.evaluator(),
            eval_every=s.eval_every,
            progress=False,  # the search's live display shows progress
        )
        if s.n_eval is not None:
            common["n_eval"] = s.n_eval
        if s.seeds == 1:
            result = train(spec, self.data(), s.steps, seed=s.seed, on_eval=on_eval, **common)
        else:
            seeds = [s.seed + i for i in range(s.seeds)]

            def relay(effort: int, records: list[tuple[int, Mapping[str, Any]]]) -> None:
                on_eval(effort, _mean_record([r for _, r in records]))

            result = train_seeds(spec, self.data(), s.steps, seeds=seeds, on_point=relay, **common)
            if not (Path(out_dir) / "spec.json").exists():
                spec.save(Path(out_dir) / "spec.json")
        return {
            "quality": result.quality,
            "stability": result.stability,
            "objective": result.objective,
            "metrics": dict(result.metrics),
            "stability_components": dict(result.get("stability_components") or {}),
            "diverged": bool(result.diverged),
            "failure": result.get("failure"),
            "engine": dict(result.get("engine") or {}),
            # each seed's own objective, in seed order: a designed study's paired replicates
            "seed_objectives": [r.objective for r in getattr(result, "results", [result])],
        }


def _mean_record(records: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """One evaluation point's record for the pruner and the live display: the last seed's,
    with the scores (and the metrics every seed has) averaged over the seeds evaluated."""
    if len(records) == 1:
        return records[0]
    out = dict(records[-1])
    for key in ("quality", "stability", "objective"):
        values = [float(r[key]) for r in records if r.get(key) is not None]
        if len(values) == len(records):
            out[key] = sum(values) / len(values)
    metrics = [r.get("metrics") or {} for r in records]
    out["metrics"] = {
        k: sum(float(m[k]) for m in metrics) / len(metrics)
        for k, v in metrics[-1].items()
        if all(
            isinstance(m.get(k), int | float) and not isinstance(m.get(k), bool) for m in metrics
        )
    }
    return out
