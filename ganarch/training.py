"""The GAN loop: train a spec's generator and discriminator on a dataset (no scoring here).

``fit(spec, data, steps, seed=0)`` returns a :class:`FitResult`: the trained networks, the
history of losses and D outputs at each evaluation point, and whether the run diverged. At
an evaluation point the loop generates images from fixed noise and hands them to the
caller's ``evaluate(step, samples)``, whose values are merged into the record: the loop
never knows what quality means (``ganarch.run.train`` plugs the scorer in here). With
``out_dir`` it writes ``spec.json``, the sample grids, ``curves.png`` and the checkpoints;
``metrics.json`` is the caller's (it holds scores).

The loss is the paper's non-saturating GAN loss computed from logits (a final sigmoid in D
is folded into ``BCEWithLogits``: same math, safe under bf16); real and fake batches pass
through D separately. The dataset is one tensor on the device and batches are drawn by
index from a generator seeded with ``seed``, so a CPU run is reproducible bit for bit.
On CUDA the step loop never waits for the GPU: running sums stay on the device and are read
only at evaluation points, where NaN/inf and exploding losses are detected too; the step is
captured once in a CUDA graph and replayed (``ganarch.stepper``), eager when capture fails.

How a run trains (steps, seeds, device, evaluation points, the step's options, ...) is one
:class:`ganarch.settings.RunSettings`; ``fit``'s keyword arguments build it.

``fit`` is set-up (:func:`set_up`), a step (:func:`make_step`, ``_gan_step``), the loop that
calls the step and reads the device only at evaluation points (:func:`run_steps`) and an
evaluation point (:meth:`SeedRun.evaluation_point`); the fused trainer of several seeds
(``ganarch.fused``) reuses the loop and the evaluation point per seed. Whether a loss has
exploded is the stability scorer's rule (``ganarch.score.stability.EXPLODING_LOSS``), handed
down in ``RunSettings.exploding_loss``: the trainer itself stops only on NaN/inf.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ganarch import artifacts
from ganarch.builder import Discriminator, GANSpec, Generator, load_spec
from ganarch.device import choose_device
from ganarch.errors import GanarchError
from ganarch.settings import (
    DEFAULT_EVALUATIONS,
    DEFAULT_N_EVAL,
    Default,
    RunSettings,
    default_eval_every,
    settings_from,
)
from ganarch.stepper import StepOptions, Stepper, graph_blocker

__all__ = [
    "DEFAULT_EVALUATIONS",
    "DEFAULT_N_EVAL",
    "GRID_SAMPLES",
    "FitContext",
    "FitResult",
    "RunSettings",
    "SeedRun",
    "SetUp",
    "Step",
    "StepOptions",
    "default_eval_every",
    "fit",
    "make_adam",
    "make_step",
    "resolve_data",
    "resolve_spec",
    "run_steps",
    "set_up",
]

#: Size of the fixed-noise sample grid (8 × 8).
GRID_SAMPLES = 64

#: ``evaluate(step, samples) -> values`` merged into the evaluation's record.
Evaluate = Callable[[int, torch.Tensor], Mapping[str, Any]]
#: ``after_eval(step, history)``: the record is stored and the samples written; may raise.
AfterEval = Callable[[int, list[dict[str, Any]]], None]


@dataclass(frozen=True)
class FitContext:
    """What a run resolved before its first step (handed to ``fit``'s ``prepare``)."""

    spec: GANSpec
    dataset: Any  # an ImageDataset on ``device``
    data: str  # the dataset reference or name, for reports
    device: torch.device
    out_dir: Path | None
    seed: int
    steps: int
    started: float  # ``time.perf_counter()`` when ``fit`` was called


@dataclass
class FitResult:
    """What the loop produced.

    ``history`` has one record per evaluation point: ``step``, ``loss_d``, ``loss_g``,
    ``d_real`` (mean D(x)), ``d_fake`` (mean D(G(z))) — means since the previous evaluation —
    plus what ``evaluate`` returned, or ``failure`` for the point where the run diverged.
    """

    spec: GANSpec
    generator: Generator
    discriminator: Discriminator
    history: list[dict[str, Any]]
    diverged: bool
    failure: str | None  # "nan", "exploding loss" or None
    seed: int
    steps: int  # steps asked for
    steps_done: int
    device: str
    seconds: float  # from the call to the end of the loop (before the final artifacts)
    data: str
    dataset: Any
    out_dir: Path | None = None
    #: How the step ran: ``step`` ("graph"/"eager"), ``reason`` (why not a graph),
    #: ``precision``, and for fused seeds ``seeds`` ("fused"/"sequential") and its reason.
    engine: dict[str, Any] = field(default_factory=dict)


# --- the pieces --------------------------------------------------------------------------------


def resolve_spec(spec: GANSpec | str | Path, training: Mapping[str, Any] | None) -> GANSpec:
    """A ``GANSpec`` from a spec or a spec file, with ``training`` overrides applied."""
    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    if not isinstance(spec, GANSpec):
        raise GanarchError(f"train needs a GANSpec or a spec file, got {type(spec).__name__}")
    if training:
        spec = spec.replace(training=dict(training))
    return spec


def resolve_data(data: Any, spec: GANSpec, device: torch.device) -> tuple[Any, str]:
    """The dataset on ``device`` (loaded when ``data`` is a reference) and its name."""
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


def _shown(values: Mapping[str, Any]) -> str:
    """The plain numbers among an evaluation's values, for the progress bar."""
    parts = []
    for key, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"  {key} {value:.3f}")
    return "".join(parts)


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


def make_adam(
    params: Any, lr: float, tr: Any, device: torch.device, graph: bool
) -> torch.optim.Adam:
    """The spec's Adam: fused on CUDA (one kernel per update), capturable when the step is
    captured in a CUDA graph (its step count then lives on the device)."""
    extra: dict[str, Any] = {}
    if device.type == "cuda":
        extra["fused"] = True
        if graph:
            extra["capturable"] = True
    return torch.optim.Adam(params, lr=lr, betas=(tr.beta1, tr.beta2), **extra)


class SeedRun:
    """One seed's side of a run: its evaluation noise, history, callbacks and artifacts.

    ``fit`` has one; the fused trainer (``ganarch.fused``) one per seed. Evaluation noise
    comes from its own CPU generator seeded with the seed: the same on every device, and
    evaluating never shifts the training stream.
    """

    def __init__(
        self,
        spec: GANSpec,
        settings: RunSettings,
        device: torch.device,
        out: Path | None,
        evaluate: Evaluate | None,
        after_eval: AfterEval | None,
    ) -> None:
        self.spec, self.seed, self.steps, self.out = spec, settings.seed, settings.steps, out
        self.exploding_loss = settings.exploding_loss
        self.evaluate, self.after_eval = evaluate, after_eval
        eval_gen = torch.Generator().manual_seed(self.seed)
        self.grid_z = torch.randn(GRID_SAMPLES, spec.latent_dim, generator=eval_gen).to(device)
        self.eval_z = torch.randn(settings.n_eval, spec.latent_dim, generator=eval_gen).to(device)
        self.history: list[dict[str, Any]] = []
        self.failure: str | None = None
        self.steps_done = 0
        self.shown = ""  # the last evaluation's numbers, for the progress bar

    def evaluation_point(
        self, step: int, means: list[float], G: Generator, autocast: Callable[[], Any]
    ) -> bool:
        """Record the means since the last point, check for divergence, generate, evaluate,
        write the grid, call ``after_eval``. Returns True when the run must stop (diverged)."""
        self.steps_done = step
        loss_d_m, loss_g_m, d_real_m, d_fake_m = means
        record: dict[str, Any] = {
            "step": step,
            "loss_d": loss_d_m,
            "loss_g": loss_g_m,
            "d_real": d_real_m,
            "d_fake": d_fake_m,
        }
        if not all(math.isfinite(v) for v in means):
            self.failure = "nan"
        elif self.exploding_loss is not None and max(loss_d_m, loss_g_m) > self.exploding_loss:
            self.failure = "exploding loss"  # the scorer's rule (RunSettings.exploding_loss)
        if self.failure is None:
            samples = _generate(G, self.eval_z, max(self.spec.training.batch_size, 256), autocast)
            if not bool(torch.isfinite(samples).all()):
                self.failure = "nan"
        if self.failure is not None:
            record["failure"] = self.failure
            self.history.append(record)
            return True
        values = dict(self.evaluate(step, samples)) if self.evaluate is not None else {}
        record.update(values)
        self.history.append(record)
        self.shown = f"D {loss_d_m:.3f}  G {loss_g_m:.3f}{_shown(values)}"
        if self.out is not None:
            artifacts.save_grid(
                _generate(G, self.grid_z, GRID_SAMPLES, autocast),
                self.out / f"samples_step{step}.png",
            )
        if self.after_eval is not None:
            self.after_eval(step, self.history)
        return False

    def finish(
        self,
        G: Generator,
        D: Discriminator,
        *,
        device: torch.device,
        started: float,
        data: str,
        dataset: Any,
        autocast: Callable[[], Any],
        engine: Mapping[str, Any],
    ) -> FitResult:
        """The run's result (a last NaN check on the weights) and its final artifacts."""
        # A NaN may hide in the networks after the last evaluation.
        if self.failure is None and not all(
            bool(torch.isfinite(p).all()) for p in (*G.parameters(), *D.parameters())
        ):
            self.failure = "nan"
        result = FitResult(
            spec=self.spec,
            generator=G,
            discriminator=D,
            history=self.history,
            diverged=self.failure is not None,
            failure=self.failure,
            seed=self.seed,
            steps=self.steps,
            steps_done=self.steps_done,
            device=str(device),
            seconds=time.perf_counter() - started,
            data=data,
            dataset=dataset,
            out_dir=self.out,
            engine=dict(engine),
        )
        if self.out is not None:
            _write_run(result, self.out, autocast, self.grid_z)
        return result


def _gan_step(
    G: Generator,
    D: Discriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    images: torch.Tensor,
    gen: torch.Generator,
    sums: torch.Tensor,
    spec: GANSpec,
    autocast: Callable[[], Any],
) -> Callable[[], None]:
    """One training step as a closure over long-lived tensors (so a CUDA graph can replay
    it): ``d_steps`` D updates on a real and a fake batch, one G update, running sums."""
    tr = spec.training
    dev = images.device
    n_images, bs = images.shape[0], tr.batch_size
    ones = torch.ones(bs, device=dev)
    zeros = torch.zeros(bs, device=dev)

    def step() -> None:
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
            sums.add_(
                torch.stack(
                    (
                        loss_d.detach(),
                        loss_g.detach(),
                        torch.sigmoid(logit_real.detach()).mean(),
                        torch.sigmoid(logit_fake.detach()).mean(),
                    )
                )
            )

    return step


@dataclass
class Step:
    """A ready training step: call ``stepper()`` once per step; ``sums`` holds the running
    sums (loss_d, loss_g, d_real, d_fake) since they were last zeroed."""

    stepper: Stepper
    sums: torch.Tensor
    autocast: Callable[[], Any]


def make_step(
    spec: GANSpec,
    G: Generator,
    D: Discriminator,
    images: torch.Tensor,
    seed: int,
    device: torch.device,
    options: StepOptions,
) -> Step:
    """``fit``'s step for ``G`` and ``D`` (built and on ``device``): the optimizers, the
    seeded batch-and-noise generator, the memory layout, and the runner that captures it in
    a CUDA graph where it can. ``bench/bench_train.py`` times exactly this."""
    tr = spec.training
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if options.uses_channels_last(device):
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = options.autocast(device)
    graph = graph_blocker(device, options) is None
    opt_g = make_adam(G.parameters(), tr.lr_g, tr, device, graph)
    opt_d = make_adam(D.parameters(), tr.lr_d, tr, device, graph)
    gen = torch.Generator(device=device).manual_seed(seed)  # batches and training noise
    # Running sums since the last evaluation, on the device (no sync in the loop).
    sums = torch.zeros(4, device=device)
    stepper = Stepper(
        _gan_step(G, D, opt_g, opt_d, images, gen, sums, spec, autocast),
        device,
        options,
        generators=(gen,),
    )
    return Step(stepper, sums, autocast)


@dataclass
class SetUp:
    """A run ready for its first step: what :func:`set_up` resolved and built."""

    context: FitContext
    settings: RunSettings
    options: StepOptions
    generator: Generator
    discriminator: Discriminator
    step: Step
    run: SeedRun


def set_up(
    spec: GANSpec | str | Path,
    data: Any,
    settings: RunSettings,
    *,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    prepare: Callable[[FitContext], None] | None = None,
    evaluate: Evaluate | None = None,
    after_eval: AfterEval | None = None,
    started: float | None = None,
) -> SetUp:
    """Everything before ``fit``'s first step: the spec with its overrides, the device, the
    data on it, the networks (built before any file is written: a bad spec leaves no run
    dir), the run directory, ``prepare``, the step and the seed's evaluation side."""
    t0 = time.perf_counter() if started is None else started
    spec = resolve_spec(spec, settings.training)
    seed = settings.seed
    options = settings.step_options()
    dev = choose_device(settings.device)
    dataset, data_name = resolve_data(data, spec, dev)
    torch.manual_seed(seed)  # the initial weights
    G, D = spec.build(init=True)
    G.to(dev).train()
    D.to(dev).train()

    out = artifacts.prepare_run_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        spec.save(out / "spec.json")
    context = FitContext(spec, dataset, data_name, dev, out, seed, settings.steps, t0)
    if prepare is not None:
        prepare(context)
    # Seeded again so any random op inside a plugin block (dropout, noise) sees the same
    # stream whatever ``prepare`` did (an evaluator built there trains a feature net).
    torch.manual_seed(seed)
    step = make_step(spec, G, D, dataset.images, seed, dev, options)
    run = SeedRun(spec, settings, dev, out, evaluate, after_eval)
    return SetUp(context, settings, options, G, D, step, run)


def run_steps(
    stepper: Callable[[], None],
    sums: torch.Tensor,
    steps: int,
    every: int,
    at_point: Callable[[int, list[Any]], bool],
    bar: _Progress,
) -> None:
    """Call ``stepper`` ``steps`` times; every ``every`` steps and at the last one, read the
    means of ``sums`` since the previous point (the only read of device values) and hand
    them to ``at_point(step, means)``, which returns True to stop."""
    count = 0
    for step in range(1, steps + 1):
        stepper()
        count += 1
        bar.advance()
        if step % every and step != steps:
            continue
        means = (sums / count).tolist()
        sums.zero_()
        count = 0
        if at_point(step, means):
            break


def fit(
    spec: GANSpec | str | Path,
    data: Any = "digits",
    steps: int = Default(1000),
    *,
    seed: int = Default(0),
    device: str | torch.device | None = Default(None),
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    eval_every: int | None = Default(None),
    n_eval: int = Default(DEFAULT_N_EVAL),
    prepare: Callable[[FitContext], None] | None = None,
    evaluate: Evaluate | None = None,
    after_eval: AfterEval | None = None,
    progress: bool = Default(True),
    training: Mapping[str, Any] | None = Default(None),
    options: StepOptions | None = Default(None),
    settings: RunSettings | None = None,
) -> FitResult:
    """Train ``spec`` on ``data`` for ``steps`` generator updates.

    :param spec: a ``GANSpec`` or the path of a spec file.
    :param data: a dataset reference (``"digits"``, ``"shapes:2048"``, ...) or an
        ``ImageDataset`` of the spec's image size and channels.
    :param steps: generator updates (each after ``spec.training.d_steps`` D updates).
    :param seed: seeds the initial weights, the batches and the noise.
    :param device: ``None``/``"auto"`` (CUDA, then MPS, then CPU), or a device name.
    :param out_dir: write the run directory here (refused when it is a non-empty directory,
        unless ``overwrite``).
    :param eval_every: an evaluation point every so many steps (default: 5 per run); the
        last step is always one.
    :param n_eval: images generated from fixed noise at each evaluation point.
    :param prepare: called once with the :class:`FitContext` after the networks are built
        and the run directory is made, before the first step (build a scorer here: a spec
        that fails to build then costs nothing). The global RNG is seeded again after it.
    :param evaluate: ``evaluate(step, samples)`` with the ``(n_eval, C, H, W)`` float32
        samples on the device; the mapping it returns is merged into the step's record, and
        its plain numbers are shown on the progress bar.
    :param after_eval: ``after_eval(step, history)`` once the record is in ``history`` and
        ``samples_step{step}.png`` is written. Its exceptions propagate (the run stops).
    :param progress: show a progress bar on stderr (default on).
    :param training: overrides of ``spec.training`` (``{"lr_d": 1e-4}``).
    :param options: how the step runs (precision, CUDA graph; see
        :class:`ganarch.stepper.StepOptions`); default from the environment.
    :param settings: all of the above from ``steps`` to ``options`` (and the exploding-loss
        rule) as one :class:`ganarch.settings.RunSettings` with one seed; those keyword
        arguments must then be left out.

    A run whose losses or samples become NaN/inf, or whose losses exceed
    ``settings.exploding_loss`` (when set), stops at that evaluation point with
    ``diverged=True``; it does not raise. On CUDA the step is captured in a CUDA graph when
    it can be; ``FitResult.engine`` says how it ran.
    """
    t0 = time.perf_counter()
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
    settings = settings_from(settings, given)
    s = set_up(
        spec,
        data,
        settings,
        out_dir=out_dir,
        overwrite=overwrite,
        prepare=prepare,
        evaluate=evaluate,
        after_eval=after_eval,
        started=t0,
    )
    G, run, autocast = s.generator, s.run, s.step.autocast
    bar = _Progress(settings.progress, settings.steps, f"train {s.context.data}")

    def at_point(step: int, means: list[float]) -> bool:
        stop = run.evaluation_point(step, means, G, autocast)
        if not stop:
            bar.info(run.shown)
        return stop

    try:
        run_steps(s.step.stepper, s.step.sums, settings.steps, settings.every, at_point, bar)
    finally:
        bar.close()
    dev = s.context.device
    engine = {
        **s.step.stepper.record(),
        "precision": _precision(s.options, dev),
        "channels_last": s.options.uses_channels_last(dev),
    }
    return run.finish(
        G,
        s.discriminator,
        device=dev,
        started=t0,
        data=s.context.data,
        dataset=s.context.dataset,
        autocast=autocast,
        engine=engine,
    )


def _precision(options: StepOptions, device: torch.device) -> str:
    return options.precision if device.type == "cuda" else "float32"


def _write_run(result: FitResult, out: Path, autocast, grid_z: torch.Tensor) -> None:
    """The final sample grid, the curves and the checkpoints (``metrics.json`` is the
    caller's: it holds scores)."""
    G = result.generator
    artifacts.save_grid(_generate(G, grid_z, GRID_SAMPLES, autocast), out / "samples.png")
    artifacts.save_curves(
        result.history,
        out / "curves.png",
        title=f"{result.data} · seed {result.seed} · {result.steps_done} steps",
    )
    artifacts.save_state_dict(G, out / "generator.pt")
    artifacts.save_state_dict(result.discriminator, out / "discriminator.pt")
