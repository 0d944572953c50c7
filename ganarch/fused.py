"""Train the K seeds of one spec as one network: each seed's parameters and buffers are
stacked along a leading seed axis and every forward pass is ``torch.func.vmap`` over
``functional_call`` (PyTorch's batching rules turn a vmapped convolution into one grouped
convolution and a vmapped BatchNorm into one with K times the channels).

Each seed keeps what a run of its own would have: its initial weights (built after
``torch.manual_seed(seed)``, as ``fit`` does), its BatchNorm statistics (stacked buffers),
its Adam state (Adam is elementwise, so one Adam over the stacked tensors is K Adams), its
batches and noise (one generator per seed, drawn outside vmap in the order ``fit`` draws
them) and its evaluation noise. The loss is the sum of the seeds' losses, whose gradient
for seed i's parameters is seed i's own. So the fused result equals K separate runs of
``fit`` within float tolerance (``tests/test_fused.py``).

A spec that cannot be stacked (a parametrization such as spectral norm, a plugin block with
buffers of its own, a random op inside a block) trains its seeds one after another with
``fit``; ``FitResult.engine`` records which way and why.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.utils import parametrize

from ganarch import artifacts, builder
from ganarch import spec as spec_module
from ganarch.builder import Discriminator, GANSpec, Generator
from ganarch.device import choose_device
from ganarch.errors import GanarchError
from ganarch.settings import DEFAULT_N_EVAL, Default, RunSettings, settings_from, value
from ganarch.stepper import StepOptions, Stepper, graph_blocker
from ganarch.training import (
    AfterEval,
    Evaluate,
    FitContext,
    FitResult,
    SeedRun,
    _Progress,
    fit,
    make_adam,
    resolve_data,
    resolve_spec,
    run_steps,
)

__all__ = [
    "FusedStep",
    "SeedHooks",
    "fit_seeds",
    "fuses_by_default",
    "fusion_blocker",
    "make_fused_step",
]


@dataclass(frozen=True)
class SeedHooks:
    """One seed's callbacks, as ``fit`` takes them (``prepare``, ``evaluate``, ``after_eval``)."""

    prepare: Callable[[FitContext], None] | None = None
    evaluate: Evaluate | None = None
    after_eval: AfterEval | None = None


def fuses_by_default(device: torch.device) -> bool:
    """``fused_seeds="auto"``: fused on CUDA, where one stacked network fills the GPU that
    K small ones leave idle; sequential on the CPU, where the arithmetic is the same either
    way and bench/bench_train.py measured fused no faster (see BENCHMARKS.md)."""
    return device.type == "cuda"


def fusion_blocker(G: nn.Module, D: nn.Module) -> str | None:
    """Why these networks cannot be stacked (``None``: they can, as far as can be told
    without running them; :func:`fit_seeds` also probes a fused forward and backward)."""
    for net_name, net in (("generator", G), ("discriminator", D)):
        for name, m in net.named_modules():
            where = f"{net_name}.{name}" if name else net_name
            if parametrize.is_parametrized(m):
                return (
                    f"{where} has a parametrization (spectral norm keeps power-iteration state "
                    "that it updates in place)"
                )
            if isinstance(m, nn.modules.batchnorm._NormBase):
                continue  # running statistics are stacked per seed
            own = [b for b, _ in m.named_buffers(recurse=False)]
            if own:
                return f"{where} ({type(m).__name__}) keeps buffers of its own ({', '.join(own)})"
    return None


class _Logits(nn.Module):
    """D's pre-sigmoid scores as a forward pass (``functional_call`` calls ``forward``)."""

    def __init__(self, d: Discriminator) -> None:
        super().__init__()
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d.logits(x)


class _Stack:
    """K copies of one network as stacked parameters and buffers, called through vmap."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.modules = list(modules)
        self.params, self.buffers = stack_module_state(self.modules)
        # The skeleton that functional_call fills in (in training mode, as the seeds are
        # while they train; evaluation runs on the unstacked per-seed modules).
        base = copy.deepcopy(self.modules[0]).to("meta")

        def call(params, buffers, x):
            return functional_call(base, (params, buffers), (x,))

        # randomness="error": a random op inside a block would draw the same numbers for
        # every seed, or others than a separate run; refuse, and train sequentially.
        self.call = vmap(call, randomness="error")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(self.params, self.buffers, x)

    @torch.no_grad()
    def unstack(self, i: int) -> nn.Module:
        """Seed ``i``'s module with the stack's current values copied in."""
        module = self.modules[i]
        for name, p in module.named_parameters():
            p.copy_(self.params[name][i])
        for name, b in module.named_buffers():
            b.copy_(self.buffers[name][i])
        return module


def _probe(spec: GANSpec, device: torch.device, options: StepOptions) -> str | None:
    """Run a fused forward and backward of two fresh copies on a batch of two, under the
    run's autocast: a block that vmap cannot batch (a random op, a data-dependent shape, an
    op without a bf16 batching rule) fails here, before training."""
    try:
        gs, ds = [], []
        for _ in range(2):
            G, D = spec.build(init=False)
            gs.append(G.to(device).train())
            ds.append(_Logits(D.to(device).train()))
        g, d = _Stack(gs), _Stack(ds)
        z = torch.randn(2, 2, spec.latent_dim, device=device)
        with options.autocast(device)():
            out = d(g(z))
        out.float().sum().backward()
    except Exception as exc:  # any failure means: train the seeds one after another
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return f"a fused forward/backward failed: {type(exc).__name__}: {text}"
    return None


def fit_seeds(
    spec: GANSpec | str | Path,
    data: Any,
    steps: int = Default(1000),
    *,
    seeds: Sequence[int] | None = Default(None),
    device: str | torch.device | None = Default(None),
    out_dirs: Sequence[Path | None] | None = None,
    overwrite: bool = False,
    eval_every: int | None = Default(None),
    n_eval: int = Default(DEFAULT_N_EVAL),
    hooks: Sequence[SeedHooks] | None = None,
    progress: bool = Default(True),
    training: Any = Default(None),
    options: StepOptions | None = Default(None),
    after_point: Callable[[int], None] | None = None,
    settings: RunSettings | None = None,
) -> list[FitResult]:
    """Train ``spec`` once per seed — fused into one network where it can be, else one
    after another — and return one :class:`FitResult` per seed, in ``seeds`` order.

    Arguments are ``fit``'s, per seed where they are lists (``out_dirs``, ``hooks``).
    At each evaluation point the seeds are evaluated in order (their ``evaluate`` and
    ``after_eval``); a seed that diverges stops there while the others train on. Each
    result's ``engine["seeds"]`` is ``"fused"`` or ``"sequential"``, with
    ``engine["seeds_reason"]`` saying why not fused.

    ``after_point(effort)`` is called once an evaluation point is complete — fused: after
    every live seed's ``after_eval`` at that step; sequential: after each seed's — with the
    training done so far in seed-steps, counted as if no seed had stopped: ``K * step``
    fused, ``i * steps + step`` for seed ``i`` sequential. A pruner that compares trials at
    equal effort (and waits for half of ``K * steps``) then treats both ways alike.

    ``settings`` (a :class:`ganarch.settings.RunSettings` naming every seed) replaces the
    keyword arguments from ``steps`` to ``options``.
    """
    t0 = time.perf_counter()
    if settings is None:
        seeds = list(value(seeds) or [])
        if not seeds:
            raise GanarchError("fit_seeds needs at least one seed")
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
    settings = settings_from(settings, given)
    spec = resolve_spec(spec, settings.training)
    settings = settings.replace(training=None)  # applied to the spec once, here
    seeds = list(settings.seeds)
    options = settings.step_options()
    out_dirs = list(out_dirs) if out_dirs is not None else [None] * len(seeds)
    hooks = list(hooks) if hooks is not None else [SeedHooks()] * len(seeds)
    if len(out_dirs) != len(seeds) or len(hooks) != len(seeds):
        raise GanarchError("fit_seeds needs one out_dir and one hooks entry per seed")
    dev = choose_device(settings.device)
    settings = settings.replace(device=dev, options=options)
    dataset, data_name = resolve_data(data, spec, dev)

    reason = _why_sequential(spec, dev, options, len(seeds))
    if reason is not None:
        results = []
        for i, (s, out, h) in enumerate(zip(seeds, out_dirs, hooks, strict=True)):
            r = fit(
                spec,
                dataset,
                out_dir=out,
                overwrite=overwrite,
                prepare=h.prepare,
                evaluate=h.evaluate,
                after_eval=_then_point(h.after_eval, after_point, i * settings.steps),
                settings=settings.for_seed(s),
            )
            r.data = data_name
            r.engine.update({"seeds": "sequential", "seeds_reason": reason})
            results.append(r)
        return results
    return _fit_fused(
        spec, dataset, data_name, settings, dev, out_dirs, overwrite, hooks, t0, after_point
    )


def _then_point(
    after_eval: AfterEval | None, after_point: Callable[[int], None] | None, offset: int
) -> AfterEval | None:
    """A sequential seed's ``after_eval`` followed by ``after_point(offset + step)``."""
    if after_point is None:
        return after_eval

    def both(step: int, history: list[dict[str, Any]]) -> None:
        if after_eval is not None:
            after_eval(step, history)
        after_point(offset + step)

    return both


def _why_sequential(
    spec: GANSpec, device: torch.device, options: StepOptions, k: int
) -> str | None:
    if k == 1:
        return "one seed"
    if options.fused_seeds == "off":
        return "fused seeds turned off (fused_seeds='off' or GANARCH_FUSED_SEEDS=off)"
    if options.fused_seeds == "auto" and not fuses_by_default(device):
        return (
            f"fused seeds are off by default on {device.type} (no faster there; see BENCHMARKS.md)"
        )
    need = k * planned_activation_bytes(spec)
    if need > spec_module.MAX_ACTIVATION_BYTES:  # each seed fits the limit, K at once do not
        return (
            f"{k} seeds fused would hold about {need / 2**30:.0f} GiB of activations at once "
            f"(at most {spec_module.MAX_ACTIVATION_BYTES / 2**30:.0f} GiB); one seed at a time"
        )
    G, D = spec.build(init=False)
    return fusion_blocker(G, D) or _probe(spec, device, options)


def planned_activation_bytes(spec: GANSpec) -> int:
    """One seed's activation floor (``spec.activation_bytes``) from the planned shapes."""
    p = builder.plan(spec)
    return spec_module.activation_bytes(
        spec.training.batch_size,
        [layer.out_shape for layer in p.generator.layers],
        [layer.out_shape for layer in p.discriminator.layers],
    )


@dataclass
class FusedStep:
    """A ready fused step for K seeds: call ``stepper()`` once per step; ``sums`` is
    ``(K, 4)``; ``g``/``d`` are the stacks and ``generators``/``discriminators`` the
    per-seed modules that :meth:`_Stack.unstack` fills in."""

    stepper: Stepper
    sums: torch.Tensor
    autocast: Callable[[], Any]
    g: _Stack
    d: _Stack
    generators: list[Generator]
    discriminators: list[Discriminator]


def make_fused_step(
    spec: GANSpec,
    images: torch.Tensor,
    seeds: Sequence[int],
    device: torch.device,
    options: StepOptions,
) -> FusedStep:
    """Build each seed's networks exactly as ``fit`` does (``torch.manual_seed(seed)``, then
    ``spec.build``), stack them, and make the fused step (``bench/bench_train.py`` times it)."""
    tr = spec.training
    gs, ds = [], []
    for s in seeds:
        torch.manual_seed(s)
        G, D = spec.build(init=True)
        gs.append(G.to(device).train())
        ds.append(D.to(device).train())
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast = options.autocast(device)
    g = _Stack(gs)
    d = _Stack([_Logits(D) for D in ds])
    graph = graph_blocker(device, options) is None
    opt_g = make_adam(list(g.params.values()), tr.lr_g, tr, device, graph)
    opt_d = make_adam(list(d.params.values()), tr.lr_d, tr, device, graph)
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    sums = torch.zeros(len(seeds), 4, device=device)  # per seed: loss_d, loss_g, d_real, d_fake
    step = _fused_step(g, d, opt_g, opt_d, images, gens, sums, spec, autocast)
    return FusedStep(Stepper(step, device, options, generators=gens), sums, autocast, g, d, gs, ds)


def _fit_fused(
    spec: GANSpec,
    dataset: Any,
    data_name: str,
    settings: RunSettings,
    dev: torch.device,
    out_dirs: list[Path | None],
    overwrite: bool,
    hooks: list[SeedHooks],
    t0: float,
    after_point: Callable[[int], None] | None,
) -> list[FitResult]:
    seeds, steps, options = list(settings.seeds), settings.steps, settings.step_options()
    k = len(seeds)
    outs = []
    for s, out_dir, h in zip(seeds, out_dirs, hooks, strict=True):
        out = artifacts.prepare_run_dir(out_dir, overwrite) if out_dir is not None else None
        if out is not None:
            spec.save(out / "spec.json")
        if h.prepare is not None:
            h.prepare(FitContext(spec, dataset, data_name, dev, out, s, steps, t0))
        outs.append(out)
    fs = make_fused_step(spec, dataset.images, seeds, dev, options)
    g, d, gs, ds = fs.g, fs.d, fs.generators, fs.discriminators
    autocast = fs.autocast
    runs = [
        SeedRun(spec, settings.for_seed(s), dev, out, h.evaluate, h.after_eval)
        for s, out, h in zip(seeds, outs, hooks, strict=True)
    ]

    live = list(range(k))
    bar = _Progress(settings.progress, steps, f"train {data_name} ×{k} seeds")

    def at_point(step: int, means: list[list[float]]) -> bool:
        # ``means``: one read of the device for all seeds
        for i in list(live):
            G = g.unstack(i)
            d.unstack(i)
            if runs[i].evaluation_point(step, means[i], G, autocast):
                live.remove(i)  # diverged: its modules keep this point's weights
        if not live:
            return True
        if after_point is not None:
            after_point(k * step)  # all K seeds' steps: effort as in the sequential way
        bar.info(runs[live[0]].shown)
        return False

    try:
        run_steps(fs.stepper, fs.sums, steps, settings.every, at_point, bar)
    finally:
        bar.close()
    stepper = fs.stepper
    engine = {
        **stepper.record(),
        "precision": options.precision if dev.type == "cuda" else "float32",
        "channels_last": False,  # the stacked step stays NCHW (channels_last is not applied)
        "seeds": "fused",
        "seeds_reason": None,
        "fused_k": k,
    }
    results = []
    for i in range(k):
        if i in live:
            g.unstack(i)
            d.unstack(i)
        r = runs[i].finish(
            gs[i],
            ds[i],
            device=dev,
            started=t0,
            data=data_name,
            dataset=dataset,
            autocast=autocast,
            engine=engine,
        )
        results.append(r)
    return results


def _fused_step(
    g: _Stack,
    d: _Stack,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    images: torch.Tensor,
    gens: Sequence[torch.Generator],
    sums: torch.Tensor,
    spec: GANSpec,
    autocast: Callable[[], Any],
) -> Callable[[], None]:
    """``fit``'s step for K stacked seeds; each seed's batch and noise come from its own
    generator, drawn in ``fit``'s order (indices, then noise), outside vmap."""
    tr = spec.training
    dev = images.device
    n_images, bs, k = images.shape[0], tr.batch_size, len(gens)
    ones = torch.ones(k, bs, device=dev)
    zeros = torch.zeros(k, bs, device=dev)

    def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # per seed: the mean over its batch, as fit's default reduction
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)

    def step() -> None:
        for _ in range(tr.d_steps):
            idx, zs = [], []
            for gen in gens:
                idx.append(torch.randint(n_images, (bs,), device=dev, generator=gen))
                zs.append(torch.randn(bs, spec.latent_dim, device=dev, generator=gen))
            real = images[torch.stack(idx)]
            z = torch.stack(zs)
            with autocast():
                fake = g(z)
                logit_real = d(real).float()
                logit_fake = d(fake.detach()).float()
            loss_d = bce(logit_real, ones) + bce(logit_fake, zeros)
            opt_d.zero_grad(set_to_none=True)
            loss_d.sum().backward()
            opt_d.step()
        with autocast():
            logit_g = d(fake).float()
        loss_g = bce(logit_g, ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.sum().backward()
        opt_g.step()
        with torch.no_grad():
            sums.add_(
                torch.stack(
                    (
                        loss_d.detach(),
                        loss_g.detach(),
                        torch.sigmoid(logit_real.detach()).mean(1),
                        torch.sigmoid(logit_fake.detach()).mean(1),
                    ),
                    dim=1,
                )
            )

    return step
