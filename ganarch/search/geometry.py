"""A search's geometry, resolved once: image size, channels, generator/discriminator width and
latent size.

Each comes from the search's settings (the command's ``--image-size``, ``--channels``,
``--width``; ``latent_dim`` from Python), else from the space file's defaults; channels not
given are the dataset's own (``native_channels``: 1 when every image is grey). The search
resolves it once (``SearchConfig.geometry``) and hands the same object to the engine (the data
it loads, its evaluator), the objective (every trial's spec, so the ``spec`` a trial records)
and the study's settings record, so the three cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ganarch.errors import GanarchError

__all__ = ["Geometry"]


@dataclass(frozen=True)
class Geometry:
    """The shape every trial of one search trains at (plain data: it pickles to workers)."""

    image_size: int
    channels: int
    width: int
    latent_dim: int

    @classmethod
    def resolve(cls, settings: Any, space: Any) -> Geometry:
        """From ``settings`` (a ``TrialSettings``: flags, ``None`` where not given), then
        ``space``'s defaults, then the dataset's own channels (loading it at 8×8). A dataset
        that cannot be loaded is bad input naming ``--data``."""
        channels = settings.channels
        if channels is None:
            from ganarch.data.dataset import DatasetError
            from ganarch.data.registry import native_channels

            try:
                channels = native_channels(settings.data)
            except DatasetError as exc:
                raise GanarchError(f"--data {settings.data}: {exc}") from None
        return cls(
            image_size=settings.image_size or space.image_size,
            channels=channels,
            width=settings.width or space.width,
            latent_dim=settings.latent_dim or space.latent_dim,
        )

    def spec(self, space: Any, choices: Mapping[str, Any]) -> Any:
        """``space``'s spec for ``choices`` at this geometry (raises ``SpecError``)."""
        return space.spec(
            choices,
            channels=self.channels,
            image_size=self.image_size,
            width=self.width,
            latent_dim=self.latent_dim,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "width": self.width,
            "latent_dim": self.latent_dim,
        }
