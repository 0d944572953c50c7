"""How many local worker processes ``--workers auto`` runs.

On a CPU one process already uses every core (the workers split the cores between them), so
``auto`` is 1. On CUDA one small DCGAN trial leaves most of the GPU idle (kernel launches, not
arithmetic, bound its step), so ``auto`` runs as many trials at once as the GPU's free memory
holds, at most one per CPU core (each process feeds the GPU from its own core) and at most
``MAX_AUTO_WORKERS``. A worker's memory is estimated from the space's first configuration:
weights, gradients and Adam's two moments in float32 for every seed, twice the step's
activation floor (forward and backward), plus a fixed per-process cost.

**Not yet measured on a GPU**: ``PROCESS_BYTES`` is an estimate (a CUDA context, cuDNN
workspaces, the feature network and the dataset on the device), not a measurement.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ganarch.errors import GanarchError

__all__ = [
    "AUTO",
    "WorkerChoice",
    "auto_workers",
    "choose_workers",
    "parse_workers",
    "worker_bytes",
]

AUTO = "auto"
MAX_AUTO_WORKERS = 8
#: Per-process memory beside the trial's own tensors (an estimate, see the module's note).
PROCESS_BYTES = 3 << 29  # 1.5 GiB
#: The share of the free memory ``auto`` plans to use (the rest absorbs fragmentation).
HEADROOM = 0.8


@dataclass(frozen=True)
class WorkerChoice:
    """The number of worker processes and why (shown to the user)."""

    count: int
    reason: str


def parse_workers(value: Any) -> int | str:
    """``--workers``: a whole number ≥ 1 or ``"auto"``; text digits from the command line
    become an int. Bad input is a ``GanarchError`` naming the option."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GanarchError(f"--workers: expected a whole number or 'auto', got {value!r}")
    if value < 1:
        raise GanarchError(f"--workers: {value!r} is below its minimum 1")
    return value


def worker_bytes(spec: Any, seeds: int) -> int:
    """Estimated device memory of one worker training ``spec`` with ``seeds`` seeds."""
    from ganarch.builder import plan
    from ganarch.spec import activation_bytes

    p = plan(spec)
    n_params = p.generator.n_params + p.discriminator.n_params
    g_shapes = [layer.out_shape for layer in p.generator.layers]
    d_shapes = [layer.out_shape for layer in p.discriminator.layers]
    per_seed = 16 * n_params + 2 * activation_bytes(spec.training.batch_size, g_shapes, d_shapes)
    return PROCESS_BYTES + seeds * per_seed


def choose_workers(
    device_type: str, cores: int, free_bytes: int | None, per_worker_bytes: int
) -> WorkerChoice:
    """The rule, from measured inputs (a pure function, so it is tested without a GPU)."""
    if device_type != "cuda":
        return WorkerChoice(1, f"{device_type}: one process uses every core")
    if free_bytes is None:
        return WorkerChoice(1, "cuda: free memory unknown")
    by_memory = int(free_bytes * HEADROOM // max(per_worker_bytes, 1))
    count = max(1, min(by_memory, cores, MAX_AUTO_WORKERS))
    limit = (
        "the GPU's free memory"
        if count == by_memory
        else f"{cores} CPU cores"
        if count == cores
        else f"at most {MAX_AUTO_WORKERS}"
    )
    gib = 2**30
    return WorkerChoice(
        count,
        f"cuda: {free_bytes / gib:.0f} GiB free, about {per_worker_bytes / gib:.1f} GiB per "
        f"worker (estimated); limited by {limit}",
    )


def auto_workers(settings: Any, space: Any, geometry: Any) -> WorkerChoice:
    """``--workers auto`` for a search: the device it trains on, its free memory and the
    estimated memory of the space's first configuration at the search's geometry."""
    from ganarch.device import choose_device

    device = choose_device(settings.device)
    if device.type != "cuda":
        return choose_workers(device.type, os.cpu_count() or 1, None, 0)
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    spec = geometry.spec(space, space.first_choices())
    return choose_workers("cuda", os.cpu_count() or 1, free, worker_bytes(spec, settings.seeds))
