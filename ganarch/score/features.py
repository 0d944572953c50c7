"""A small feature network trained on the dataset itself, cached on disk.

No Inception weights can be downloaded here, so sample quality is measured in the feature
space of a small CNN trained on the real images (as several MNIST GAN papers do): a
classifier (cross-entropy) when the dataset has labels, otherwise an autoencoder
(reconstruction). The features are its penultimate layer (``FEATURE_DIM`` = 128 values).

The net sees each image standardised (its own mean and standard deviation removed), so
its features follow shapes and strokes, not background brightness or contrast.

Training is quick (a few hundred Adam steps with small random shifts), deterministic given
a seed, and done once per dataset and image size: the weights are cached under
``cache_dir`` (argument), ``$GANARCH_CACHE`` or ``~/.cache/ganarch``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganarch.errors import GanarchError

#: Part of the cache key: bump it whenever the architecture or training recipe changes.
FEATURE_NET_VERSION = "featnet-v2"
FEATURE_DIM = 128
CACHE_ENV = "GANARCH_CACHE"
#: Share of the real images the feature net never trains on (the evaluator's held-out set).
HELD_OUT_FRACTION = 0.2
#: Adam steps for the classifier (the autoencoder takes twice as many).
STEPS = 300


# --- the dataset, seen through a narrow interface --------------------------------------------


@dataclass(frozen=True)
class RealData:
    """What scoring needs from a dataset: images in [-1, 1], optional labels, a name."""

    images: torch.Tensor  # (N, C, H, W) float
    labels: torch.Tensor | None  # (N,) int64, or None when unlabelled
    num_classes: int | None
    name: str
    #: The dataset's own content hash where it has one (``ImageDataset.fingerprint()``).
    content_hash: str | None = None


def real_data(dataset: Any) -> RealData:
    """Read a ``ganarch.data.ImageDataset`` (or anything with ``images`` and ``labels``)."""
    if isinstance(dataset, RealData):
        return dataset
    images = getattr(dataset, "images", None)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise GanarchError(
            f"scoring needs a dataset with an (N, C, H, W) 'images' tensor, got {type(dataset)!r}"
        )
    labels = getattr(dataset, "labels", None)
    num_classes = getattr(dataset, "num_classes", None)
    if labels is not None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() != images.shape[0]:
            raise GanarchError(f"dataset has {images.shape[0]} images but {labels.numel()} labels")
        if num_classes is None:
            num_classes = int(labels.max()) + 1
    if labels is None or not num_classes or num_classes < 2:
        labels, num_classes = None, None
    name = str(getattr(dataset, "name", "") or "dataset")
    fp = getattr(dataset, "fingerprint", None)
    content_hash = str(fp()) if callable(fp) else None
    return RealData(
        images.float(), labels, int(num_classes) if num_classes else None, name, content_hash
    )


def fingerprint(data: RealData) -> str:
    """A content hash of the images and labels, independent of the device."""
    if data.content_hash:
        return data.content_hash
    h = hashlib.sha256()
    images = data.images.detach().to("cpu", torch.float32).contiguous()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.numpy().tobytes())
    if data.labels is not None:
        h.update(data.labels.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def split_indices(
    n: int, seed: int = 0, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic ``(train, held_out)`` index split with ``HELD_OUT_FRACTION`` held out;
    stratified by class when ``labels`` are given (both parts keep the class shares)."""
    gen = torch.Generator().manual_seed(seed)
    if n < 2:
        return torch.arange(n), torch.zeros(0, dtype=torch.long)
    groups = (
        [torch.arange(n)]
        if labels is None
        else [torch.nonzero(labels.cpu() == c).flatten() for c in labels.cpu().unique()]
    )
    train, held = [], []
    for members in groups:
        members = members[torch.randperm(members.numel(), generator=gen)]
        k = min(round(members.numel() * HELD_OUT_FRACTION), members.numel() - 1)
        held.append(members[:k])
        train.append(members[k:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


# --- the network ------------------------------------------------------------------------------


#: Per-image standard deviations below this are not amplified further: a faint pattern on a
#: flat grey (a generator that has barely started) is not blown up into strokes. A real
#: digit's is about 0.6 in [-1, 1].
MIN_STD = 0.25


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each image minus its mean, over its standard deviation (at least ``MIN_STD``).

    The feature net sees only this, so its features do not change when an image's
    brightness or contrast does (``a·x + b`` with ``a > 0`` gives the same features as long
    as the standard deviation stays above ``MIN_STD``): a digit drawn on a grey background
    is judged by its strokes, not by its background.
    """
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, *([1] * (x.dim() - 1)))
    std = flat.std(1).clamp_min(MIN_STD).view(-1, *([1] * (x.dim() - 1)))
    return (x - mean) / std


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1),
    )


class FeatureNet(nn.Module):
    """Conv encoder to a ``FEATURE_DIM`` vector; a class head or a decoder on top.

    ``features(x)`` is the penultimate layer (pre-activation, so closer to Gaussian for FID);
    ``forward(x)`` gives class logits for a classifier (``num_classes`` given), else a
    reconstruction of the standardised image (see :func:`standardise`); ``embed(images)``
    returns both features and logits, batched.
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        num_classes: int | None,
        dim: int = FEATURE_DIM,
    ) -> None:
        super().__init__()
        self.channels, self.num_classes = channels, num_classes
        self.image_shape = (channels, height, width)
        size, image_width = max(height, width), width
        # Above 16 px the stem already halves: CPU cost stays that of a 16 px net.
        stem_stride = 2 if size > 16 else 1
        size = math.ceil(size / stem_stride)
        layers, width = [_block(channels, 16, stem_stride)], 16
        while size > 4:  # halve down to at most 4×4, widening to 64 channels
            out = min(width * 2, 64)
            layers.append(_block(width, out, 2))
            width, size = out, math.ceil(size / 2)
        pool = [nn.AdaptiveAvgPool2d(4)] if size != 4 or height != image_width else []
        self.encoder = nn.Sequential(*layers, *pool, nn.Flatten())
        self.project = nn.Linear(width * 16, dim)
        if num_classes:
            self.head = nn.Sequential(nn.LeakyReLU(0.1), nn.Linear(dim, num_classes))
        else:
            self.head = nn.Sequential(
                nn.LeakyReLU(0.1),
                nn.Linear(dim, 64 * 16),
                nn.Unflatten(1, (64, 4, 4)),
                nn.LeakyReLU(0.1),
                nn.Upsample(size=(height, image_width), mode="bilinear", align_corners=False),
                nn.Conv2d(64, 32, 3, 1, 1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(32, channels, 3, 1, 1),  # reconstructs the standardised image
            )

        # Set after training from the training images' features: features are centred and
        # scaled so their mean per-dimension variance is 1 (FID/KID values comparable across
        # datasets; the cubic KID kernel expects features of order one).
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))

    @property
    def is_classifier(self) -> bool:
        return bool(self.num_classes)

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.encoder(standardise(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised penultimate layer, ``(N, FEATURE_DIM)``."""
        return (self._raw(x) - self.center) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (classifier) or a reconstruction (autoencoder)."""
        return self.head(self._raw(x))

    @torch.no_grad()
    def fit_normalisation(self, images: torch.Tensor, batch: int = 1024) -> None:
        """Set ``center``/``scale`` from the raw features of ``images`` (eval mode)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        raw = torch.cat([self._raw(c.to(device, torch.float32)) for c in images.split(batch)])
        self.center.copy_(raw.mean(0))
        self.scale.copy_(raw.var(0).mean().sqrt().clamp_min(1e-8))
        self.train(was_training)

    @torch.no_grad()
    def embed(
        self, images: torch.Tensor, batch: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features, logits or None)`` for a batch of images, in eval mode, float32."""
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            feats, logits = [], []
            for chunk in images.split(batch):
                raw = self._raw(chunk.to(device, torch.float32))
                feats.append((raw - self.center) / self.scale)
                if self.is_classifier:
                    logits.append(self.head(raw))
            return torch.cat(feats), (torch.cat(logits) if logits else None)
        finally:
            self.train(was_training)


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: float) -> torch.Tensor:
    """Random per-image translation by up to ``max_shift`` of the width (light augmentation)."""
    n = x.shape[0]
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift)  # grid units span 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = t
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    # Pad with the background value (images live in [-1, 1]; -1 is black).
    return (
        F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    )


@dataclass(frozen=True)
class TrainReport:
    kind: str  # "classifier" or "autoencoder"
    steps: int
    held_out_accuracy: float | None
    held_out_mse: float | None


def train_feature_net(
    data: RealData, train_idx: torch.Tensor, held_idx: torch.Tensor, *, seed: int, device
) -> tuple[FeatureNet, TrainReport]:
    """Train a fresh feature net on ``data.images[train_idx]`` (deterministic given ``seed``)."""
    _, c, h, w = data.images.shape
    # All randomness comes from `seed`: the initial weights (drawn on the CPU without touching
    # the global generator's state), the batches and the shifts. Nothing draws on the device.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # CPU only: CUDA untouched
        net = FeatureNet(c, h, w, data.num_classes)
    net = net.to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    x_all = data.images.to(device)
    y_all = data.labels.to(device) if data.labels is not None else None
    n = len(train_idx)
    steps, batch = (STEPS, 64) if net.is_classifier else (2 * STEPS, 64)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    net.train()
    for _ in range(steps):
        pick = train_idx[torch.randint(n, (min(batch, n),), generator=gen)].to(device)
        x = _shift(x_all[pick], gen, 0.1)
        out = net(x)
        if net.is_classifier:
            loss = F.cross_entropy(out, y_all[pick])
        else:
            loss = F.mse_loss(out, standardise(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    net.fit_normalisation(x_all[train_idx.to(device)])
    acc = mse = None
    if len(held_idx):
        with torch.no_grad():
            xh = x_all[held_idx.to(device)]
            if net.is_classifier:
                _, logits = net.embed(xh)
                acc = float((logits.argmax(1) == y_all[held_idx.to(device)]).float().mean())
            else:
                mse = float(F.mse_loss(net(xh), standardise(xh)))
    kind = "classifier" if net.is_classifier else "autoencoder"
    return net, TrainReport(kind, steps, acc, mse)


# --- the cache --------------------------------------------------------------------------------


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where feature nets are cached: ``path``, else ``$GANARCH_CACHE``, else ``~/.cache/ganarch``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "ganarch"


def cache_key(data: RealData, seed: int) -> str:
    _, c, h, w = data.images.shape
    raw = json.dumps(
        {
            "data": fingerprint(data),
            "size": [h, w],
            "channels": c,
            "version": FEATURE_NET_VERSION,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def cache_path(data: RealData, seed: int = 0, cache: str | os.PathLike | None = None) -> Path:
    """The file a feature net for ``data`` is (or would be) cached in."""
    _, c, h, w = data.images.shape
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in data.name)[:40]
    return cache_dir(cache) / "features" / f"{safe}-{c}x{h}x{w}-{cache_key(data, seed)}.pt"


def _save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_feature_net(
    dataset: Any,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[FeatureNet, dict]:
    """The feature net for ``dataset``: loaded from the cache, or trained once and cached.

    Returns ``(net, info)`` with ``info`` holding the kind, held-out accuracy (classifier) or
    reconstruction error (autoencoder), the cache path and whether it came from the cache.
    """
    data = real_data(dataset)
    device = torch.device(device) if device is not None else data.images.device
    path = cache_path(data, seed, cache_dir)
    _, c, h, w = data.images.shape
    net = FeatureNet(c, h, w, data.num_classes)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(saved["state_dict"])
            info = dict(saved.get("info", {}), cache_path=str(path), from_cache=True)
            return net.to(device).eval(), info
        except Exception:  # a corrupt or stale file is retrained and replaced
            pass
    train_idx, held_idx = split_indices(data.images.shape[0], seed, data.labels)
    net, report = train_feature_net(data, train_idx, held_idx, seed=seed, device=device)
    info = {
        "version": FEATURE_NET_VERSION,
        "kind": report.kind,
        "steps": report.steps,
        "held_out_accuracy": report.held_out_accuracy,
        "held_out_mse": report.held_out_mse,
    }
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    _save_atomic({"state_dict": state, "info": info}, path)
    return net.eval(), dict(info, cache_path=str(path), from_cache=False)
