"""Training-step throughput, measured directly and side by side in one process.

For each network it times, interleaved ``--repeats`` times:

- **textbook**: the loop a tutorial writes first (a ``DataLoader`` over a ``TensorDataset``,
  ``nn.BCELoss`` on D's sigmoid output, ``.item()`` on both losses every step), float32 eager;
- **ganarch**: the step ``ganarch.training.fit`` runs (``make_step``: data on the device,
  batches drawn by index, logits loss, no host sync; on CUDA captured in a CUDA graph);
- **ganarch eager** (CUDA only): the same with ``cuda_graph=False``, to show what capture buys;
- **ganarch before** (CUDA only): ganarch as it was before issue 8 (eager, bf16 autocast,
  channels_last), the baseline of the issue's fused-seeds target ("≥ 10× one seed trained
  alone by ganarch today"): ``vs_ganarch_before``;
- **ganarch compiled** (CUDA, ``--compile``): the eager step under ``torch.compile``'s
  ``reduce-overhead`` mode, the issue's alternative to hand capture;
- **fused K**: K seeds as one stacked network (``ganarch.fused.make_fused_step``), K in
  ``--ks``; its images/s count all K seeds' images. Fused seeds are always NCHW (they ignore
  ``--channels-last``; each loop's ``channels_last`` says what it ran).

Per-step time = (time of ``--steps`` steps) / steps, after ``--warmup`` steps (CUDA-graph
capture and cuDNN autotuning happen there), with ``torch.cuda.synchronize()`` on both sides of
the timed region on CUDA. Medians over repeats; ratios per repeat. The arithmetic bound is
FLOPs per training image (counted by ``torch.utils.flop_counter`` over one step: G forward,
D on real and fake, both backward passes) against the matmul rate measured on the same
device in the same process. On CUDA there are two: the issue's own bound, the bf16 dense
matmul rate (``fraction_of_bf16_bound``), and the rate of the arithmetic the step runs
(``fraction_of_bound``): bf16 with ``--precision bf16``, else float32 matmul with TF32 on,
as cuDNN runs float32 convolutions by default (both ``allow_tf32`` flags are recorded).
``ganarch``'s ``make_step`` turns on ``cudnn.benchmark`` process-wide, so every loop here,
the textbook one too, runs with cuDNN autotuning (recorded as ``cudnn_benchmark``).

Each net's result is printed, and written to ``--json`` (with ``"complete": false`` until
the last net), as soon as it is done, so a run cut short keeps what it measured. Each loop
that runs through ``ganarch.stepper.Stepper`` records ``engine`` (``step``: graph or eager,
and the reason: once a capture fails, every loop of the process not yet captured runs
eagerly), and ``ganarch_compiled`` records ``engine`` too (``step``: torch.compile, and the
reason when Inductor left a compiled graph uncaptured). A loop other than ``textbook`` and
``ganarch`` that fails, as it is built or as it runs, is left out with its error in
``failed``; a failure of either of those two stops the run (every ratio needs them).

Usage::

    python bench/bench_train.py --device cpu --nets dcgan --ks 1,4,8 --steps 8
    python bench/bench_train.py --device cuda --nets dcgan,seed --ks 1,4,8,16 --steps 200
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

import ganarch
from ganarch.data import load_dataset
from ganarch.fused import make_fused_step
from ganarch.stepper import StepOptions, Stepper
from ganarch.training import make_step

#: The two networks of issue 8: the ``dcgan`` space's size (the paper's DCGAN at 32×32×1,
#: width 32, batch 64) and the seed's network (32×32×3, width 128, batch 128).
NETS = {
    "dcgan": dict(image_size=32, channels=1, width=32, batch_size=64),
    "seed": dict(image_size=32, channels=3, width=128, batch_size=128),
}
#: The loops every ratio is taken against: a failure there fails the net's measurement.
BASELINES = ("textbook", "ganarch")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[], None], steps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def textbook_step(spec, images: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """One iteration of the usual tutorial loop per call (float32, BCELoss, .item())."""
    torch.manual_seed(0)
    G, D = spec.build()
    G, D = G.to(device), D.to(device)
    t = spec.training
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
    loader = DataLoader(
        TensorDataset(images.cpu()), batch_size=t.batch_size, shuffle=True, drop_last=True
    )
    bce = nn.BCELoss()
    batches = iter(loader)

    def step() -> None:
        nonlocal batches
        try:
            (real,) = next(batches)
        except StopIteration:
            batches = iter(loader)
            (real,) = next(batches)
        real = real.to(device)
        n = real.shape[0]
        z = torch.randn(n, spec.latent_dim, device=device)
        fake = G(z)
        opt_d.zero_grad()
        loss_d = bce(D(real), torch.ones(n, device=device)) + bce(
            D(fake.detach()), torch.zeros(n, device=device)
        )
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = bce(D(fake), torch.ones(n, device=device))
        loss_g.backward()
        opt_g.step()
        _ = loss_d.item(), loss_g.item()  # what a tutorial logs every step

    return step


def ganarch_step(spec, images, device, options: StepOptions):
    torch.manual_seed(0)
    G, D = spec.build(init=True)
    step = make_step(spec, G.to(device).train(), D.to(device).train(), images, 0, device, options)
    return step.stepper, step.stepper


class CompiledStep:
    """ganarch's eager step under ``torch.compile(mode="reduce-overhead")`` (CUDA graphs
    through Inductor), compiled by its first three calls here (so a step that does not
    compile fails while the loops are built). :meth:`record` says what ran: Inductor leaves
    a compiled graph it cannot capture uncaptured, counting it in ``cudagraph_skips`` and
    logging why."""

    def __init__(self, spec, images, device, options: StepOptions) -> None:
        from torch._dynamo.utils import counters

        step = ganarch_step(spec, images, device, options)[0].step
        self.fn = torch.compile(step, mode="reduce-overhead")
        before = counters["inductor"]["cudagraph_skips"]
        for _ in range(3):
            self.fn()
        sync(device)
        self.skipped = counters["inductor"]["cudagraph_skips"] - before

    def __call__(self) -> None:
        self.fn()

    def record(self) -> dict:
        reason = None
        if self.skipped:
            reason = f"Inductor left {self.skipped} compiled graph(s) uncaptured (its log says why)"
        return {"step": "torch.compile reduce-overhead", "reason": reason}


def fused_step(spec, images, device, k: int, options: StepOptions):
    fs = make_fused_step(spec, images, list(range(k)), device, options)
    return fs.stepper, fs.stepper


def flops_per_image(spec) -> float:
    """FLOPs of one training step per real image, counted on the CPU (eager, float32)."""
    torch.manual_seed(0)
    G, D = spec.build(init=True)
    images = torch.randn(
        spec.training.batch_size * 2, spec.channels, spec.image_size, spec.image_size
    )
    cpu = torch.device("cpu")
    step = make_step(spec, G.train(), D.train(), images, 0, cpu, StepOptions(cuda_graph=False))
    with FlopCounterMode(display=False) as counter:
        step.stepper()
    return counter.get_total_flops() / spec.training.batch_size


def matmul_flops_per_s(
    device: torch.device, n: int, dtype: torch.dtype, tf32: bool = False
) -> float:
    """The matmul rate of this device in ``dtype`` (best of 5 after one warm-up), float32
    with TF32 when ``tf32``: an arithmetic bound's denominator."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        return _matmul_rate(device, n, dtype)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _matmul_rate(device: torch.device, n: int, dtype: torch.dtype) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(6):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_net(name: str, args, device: torch.device, peak: float, bf16_peak: float | None) -> dict:
    cfg = NETS[name]
    spec = ganarch.dcgan_spec(
        cfg["image_size"], cfg["channels"], width=cfg["width"], batch_size=cfg["batch_size"]
    )
    bs = spec.training.batch_size
    data = load_dataset("digits", cfg["image_size"], cfg["channels"], device=device)
    images = data.images
    # the default of ganarch train: float32, CUDA graph on CUDA (precision switchable here)
    options = StepOptions(precision=args.precision, channels_last=args.channels_last)
    nhwc = options.uses_channels_last(device)
    loops: dict[str, tuple[Callable[[], None], int]] = {}
    layout: dict[str, bool] = {}
    failed: dict[str, str] = {}

    def build(
        key: str, make: Callable[[], Callable[[], None]], k: int, channels_last: bool
    ) -> None:
        try:
            loops[key] = (make(), k)
        except Exception as exc:  # e.g. no vmap batching rule here: keep the other figures
            if key in BASELINES:  # every ratio needs these two
                raise
            failed[key] = f"{type(exc).__name__}: {exc}"[:300]
            print(f"  {name} {key} failed: {failed[key]}", file=sys.stderr)
            return
        layout[key] = channels_last

    build("textbook", lambda: textbook_step(spec, images, device), 1, False)
    build("ganarch", lambda: ganarch_step(spec, images, device, options)[0], 1, nhwc)
    if device.type == "cuda":
        eager = StepOptions(
            precision=args.precision, channels_last=args.channels_last, cuda_graph=False
        )
        build("ganarch_eager", lambda: ganarch_step(spec, images, device, eager)[0], 1, nhwc)
        # ganarch before issue 8: eager, bf16 autocast, NHWC (the fused target's baseline)
        before = StepOptions(precision="bf16", channels_last=True, cuda_graph=False)
        build("ganarch_before", lambda: ganarch_step(spec, images, device, before)[0], 1, True)
        if args.compile:  # the other route: torch.compile's CUDA graphs
            build("ganarch_compiled", lambda: CompiledStep(spec, images, device, eager), 1, nhwc)
    for k in args.ks:  # make_fused_step does not apply channels_last
        build(f"fused_k{k}", lambda k=k: fused_step(spec, images, device, k, options)[0], k, False)
    steps = args.steps if name == "dcgan" else max(1, args.steps // args.seed_divisor)
    warmup = args.warmup
    if device.type == "cuda":  # the graph's warm-up steps and its capture happen in warm-up
        warmup = max(warmup, options.warmup_steps + 2)
    times: dict[str, list[float]] = {key: [] for key in loops}
    for r in range(args.repeats):
        for key, (step, _) in list(loops.items()):  # interleaved: all see the same load
            try:
                times[key].append(seconds_per_step(step, steps, warmup if r == 0 else 1, device))
            except Exception as exc:  # a loop that fails late is dropped, the rest kept
                if key in BASELINES:  # every ratio needs these two
                    raise
                failed[key] = f"{type(exc).__name__}: {exc}"[:300]
                print(f"  {name} {key} failed: {failed[key]}", file=sys.stderr)
                del loops[key], times[key]
                continue
            print(f"  {name} repeat {r + 1} {key}: {times[key][-1] * 1e3:.2f} ms", file=sys.stderr)
    fpi = flops_per_image(spec)
    out: dict = {
        "net": f"{name}: dcgan {cfg['image_size']}x{cfg['image_size']}x{cfg['channels']} "
        f"width {cfg['width']} batch {bs}",
        "steps_timed": steps,
        "gflop_per_training_image": round(fpi / 1e9, 4),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,  # make_step sets it for all loops
        "failed": failed,
        "loops": {},
    }
    base = times["textbook"]
    single = times["ganarch"]
    old = times.get("ganarch_before")
    for key, (step, k) in loops.items():
        med = statistics.median(times[key])
        ips = k * bs / med
        vs_textbook = [k * b / t for b, t in zip(base, times[key], strict=True)]
        vs_single = [k * s / t for s, t in zip(single, times[key], strict=True)]
        out["loops"][key] = {
            "ms_per_step": round(med * 1e3, 3),
            "images_per_s": round(ips, 1),
            "fraction_of_bound": round(ips * fpi / peak, 4),
            # images/s ratios; the median of per-repeat ratios resists a shared machine's
            # load changing between repeats better than the ratio of medians
            "vs_textbook_median": round(statistics.median(vs_textbook), 3),
            "vs_textbook_per_repeat": [round(r, 3) for r in vs_textbook],
            "vs_ganarch_one_seed_median": round(statistics.median(vs_single), 3),
            "vs_ganarch_one_seed_per_repeat": [round(r, 3) for r in vs_single],
            "channels_last": layout[key],
        }
        if isinstance(step, Stepper | CompiledStep):  # how it ran, and why: a figure says
            out["loops"][key]["engine"] = step.record()  # what it ran
        if bf16_peak is not None:  # the bound: the bf16 dense matmul rate
            out["loops"][key]["fraction_of_bf16_bound"] = round(ips * fpi / bf16_peak, 4)
        if old is not None:  # vs ganarch before issue 8 (eager, bf16, NHWC), one seed
            vs_old = [k * b / t for b, t in zip(old, times[key], strict=True)]
            out["loops"][key]["vs_ganarch_before_median"] = round(statistics.median(vs_old), 3)
            out["loops"][key]["vs_ganarch_before_per_repeat"] = [round(r, 3) for r in vs_old]
        print(f"{name} {key}: {med * 1e3:.2f} ms/step, {ips:,.0f} img/s", file=sys.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--nets", default="dcgan,seed", help="comma list of: " + ", ".join(NETS))
    p.add_argument("--ks", default="1,4,8,16", help="fused seed counts (empty: none)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    p.add_argument("--seed-divisor", type=int, default=1, help="the seed net times steps/N")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--matmul", type=int, default=0, help="matmul size for the bound (0: auto)")
    p.add_argument("--precision", default="float32", choices=("float32", "bf16"))
    p.add_argument("--channels-last", action="store_true", help="NHWC on CUDA")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (CUDA)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args()
    args.ks = [int(k) for k in args.ks.split(",") if k.strip()]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    bf16 = args.precision == "bf16" and cuda
    n = args.matmul or (8192 if cuda else 1024)
    # the rate of the arithmetic the step runs: cuDNN runs float32 convolutions as TF32
    tf32 = cuda and not bf16 and torch.backends.cudnn.allow_tf32
    peak = matmul_flops_per_s(device, n, torch.bfloat16 if bf16 else torch.float32, tf32)
    bf16_peak = matmul_flops_per_s(device, n, torch.bfloat16) if cuda else None
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(sys.argv),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ganarch": ganarch.__version__,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "bound_matmul_dtype": "bfloat16" if bf16 else ("tf32" if tf32 else "float32"),
        "bound_matmul_tflop_per_s": round(peak / 1e12, 4),
        "bf16_bound_matmul_tflop_per_s": round(bf16_peak / 1e12, 4) if bf16_peak else None,
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "complete": False,
        "nets": [],
    }
    names = [n.strip() for n in args.nets.split(",")]
    for i, name in enumerate(names):
        result["nets"].append(bench_net(name, args, device, peak, bf16_peak))
        result["complete"] = i == len(names) - 1
        text = json.dumps(result, indent=2)
        print(json.dumps(result["nets"][-1], indent=2), flush=True)
        if args.json:  # after every net: a run cut short keeps what it measured
            with open(args.json, "w") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    main()
