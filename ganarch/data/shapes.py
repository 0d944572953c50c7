"""``shapes``: a procedural dataset of geometric shapes on a dark background, with known modes.

Each image shows one shape (circle, square, triangle, cross) in one colour (red, green,
blue, yellow), at a random position and size: 16 classes, balanced, so mode coverage can
be counted exactly. With one channel the colours become four grey levels, so the 16 modes
stay distinguishable. Drawn directly at the requested size with anti-aliased edges (from signed
distances), on the CPU, deterministic from the seed and independent of the size.
"""

from __future__ import annotations

import torch

from ganarch.data.dataset import DatasetError, ImageDataset, check_size_channels

__all__ = ["COLOURS", "DEFAULT_COUNT", "GREYS", "SHAPES", "load_shapes", "make_shapes"]

SHAPES = ("circle", "square", "triangle", "cross")
#: RGB colours in [0, 1] (channels=3).
COLOURS = {
    "red": (0.92, 0.15, 0.12),
    "green": (0.15, 0.80, 0.22),
    "blue": (0.20, 0.35, 1.00),
    "yellow": (0.98, 0.86, 0.12),
}
#: Grey levels in [0, 1] (channels=1), far enough apart to tell the modes apart.
GREYS = {"dim": 0.30, "grey": 0.52, "light": 0.76, "white": 1.0}
DEFAULT_COUNT = 4096
MAX_COUNT = 1_000_000
BACKGROUND = 0.06  # dark, not black, so the background is not at the tanh limit
_CHUNK = 1024


def _coverage(shape: int, cx, cy, r, size: int) -> torch.Tensor:
    """Anti-aliased coverage ``(n, size, size)`` in [0, 1] of one kind of shape.

    Each shape is a signed distance (negative inside); a pixel's coverage is how much of
    its width lies inside the edge, which anti-aliases without supersampling.
    """
    n = cx.numel()
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres
    # Local coordinates in units of each shape's half-extent r (y grows downwards).
    rr = r.view(n, 1, 1)
    x = (coords.view(1, 1, size) - cx.view(n, 1, 1)) / rr
    y = (coords.view(1, size, 1) - cy.view(n, 1, 1)) / rr
    ax, ay = x.abs(), y.abs()
    if shape == 0:  # circle
        d = torch.sqrt(x * x + y * y) - 1.0
    elif shape == 1:  # square
        d = torch.maximum(ax, ay) - 0.82
    elif shape == 2:  # upright triangle: apex (0, -1), base y = 0.8 from x = -1 to 1
        d = torch.maximum(y - 0.8, (1.8 * ax - (y + 1.0)) / 2.0591)  # 2.0591 = |(1.8, -1)|
    else:  # cross: two bars
        d = torch.minimum(torch.maximum(ax - 0.28, ay - 0.95), torch.maximum(ax - 0.95, ay - 0.28))
    pixel = 2.0 / size
    return (0.5 - d * rr / pixel).clamp_(0.0, 1.0)


def make_shapes(n: int, image_size: int, channels: int, seed: int = 0) -> ImageDataset:
    """``n`` shape images of ``channels``×``image_size``² in [-1, 1], deterministic from ``seed``."""
    check_size_channels(image_size, channels)
    palette = COLOURS if channels == 3 else GREYS
    k_col = len(palette)
    k = len(SHAPES) * k_col
    if n < k:
        raise DatasetError(f"shapes needs at least {k} images (one per class), got {n}")
    g = torch.Generator().manual_seed(int(seed))
    # Balanced classes in a random order; every random draw is made for all n images at once
    # and independently of the size, so the same seed gives the same scenes at every size.
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    r = 0.40 + 0.30 * torch.rand(n, generator=g)  # size: 40%..70% of the image width
    room = 0.96 - r
    cx = (torch.rand(n, generator=g) * 2 - 1) * room
    cy = (torch.rand(n, generator=g) * 2 - 1) * room
    brightness = 0.9 + 0.1 * torch.rand(n, generator=g)
    shape_idx, colour_idx = labels // k_col, labels % k_col
    colours = torch.tensor(list(palette.values()), dtype=torch.float32).view(k_col, -1)
    colour = colours[colour_idx] * brightness.view(n, 1)  # (n, channels)

    cover = torch.empty(n, image_size, image_size)
    for k_shape in range(len(SHAPES)):
        members = torch.nonzero(shape_idx == k_shape).flatten()
        for s in range(0, members.numel(), _CHUNK):
            idx = members[s : s + _CHUNK]
            cover[idx] = _coverage(k_shape, cx[idx], cy[idx], r[idx], image_size)
    out = cover.unsqueeze(1) * (colour.view(n, channels, 1, 1) - BACKGROUND)
    out.add_(BACKGROUND)
    out.mul_(2).sub_(1).clamp_(-1, 1)
    names = tuple(f"{c} {s}" for s in SHAPES for c in palette)
    return ImageDataset(out, labels, names, f"shapes:{n}")


def load_shapes(arg: str | None, *, image_size: int, channels: int, seed: int = 0) -> ImageDataset:
    """Coloured geometric shapes, 16 known modes (4 shapes × 4 colours); shapes:N sets the count."""
    if arg is None or arg == "":
        n = DEFAULT_COUNT
    else:
        try:
            n = int(arg.replace("_", ""))
        except ValueError:
            n = -1
        if not 1 <= n <= MAX_COUNT:
            raise DatasetError(
                f"shapes:{arg}: the argument is the number of images, a whole number "
                f"from 16 to {MAX_COUNT:,} (default {DEFAULT_COUNT})"
            )
    return make_shapes(n, image_size, channels, seed)
