"""Which device a run trains on: CUDA when there is one, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from ganarch.errors import GanarchError

__all__ = ["choose_device", "describe_device"]


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: the best available device; otherwise the one named, checked.

    Example::

        choose_device()          # device(type='cuda', index=0) on a GPU machine
        choose_device("cpu")     # device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise GanarchError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GanarchError(f"device {device!r} asked for, but CUDA is not available here")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise GanarchError(
                f"device {device!r} asked for, but there are {torch.cuda.device_count()} GPUs"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise GanarchError(f"device {device!r} asked for, but MPS is not available here")
    elif dev.type != "cpu":
        raise GanarchError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def describe_device(device: torch.device) -> str:
    """A short human description: ``"cuda:0 (NVIDIA H100 80GB HBM3)"``, ``"cpu (2 threads)"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
