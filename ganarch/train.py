"""The GAN loop: train a spec's generator and discriminator on a dataset, score the result.

``train(spec, data="digits", steps=1000, seed=0)`` returns a :class:`TrainResult` with the
trained networks, the final metrics, quality, stability and the single objective; with
``out_dir`` it also writes a run directory (spec, metrics, sample grids, curves, checkpoints).

The loss is the paper's non-saturating GAN loss computed from logits (a final sigmoid in D
is folded into ``BCEWithLogits``: same math, safe under bf16); real and fake batches pass
through D separately. The dataset is one tensor on the device and batches are drawn by
index from a generator seeded with ``seed``, so a CPU run is reproducible bit for bit.
On CUDA the step loop never waits for the GPU: running sums stay on the device and are read
only at evaluation points, where NaN/inf and exploding losses are detected too.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import ganarch
from ganarch import artifacts
from ganarch.builder import Discriminator, Generator
from ganarch.device import choose_device
from ganarch.errors import GanarchError
from ganarch.score.objective import objective as combine_objective
from ganarch.score.stability import EXPLODING_LOSS, aggregate_seeds, stability
from ganarch.spec import GANSpec, load_spec

__all__ = ["SeedsResult", "TrainResult", "default_eval_every", "train", "train_seeds"]

#: Size of the fixed-noise sample grid (8 × 8).
GRID_SAMPLES = 64
#: Images generated per evaluation.
DEFAULT_N_EVAL = 1000
#: Evaluations in a run when ``eval_every`` is not given.
DEFAULT_EVALUATIONS = 5

OnEval = Callable[[int, Mapping[str, Any]], None]


@dataclass
class TrainResult:
    """What a training run produced.

    ``metrics`` are the final evaluation's metrics (FID, KID, precision, recall, ...);
    ``stability`` holds every stability component and the combined ``stability["stability"]``;
    ``history`` has one record per evaluation (step, losses, D(x), D(G(z)), quality, metrics).
    ``result["objective"]`` works too (mapping-style access to the same fields).
    """

    spec: GANSpec
    generator: Generator
    discriminator: Discriminator
    metrics: dict[str, Any]
    quality: float
    stability: float
    stability_components: dict[str, Any]
    objective: float
    diverged: bool
    failure: str | None
    history: list[dict[str, Any]]
    seed: int
    steps: int  # steps asked for
    steps_done: int
    device: str
    seconds: float
    data: str
    out_dir: Path | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

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
            "out_dir": str(self.out_dir) if self.out_dir else None,
        }


@dataclass
class SeedsResult:
    """Several seeds of one spec: the runs, and quality/stability/objective across them."""

    results: list[TrainResult]
    quality: float
    stability: float
    stability_components: dict[str, Any]
    objective: float
    diverged: bool
    metrics: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def summary(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "quality": self.quality,
            "stability": self.stability,
            "diverged": self.diverged,
            "metrics": self.metrics,
            "stability_components": self.stability_components,
            "seeds": [r.seed for r in self.results],
            "runs": [r.summary() for r in self.results],
        }


def default_eval_every(steps: int) -> int:
    """About ``DEFAULT_EVALUATIONS`` evaluations per run."""
    return max(1, math.ceil(steps / DEFAULT_EVALUATIONS))


# --- the pieces --------------------------------------------------------------------------------


def _resolve_spec(spec: GANSpec | str | Path, training: Mapping[str, Any] | None) -> GANSpec:
    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    if not isinstance(spec, GANSpec):
        raise GanarchError(f"train needs a GANSpec or a spec file, got {type(spec).__name__}")
    if training:
        spec = spec.replace(training=dict(training))
    return spec


def _resolve_data(data: Any, spec: GANSpec, device: torch.device):
    if isinstance(data, str):
        from ganarch.data import load_dataset

        return load_dataset(data, spec.image_size, spec.channels, device=device), data
    images = getattr(data, "images", None)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise GanarchError(
            f"data must be a dataset name or an ImageDataset, got {type(data).__name__}"
        )
    want = (spec.channels, spec.image_size, spec.image_size)
    if tuple(images.shape[1:]) != want:
        raise GanarchError(
            f"the dataset's images are {'×'.join(map(str, images.shape[1:]))} but the spec "
            f"makes {'×'.join(map(str, want))}"
        )
    name = str(getattr(data, "name", "") or "dataset")
    return (data.to(device) if hasattr(data, "to") else data), name


def _make_evaluator(dataset: Any, device: torch.device):
    from ganarch.score import Evaluator

    return Evaluator(dataset, device=device)


@torch.no_grad()
def _generate(G: Generator, z: torch.Tensor, batch: int, autocast) -> torch.Tensor:
    """Images for noise ``z`` as float32, in batches, with G in eval mode (norm layers use
    their running statistics, as ``Evaluator.evaluate_generator`` does); G's mode is restored."""
    was_training = G.training
    G.eval()
    try:
        out = []
        for chunk in z.split(batch):
            with autocast():
                out.append(G(chunk).float())
        return torch.cat(out)
    finally:
        G.train(was_training)


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
        "ganarch": ganarch.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


class _Progress:
    """A rich progress bar on stderr (or nothing)."""

    def __init__(self, enabled: bool, steps: int, label: str) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.bar.add_task(label, total=steps, info="")
        self.bar.start()

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def info(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, info=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --- the loop ----------------------------------------------------------------------------------


def train(
    spec: GANSpec | str | Path,
    data: Any = "digits",
    steps: int = 1000,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    eval_every: int | None = None,
    evaluator: Any = None,
    on_eval: OnEval | None = None,
    progress: bool = True,
    training: Mapping[str, Any] | None = None,
    n_eval: int = DEFAULT_N_EVAL,
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

    A run whose losses become NaN/inf or explode stops early and is reported with
    ``diverged=True``, stability 0 and objective 0; it does not raise.

    Example::

        from ganarch.train import train

        result = train(dcgan_spec(32, 1, width=32), "digits", steps=800)
        result.objective, result.metrics["fid"]
    """
    t0 = time.perf_counter()
    spec = _resolve_spec(spec, training)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise GanarchError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise GanarchError(f"seed must be an integer, got {seed!r}")
    if isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 6:
        raise GanarchError(f"n_eval must be an integer of at least 6, got {n_eval!r}")
    if eval_every is None:
        eval_every = default_eval_every(steps)
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise GanarchError(f"eval_every must be a positive integer, got {eval_every!r}")
    dev = choose_device(device)
    dataset, data_name = _resolve_data(data, spec, dev)
    cuda = dev.type == "cuda"
    tr = spec.training
    torch.manual_seed(seed)  # the initial weights
    G, D = spec.build(init=True)  # before any file is written: a bad spec leaves no run dir
    G.to(dev).train()
    D.to(dev).train()

    out = artifacts.prepare_run_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        spec.save(out / "spec.json")
    if evaluator is None:
        evaluator = _make_evaluator(dataset, dev)
    # Seeded again so any random op inside a plugin block (dropout, noise) sees the same
    # stream whether the evaluator was built here or passed in.
    torch.manual_seed(seed)
    images = dataset.images
    if cuda:
        torch.backends.cudnn.benchmark = True
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def autocast():
        if cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    fused = {"fused": True} if cuda else {}  # one kernel per step on the GPU
    opt_g = torch.optim.Adam(G.parameters(), lr=tr.lr_g, betas=(tr.beta1, tr.beta2), **fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=tr.lr_d, betas=(tr.beta1, tr.beta2), **fused)

    gen = torch.Generator(device=dev).manual_seed(seed)  # batches and training noise
    # Evaluation noise comes from its own CPU generator: the same on every device, and
    # evaluating never shifts the training stream.
    eval_gen = torch.Generator().manual_seed(seed)
    grid_z = torch.randn(GRID_SAMPLES, spec.latent_dim, generator=eval_gen).to(dev)
    eval_z = torch.randn(n_eval, spec.latent_dim, generator=eval_gen).to(dev)

    n_images = images.shape[0]
    bs = tr.batch_size
    ones = torch.ones(bs, device=dev)
    zeros = torch.zeros(bs, device=dev)
    # Running sums since the last evaluation, on the device (no sync in the loop).
    sums = torch.zeros(4, device=dev)  # loss_d, loss_g, d_real, d_fake
    count = 0

    history: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    quality = 0.0
    failure: str | None = None
    step = 0
    bar = _Progress(progress, steps, f"train {data_name}")

    def write_partial() -> None:
        """metrics.json so far, so a run stopped in ``on_eval`` (pruned) keeps its history."""
        stab = stability(history)
        summary = {
            "objective": combine_objective(quality, stab["stability"]),
            "quality": quality,
            "stability": stab["stability"],
            "diverged": False,
            "failure": None,
            "metrics": metrics,
            "stability_components": stab,
            "seed": seed,
            "steps": steps,
            "steps_done": step,
            "device": str(dev),
            "data": data_name,
            "seconds": time.perf_counter() - t0,
        }
        artifacts.write_json(out / "metrics.json", _metrics_file(spec, summary, history, False))

    try:
        for step in range(1, steps + 1):
            for _ in range(tr.d_steps):
                idx = torch.randint(n_images, (bs,), device=dev, generator=gen)
                real = images[idx]
                z = torch.randn(bs, spec.latent_dim, device=dev, generator=gen)
                with autocast():
                    fake = G(z)
                    logit_real = D.logits(real).float()
                    logit_fake = D.logits(fake.detach()).float()
                loss_d = F.binary_cross_entropy_with_logits(
                    logit_real, ones
                ) + F.binary_cross_entropy_with_logits(logit_fake, zeros)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
            with autocast():
                logit_g = D.logits(fake).float()
            loss_g = F.binary_cross_entropy_with_logits(logit_g, ones)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

            with torch.no_grad():
                sums += torch.stack(
                    (
                        loss_d.detach(),
                        loss_g.detach(),
                        torch.sigmoid(logit_real.detach()).mean(),
                        torch.sigmoid(logit_fake.detach()).mean(),
                    )
                )
            count += 1
            bar.advance()

            if step % eval_every and step != steps:
                continue
            # -- evaluation point: the only place the loop reads device values --------------
            loss_d_m, loss_g_m, d_real_m, d_fake_m = (sums / count).tolist()
            sums.zero_()
            count = 0
            record: dict[str, Any] = {
                "step": step,
                "loss_d": loss_d_m,
                "loss_g": loss_g_m,
                "d_real": d_real_m,
                "d_fake": d_fake_m,
            }
            if not all(math.isfinite(v) for v in (loss_d_m, loss_g_m, d_real_m, d_fake_m)):
                failure = "nan"
            elif max(loss_d_m, loss_g_m) > EXPLODING_LOSS:
                failure = "exploding loss"
            if failure is not None:
                record.update(quality=None, failure=failure)
                history.append(record)
                break
            samples = _generate(G, eval_z, max(bs, 256), autocast)
            if not bool(torch.isfinite(samples).all()):
                failure = "nan"
                record.update(quality=None, failure=failure)
                history.append(record)
                break
            metrics, quality = _score(evaluator, samples)
            record["quality"] = quality
            history.append(record)
            stab = stability(history)
            record_out = {
                **record,
                "stability": stab["stability"],
                "objective": combine_objective(quality, stab["stability"]),
                "metrics": metrics,
            }
            history[-1] = {**record, "metrics": metrics}
            bar.info(f"D {loss_d_m:.3f}  G {loss_g_m:.3f}  quality {quality:.3f}")
            if out is not None:
                artifacts.save_grid(
                    _generate(G, grid_z, GRID_SAMPLES, autocast), out / f"samples_step{step}.png"
                )
                write_partial()
            if on_eval is not None:
                on_eval(step, record_out)
    finally:
        bar.close()

    # A final check on the weights: a NaN may hide in the networks after the last evaluation.
    if failure is None and not all(
        bool(torch.isfinite(p).all()) for p in (*G.parameters(), *D.parameters())
    ):
        failure = "nan"
    diverged = failure is not None
    stab = stability(history, diverged=diverged)
    if diverged:
        stab["failure"] = failure
        quality = 0.0
    obj = combine_objective(quality, stab["stability"], diverged=diverged)
    seconds = time.perf_counter() - t0

    result = TrainResult(
        spec=spec,
        generator=G,
        discriminator=D,
        metrics=metrics if not diverged else {},
        quality=quality,
        stability=stab["stability"],
        stability_components=stab,
        objective=obj,
        diverged=diverged,
        failure=failure,
        history=history,
        seed=seed,
        steps=steps,
        steps_done=step,
        device=str(dev),
        seconds=seconds,
        data=data_name,
        out_dir=out,
    )
    if out is not None:
        _write_run(result, out, autocast, grid_z)
    return result


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


def _write_run(result: TrainResult, out: Path, autocast, grid_z: torch.Tensor) -> None:
    G = result.generator
    artifacts.save_grid(_generate(G, grid_z, GRID_SAMPLES, autocast), out / "samples.png")
    artifacts.save_curves(
        result.history,
        out / "curves.png",
        title=f"{result.data} · seed {result.seed} · {result.steps_done} steps",
    )
    artifacts.save_state_dict(G, out / "generator.pt")
    artifacts.save_state_dict(result.discriminator, out / "discriminator.pt")
    summary = result.summary()
    summary.pop("out_dir")
    artifacts.write_json(
        out / "metrics.json", _metrics_file(result.spec, summary, result.history, True)
    )


# --- several seeds -----------------------------------------------------------------------------


def train_seeds(
    spec: GANSpec | str | Path,
    data: Any = "digits",
    steps: int = 1000,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    device: str | torch.device | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    evaluator: Any = None,
    on_eval: Callable[[int, int, Mapping[str, Any]], None] | None = None,
    progress: bool = True,
    training: Mapping[str, Any] | None = None,
    eval_every: int | None = None,
    n_eval: int = DEFAULT_N_EVAL,
) -> SeedsResult:
    """Train ``spec`` once per seed and combine: quality is the mean final quality,
    stability adds the spread across seeds (see ``ganarch.score.stability.aggregate_seeds``).

    Runs go to ``out_dir/seed-{S}``; ``out_dir/metrics.json`` holds the combined scores.
    ``on_eval(seed, step, record)`` is called after each evaluation of each seed.
    """
    seeds = list(seeds)
    if not seeds:
        raise GanarchError("train_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise GanarchError(f"seeds must be distinct, got {seeds}")
    dev = choose_device(device)
    spec = _resolve_spec(spec, training)
    root = artifacts.prepare_run_dir(out_dir, overwrite) if out_dir is not None else None
    dataset, data_name = _resolve_data(data, spec, dev)
    if evaluator is None:
        evaluator = _make_evaluator(dataset, dev)
    results = []
    for s in seeds:
        cb = (lambda step, rec, _s=s: on_eval(_s, step, rec)) if on_eval is not None else None
        results.append(
            train(
                spec,
                dataset,
                steps,
                seed=s,
                device=dev,
                out_dir=root / f"seed-{s}" if root is not None else None,
                overwrite=overwrite,
                eval_every=eval_every,
                n_eval=n_eval,
                evaluator=evaluator,
                on_eval=cb,
                progress=progress,
            )
        )
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
        metrics=metrics,
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
