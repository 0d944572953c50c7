"""Inception FID, only from a local TorchScript file the user points at (nothing is downloaded).

Give the file with ``Evaluator(..., inception_weights=PATH)`` or ``$GANARCH_INCEPTION_WEIGHTS``.
It must be a TorchScript feature extractor mapping ``(N, 3, 299, 299)`` images in [0, 255] to
``(N, 2048)`` features, e.g. the ``inception-2015-12-05`` TorchScript of the StyleGAN2-ADA /
clean-fid metrics (called with ``return_features=True`` when its ``forward`` takes that
argument). Images are converted from [-1, 1], grey is repeated to RGB, and everything is
resized (bilinear) to 299×299.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ganarch.errors import GanarchError

INCEPTION_ENV = "GANARCH_INCEPTION_WEIGHTS"
INCEPTION_SIZE = 299


def inception_path(path: str | os.PathLike | None = None) -> Path | None:
    """The configured weights file: ``path``, else ``$GANARCH_INCEPTION_WEIGHTS``, else None."""
    if path is not None:
        return Path(path)
    env = os.environ.get(INCEPTION_ENV, "").strip()
    return Path(env) if env else None


class InceptionFeatures:
    """A loaded TorchScript Inception feature extractor; call it on images in [-1, 1]."""

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu") -> None:
        self.path = Path(path).expanduser()
        self.device = torch.device(device)
        if not self.path.is_file():
            raise GanarchError(
                f"Inception weights file {str(self.path)!r} does not exist "
                f"(expected a TorchScript feature extractor; set by inception_weights= or "
                f"${INCEPTION_ENV})"
            )
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format
                warnings.simplefilter("ignore", DeprecationWarning)  # these weights ship in
                self.module = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as exc:
            raise GanarchError(
                f"{str(self.path)!r} is not a loadable TorchScript Inception feature extractor: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            args = [a.name for a in self.module.forward.schema.arguments]
        except Exception:
            args = []
        self._return_features = "return_features" in args

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """``(N, C, H, W)`` images in [-1, 1] -> ``(N, D)`` float32 features."""
        out = []
        for chunk in images.split(batch):
            x = chunk.to(self.device, torch.float32)
            if x.shape[1] not in (1, 3):
                raise GanarchError(f"Inception FID needs 1 or 3 channels, got {x.shape[1]}")
            # Quantise as a saved 8-bit image would be, then resize (grey before it is
            # repeated to RGB: a third of the work).
            x = ((x.clamp(-1, 1) + 1) * 127.5).round()
            if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
                x = F.interpolate(
                    x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
                )
            x = x.expand(-1, 3, -1, -1)
            try:
                y = (
                    self.module(x, return_features=True)
                    if self._return_features
                    else self.module(x)
                )
            except Exception as exc:
                raise GanarchError(
                    f"the Inception file {str(self.path)!r} failed on a (N, 3, 299, 299) batch: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(y, (tuple, list)):
                y = y[0]
            out.append(y.reshape(y.shape[0], -1).float())
        return torch.cat(out)
