"""The search's view of the engine: load the dataset once per worker process, keep one
evaluator (its feature network is built once, not per trial), and train a trial's spec with
K paired seeds (the same seeds for every trial, so trials differ only in their choices).

This is the only module of ``ganarch.search`` that knows the trainer's API: it builds the
trainer's ``RunSettings`` once from the search's settings, trains at the search's one
``Geometry`` and hands back the trainer's result type (``ganarch.run.Scored``) as it is.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ganarch.data.dataset import DatasetError
from ganarch.errors import GanarchError, SpecError
from ganarch.search.geometry import Geometry

if TYPE_CHECKING:
    from ganarch.run import Scored
    from ganarch.settings import RunSettings

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
    """Per-process training context of a search (dataset, device, evaluator).

    ``geometry`` is the search's (``SearchConfig.geometry``); resolved here from ``settings``
    and ``space`` only when none is handed in (an engine made on its own)."""

    def __init__(self, settings: Any, space: Any, geometry: Geometry | None = None) -> None:
        self.settings = settings
        self.space = space
        self._geometry = geometry
        self._data: Any = None
        self._evaluator: Any = None
        self._device: torch.device | None = None
        self._run_settings: RunSettings | None = None

    @property
    def geometry(self) -> Geometry:
        if self._geometry is None:
            self._geometry = Geometry.resolve(self.settings, self.space)
        return self._geometry

    @property
    def image_size(self) -> int:
        return self.geometry.image_size

    @property
    def device(self) -> torch.device:
        if self._device is None:
            from ganarch.device import choose_device

            self._device = choose_device(self.settings.device)
        return self._device

    @property
    def channels(self) -> int:
        return self.geometry.channels

    def run_settings(self) -> RunSettings:
        """How every trial trains (the trainer's ``RunSettings``, made once): the search's
        steps, its K paired seeds (``seed``, ``seed + 1``, ...), device and evaluation
        points, no progress bar (the search's live display shows progress)."""
        if self._run_settings is None:
            from ganarch.settings import RunSettings

            s = self.settings
            extra = {"n_eval": s.n_eval} if s.n_eval is not None else {}
            self._run_settings = RunSettings(
                steps=s.steps,
                seeds=tuple(s.seed + i for i in range(s.seeds)),
                device=self.device,
                eval_every=s.eval_every,
                progress=False,
                **extra,
            )
        return self._run_settings

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
        s, geometry = self.settings, self.geometry
        try:
            geometry.spec(self.space, self.space.first_choices())
        except SpecError as exc:
            raise GanarchError(
                f"--image-size/--width: the space's template rejects image size "
                f"{geometry.image_size}, width {geometry.width}: {exc}"
            ) from None
        try:
            self.evaluator()
        except DatasetError as exc:
            raise GanarchError(f"--data {s.data}: {exc}") from None

    def train(self, spec: Any, *, out_dir: Path, on_eval: OnEval) -> Scored:
        """Train ``spec`` with the search's seeds; ``on_eval(step, record)`` at evaluations.
        Returns the trainer's own result (``TrainResult`` for one seed, ``SeedsResult`` for
        several: both a ``ganarch.run.Scored``).

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

        settings = self.run_settings()
        where: dict[str, Any] = dict(
            out_dir=out_dir,
            overwrite=True,  # the artifacts folder belongs to this study (see artifacts.py)
            evaluator=self.evaluator(),
            settings=settings,
        )
        if len(settings.seeds) == 1:
            return train(spec, self.data(), on_eval=on_eval, **where)

        def relay(effort: int, records: list[tuple[int, Mapping[str, Any]]]) -> None:
            on_eval(effort, _mean_record([r for _, r in records]))

        result = train_seeds(spec, self.data(), on_point=relay, **where)
        if not (Path(out_dir) / "spec.json").exists():
            spec.save(Path(out_dir) / "spec.json")
        return result


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
