"""Training-step and evaluation throughput, measured side by side in one process.

Compares ganarch's trainer (whole dataset on the device, batches drawn by index, logits loss,
no host-device sync in the step loop) with the textbook loop people write first (a DataLoader
over a TensorDataset, ``nn.BCELoss`` on sigmoid outputs, ``.item()`` every step), on the same
spec, data and device. The trainer's per-step cost is the difference of two runs of different
length, so its one-off costs (evaluation, artifacts, set-up) cancel out.

Usage::

    python bench/bench_train.py                        # 32×32 digits, paper DCGAN, width 32
    python bench/bench_train.py --image-size 64 --width 64 --device cuda --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ganarch
from ganarch.data import load_dataset


def ganarch_seconds_per_step(spec, data, steps: int, device: str) -> float:
    """Per-step seconds of ganarch.train: (T(2n) - T(n)) / n, evaluating only at the end."""
    times = []
    for n in (steps, 2 * steps):
        start = time.perf_counter()
        ganarch.train(spec, data, n, seed=0, device=device, eval_every=n, progress=False)
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / steps


def textbook_seconds_per_step(spec, data, steps: int, device: str) -> float:
    """Per-step seconds of the usual tutorial loop on the same spec and data."""
    torch.manual_seed(0)
    G, D = spec.build()
    G, D = G.to(device), D.to(device)
    t = spec.training
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
    loader = DataLoader(
        TensorDataset(data.images), batch_size=t.batch_size, shuffle=True, drop_last=True
    )
    bce = nn.BCELoss()
    done, start = 0, None
    while done < steps + 3:
        for (real,) in loader:
            if done == 3:  # warm-up excluded
                start = time.perf_counter()
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
            done += 1
            if done == steps + 3:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def evaluator_images_per_second(data, device: str, n: int = 1000) -> float:
    ev = ganarch.Evaluator(data, device=device)
    fake = data.images[:n].to(device)
    ev.evaluate(fake)  # warm-up
    start = time.perf_counter()
    ev.evaluate(fake)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    spec = ganarch.dcgan_spec(args.image_size, 1, width=args.width, batch_size=args.batch)
    data = load_dataset("digits", args.image_size, 1)
    ours, textbook = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        ours.append(ganarch_seconds_per_step(spec, data, args.steps, args.device))
        textbook.append(textbook_seconds_per_step(spec, data, args.steps, args.device))
    o, b = statistics.median(ours), statistics.median(textbook)
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ganarch": ganarch.__version__,
        "spec": f"dcgan {args.image_size}x{args.image_size}x1 width {args.width} batch {args.batch}",
        "ganarch_images_per_s": round(args.batch / o, 1),
        "textbook_images_per_s": round(args.batch / b, 1),
        "speedup_vs_textbook": round(b / o, 3),
        "per_repeat_ratio": [round(tb / ob, 3) for ob, tb in zip(ours, textbook, strict=True)],
        "evaluator_images_per_s": round(evaluator_images_per_second(data, args.device), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
