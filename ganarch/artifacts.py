"""Writing a run directory: the sample grid (Pillow), the training curves (matplotlib, Agg),
JSON written atomically, and checkpoints as plain state dicts.

Nothing here knows about training; the trainer hands over tensors and plain data.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ganarch.errors import GanarchError

__all__ = [
    "ARTIFACT_PATTERNS",
    "prepare_run_dir",
    "save_curves",
    "save_grid",
    "save_state_dict",
    "write_json",
]

#: The files a run writes (what ``overwrite=True`` clears before a new run).
ARTIFACT_PATTERNS = (
    "spec.json",
    "metrics.json",
    "samples.png",
    "samples_step*.png",
    "curves.png",
    "generator.pt",
    "discriminator.pt",
)

#: A grid is upscaled (nearest neighbour) until it is at least this many pixels wide.
GRID_MIN_WIDTH = 512


def prepare_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create ``path`` (parents too) for a new run; refuse a non-empty directory.

    With ``overwrite`` the files of an earlier run are removed first (other files stay).
    Raises ``GanarchError`` when ``path`` is a file, or a non-empty directory without
    ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GanarchError(f"run directory {path} is a file")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise GanarchError(
                f"run directory {path} is not empty; choose a new one or overwrite it explicitly"
            )
        for pattern in ARTIFACT_PATTERNS:
            for old in path.glob(pattern):
                if old.is_file():
                    old.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, write: Any, mode: str = "w") -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain(value: Any) -> Any:
    """JSON-safe data: non-finite floats become ``None`` (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _plain(value.item())
    if isinstance(value, Path):
        return str(value)
    try:
        return _plain(float(value))
    except (TypeError, ValueError):
        return str(value)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, strict JSON, atomically (readers never see half a file)."""
    text = json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"
    return _atomic_write(Path(path), lambda f: f.write(text))


def save_state_dict(module: torch.nn.Module, path: str | Path) -> Path:
    """Save ``module``'s state dict on the CPU, loadable with ``torch.load(weights_only=True)``."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    return _atomic_write(Path(path), lambda f: torch.save(state, f), mode="wb")


def grid_image(images: torch.Tensor, nrow: int = 8, pad: int = 2):
    """A ``PIL.Image`` grid of images in [-1, 1] (``(N, C, H, W)``, C 1 or 3), upscaled."""
    from PIL import Image

    x = images.detach().float().cpu()
    x = torch.nan_to_num(x, nan=-1.0).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    canvas = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), 64, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        canvas[:, top : top + h, left : left + w] = x[i]
    array = canvas.permute(1, 2, 0).numpy()
    img = Image.fromarray(array[:, :, 0], "L") if c == 1 else Image.fromarray(array, "RGB")
    scale = max(1, math.ceil(GRID_MIN_WIDTH / img.width))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Save images in [-1, 1] as an ``nrow``-wide PNG grid, upscaled so it is viewable."""
    img = grid_image(images, nrow)
    return _atomic_write(Path(path), lambda f: img.save(f, format="PNG"), mode="wb")


def save_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot G/D losses, D(x)/D(G(z)) and quality against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display on servers; a no-op when already Agg
    from matplotlib.figure import Figure  # Figure directly: no global pyplot state

    def series(key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for rec in history:
            v = rec.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                xs.append(rec["step"])
                ys.append(v)
        return xs, ys

    fig = Figure(figsize=(12, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    for key, label in (("loss_d", "D loss"), ("loss_g", "G loss")):
        axes[0].plot(*series(key), marker="o", ms=3, label=label)
    axes[0].set_title("losses")
    for key, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        axes[1].plot(*series(key), marker="o", ms=3, label=label)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("discriminator outputs")
    axes[2].plot(*series("quality"), marker="o", ms=3, color="tab:green", label="quality")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_title("quality (higher is better)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _atomic_write(Path(path), lambda f: fig.savefig(f, format="png"), mode="wb")
