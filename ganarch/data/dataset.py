"""A dataset as one tensor of images in [-1, 1] (plus optional labels), and the helpers that
bring any source of images to a requested size and channel count.

The whole dataset lives on the training device; batches are drawn by index, so there is no
per-step DataLoader cost for small images. Datasets are treated as immutable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganarch.errors import GanarchError

__all__ = [
    "DatasetError",
    "ImageDataset",
    "center_crop",
    "convert_channels",
    "prepare_images",
    "resize",
    "to_signed_unit",
]

#: ITU-R BT.601 luma weights (what Pillow's ``convert("L")`` uses too).
LUMA = (0.299, 0.587, 0.114)


class DatasetError(GanarchError):
    """A dataset cannot be loaded: unknown name, bad argument, missing or malformed file."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images ``(N, C, H, W)`` float32 in [-1, 1] with optional integer labels ``(N,)``.

    ``class_names[k]`` names label ``k``; an unlabelled dataset has ``labels=None`` and no
    class names. ``name`` is the reference it was loaded from (``"digits"``, ``"shapes:512"``).

    Example::

        data = ganarch.data.load_dataset("digits", image_size=32, channels=1, device="cuda")
        train, held_out = data.split(0.2, seed=0)
        batch = train.images[torch.randint(len(train), (128,), device=train.device)]
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()
    name: str = ""
    # Shared between copies of the same content on different devices (see ``fingerprint``).
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise DatasetError(f"{self._label()}: images must be a (N, C, H, W) tensor")
        if not x.is_floating_point():
            raise DatasetError(f"{self._label()}: images must be floating point, got {x.dtype}")
        if x.shape[1] not in (1, 3):
            raise DatasetError(f"{self._label()}: images need 1 or 3 channels, got {x.shape[1]}")
        if x.shape[2] != x.shape[3]:
            raise DatasetError(
                f"{self._label()}: images must be square, got {x.shape[2]}×{x.shape[3]}"
            )
        if x.shape[0] == 0:
            raise DatasetError(f"{self._label()}: the dataset has no images")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.labels is None:
            if self.class_names:
                raise DatasetError(f"{self._label()}: class names given without labels")
            return
        y = self.labels
        if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
            raise DatasetError(f"{self._label()}: labels must be a tensor of shape ({x.shape[0]},)")
        if y.dtype != torch.int64:
            object.__setattr__(self, "labels", y.long())
        if not self.class_names:
            top = int(self.labels.max()) + 1  # one sync, at construction only
            object.__setattr__(self, "class_names", tuple(str(k) for k in range(top)))

    def _label(self) -> str:
        return self.name or "dataset"

    # --- shape ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        """Height (= width) of every image."""
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or ``None`` for an unlabelled dataset."""
        return len(self.class_names) if self.labels is not None else None

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __repr__(self) -> str:
        classes = f", {self.num_classes} classes" if self.labels is not None else ", unlabelled"
        return (
            f"ImageDataset({self.name!r}, {len(self)} images of "
            f"{self.channels}×{self.image_size}×{self.image_size}{classes}, device={self.device})"
        )

    # --- moving and slicing -----------------------------------------------------------------

    def to(self, device: torch.device | str | None) -> ImageDataset:
        """The same dataset on ``device`` (``self`` when it is already there)."""
        if device is None:
            return self
        device = torch.device(device)
        if _same_device(self.device, device):
            return self
        labels = self.labels.to(device) if self.labels is not None else None
        return replace(self, images=self.images.to(device), labels=labels)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """The images at ``indices`` (class names are kept even if a class is absent)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        labels = self.labels[idx] if self.labels is not None else None
        return ImageDataset(self.images[idx], labels, self.class_names, self.name)

    def split(self, fraction: float = 0.2, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Split into ``(train, held_out)`` with about ``fraction`` of the images held out.

        Disjoint and deterministic given ``seed``. A labelled dataset is split per class
        (stratified), so both parts keep the class proportions; every class with at least
        two images appears in both parts.
        """
        if not 0.0 < fraction < 1.0:
            raise DatasetError(f"split fraction must be between 0 and 1, got {fraction}")
        if len(self) < 2:
            raise DatasetError(f"{self._label()}: cannot split a dataset of {len(self)} image")
        g = torch.Generator().manual_seed(int(seed))
        if self.labels is None:
            perm = torch.randperm(len(self), generator=g)
            k = min(max(1, round(len(self) * fraction)), len(self) - 1)
            held, train = perm[:k], perm[k:]
        else:
            labels = self.labels.cpu()
            groups = [torch.nonzero(labels == c).flatten() for c in range(len(self.class_names))]
            quotas = _stratified_quotas([m.numel() for m in groups], fraction)
            held_parts, train_parts = [], []
            for members, k in zip(groups, quotas, strict=True):
                members = members[torch.randperm(members.numel(), generator=g)]
                held_parts.append(members[:k])
                train_parts.append(members[k:])
            held = torch.cat(held_parts).sort().values
            train = torch.cat(train_parts).sort().values
        return self.subset(train), self.subset(held)

    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` random images (with replacement) and their labels, drawn on the device.

        No host-device synchronisation: safe inside a training loop. A CUDA dataset needs a
        CUDA ``generator`` (or none).
        """
        idx = torch.randint(len(self), (n,), device=self.device, generator=generator)
        labels = self.labels[idx] if self.labels is not None else None
        return self.images[idx], labels

    def class_histogram(self) -> torch.Tensor:
        """Share of images per class, ``(num_classes,)`` float on the device."""
        if self.labels is None:
            raise DatasetError(f"{self._label()}: an unlabelled dataset has no class histogram")
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).float()
        return counts / counts.sum()

    # --- identity ---------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A short hash of the content (images, labels, class names), not of the name.

        Stable across runs, processes and devices; any change to a pixel or a label changes
        it. Computed once and shared by the copies ``to()`` makes.
        """
        if not self._fingerprint:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((tuple(self.images.shape), self.class_names)).encode())
            h.update(self.images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            if self.labels is not None:
                h.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]


def _stratified_quotas(sizes: list[int], fraction: float) -> list[int]:
    """How many of each class to hold out: ``fraction`` of the total overall (largest
    remainders), at least one of every class with two or more images, never a whole class."""
    exact = [n * fraction for n in sizes]
    quotas = [int(q) for q in exact]
    spare = round(sum(sizes) * fraction) - sum(quotas)
    by_remainder = sorted(range(len(sizes)), key=lambda c: (quotas[c] - exact[c], c))
    for c in by_remainder[: max(spare, 0)]:
        quotas[c] += 1
    return [min(max(q, 1), n - 1) if n >= 2 else 0 for q, n in zip(quotas, sizes, strict=True)]


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cpu" or b.index is None:
        return True
    return a.index == b.index if a.index is not None else b.index == torch.cuda.current_device()


# --- helpers: any images -> (N, C, size, size) in [-1, 1] ------------------------------------


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float ``(N, C, H, W)`` images to ``size``×``size``.

    Downsizing uses anti-aliased bilinear filtering (no aliasing from skipped pixels);
    upsizing uses plain bilinear interpolation. Non-square inputs are stretched: crop them
    first with :func:`center_crop` to keep the aspect ratio.
    """
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    down = size < h or size < w
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=down
    )


def center_crop(images: torch.Tensor) -> torch.Tensor:
    """The largest centred square of ``(..., H, W)`` images."""
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[..., top : top + s, left : left + s]


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repeating the channel, RGB -> grey by luminance (BT.601 weights)."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images * w).sum(dim=1, keepdim=True)
    raise DatasetError(f"cannot convert images with {c} channels to {channels}")


def to_signed_unit(images: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Map values in ``[low, high]`` linearly onto ``[-1, 1]`` (clamped)."""
    x = (images - low) * (2.0 / (high - low)) - 1.0
    return x.clamp_(-1.0, 1.0)


def prepare_images(
    images: torch.Tensor | np.ndarray,
    image_size: int,
    channels: int,
    *,
    max_value: float = 255.0,
    channels_last: bool = False,
    chunk: int = 8192,
) -> torch.Tensor:
    """Any ``(N, C, H, W)`` (or ``(N, H, W, C)`` with ``channels_last``, or ``(N, H, W)``)
    images with values in ``[0, max_value]`` -> float32 ``(N, channels, size, size)`` in [-1, 1].

    Steps: centre-crop to a square, resize, convert channels, scale. Done in chunks so
    large uint8 sources never exist as one big float copy at their original size.
    """
    check_size_channels(image_size, channels)
    x = images
    if x.ndim == 3:
        x = x[:, None]
    elif channels_last:
        x = x.transpose(0, 3, 1, 2) if isinstance(x, np.ndarray) else x.permute(0, 3, 1, 2)
    if x.ndim != 4:
        raise DatasetError(f"expected a batch of images, got shape {tuple(x.shape)}")
    if x.shape[1] == 4:  # RGBA: the alpha channel carries no image content here
        x = x[:, :3]
    parts = []
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        if isinstance(part, np.ndarray):  # a float copy, so read-only buffers are fine
            part = torch.from_numpy(part.astype(np.float32))
        part = part.to(torch.float32) / max_value
        part = convert_channels(resize(center_crop(part), image_size), channels)
        parts.append(to_signed_unit(part))
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).contiguous()


def check_size_channels(image_size: Any, channels: Any) -> None:
    """Raise ``DatasetError`` unless ``image_size`` is a positive int and channels 1 or 3."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DatasetError(f"image size must be a positive integer, got {image_size!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DatasetError(f"channels must be 1 or 3, got {channels!r}")
