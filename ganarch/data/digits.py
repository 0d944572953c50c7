"""``digits``: the 1,797 handwritten 8×8 digits that ship inside scikit-learn (no download)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ganarch.data.dataset import DatasetError, ImageDataset, prepare_images

__all__ = ["load_digits"]


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) float32 pixel values 0..16 and (1797,) int64 labels."""
    # Importing scikit-learn takes seconds; its digits are one small CSV we can read directly.
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
            if table.shape == (1797, 65):
                return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DatasetError(
            "the digits dataset needs scikit-learn: pip install scikit-learn"
        ) from None
    bunch = sklearn_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def load_digits(arg: str | None, *, image_size: int, channels: int, seed: int = 0) -> ImageDataset:
    """Handwritten digits from scikit-learn: 1,797 images, 10 classes, 8×8 resized."""
    if arg is not None:
        raise DatasetError(f"digits takes no argument, got 'digits:{arg}'")
    images, labels = _raw()
    x = prepare_images(images, image_size, channels, max_value=16.0)  # pixel values 0..16
    return ImageDataset(
        x, torch.from_numpy(labels.copy()), tuple(str(d) for d in range(10)), "digits"
    )
