"""The dataset registry: what plugins register through ``ganarch_register_datasets``, checked
on the way in, and loaded by reference (``"digits"``, ``"shapes:512"``, ``"folder:PATH"``).

Loaded datasets are cached in the process, since a search loads its data once per trial.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ganarch.data.dataset import DatasetError, ImageDataset, check_size_channels
from ganarch.errors import PluginError
from ganarch.plugin import manager as plugins
from ganarch.plugin.registry import Registrar, Registry

__all__ = [
    "DatasetInfo",
    "DatasetRegistrar",
    "clear_cache",
    "datasets",
    "get_dataset",
    "load_dataset",
    "native_channels",
    "parse_ref",
]

#: A loader: ``loader(arg, *, image_size, channels, seed) -> ImageDataset``.
Loader = Callable[..., ImageDataset]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
#: Loaded datasets (per reference, size, channels, seed and device) stay cached up to this
#: many entries and this many bytes of images; the most recent one is always kept.
CACHE_SIZE = 8
CACHE_BYTES = 4 << 30


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset."""

    name: str
    loader: Loader
    plugin: str
    description: str = ""
    #: True when ``--data NAME:ARG`` is accepted (the loader gets ``None`` without one).
    takes_arg: bool = False

    def _accepts_seed(self) -> bool:
        try:
            params = inspect.signature(self.loader).parameters.values()
        except (TypeError, ValueError):
            return False
        return any(p.name == "seed" or p.kind is p.VAR_KEYWORD for p in params)


class DatasetRegistrar(Registrar[DatasetInfo]):
    """What ``ganarch_register_datasets`` receives: checks each dataset, then stages it."""

    noun = "dataset"

    def add(
        self,
        name: str,
        *,
        loader: Loader,
        description: str | None = None,
        takes_arg: bool = False,
    ) -> None:
        """Register dataset ``name``, loaded by ``loader(arg, image_size=, channels=, seed=)``.

        ``arg`` is the text after ``NAME:`` (or ``None``); a loader that does not accept
        ``seed`` is called without it. ``description`` defaults to the loader's docstring.
        """
        self.claim(name, _NAME, "a word (letters, digits, '_', '-', '.')")
        who = self.who
        if not callable(loader):
            raise PluginError(f"{who}: loader of dataset {name!r} is not callable: {loader!r}")
        if not isinstance(takes_arg, bool):
            raise PluginError(f"{who}: takes_arg of dataset {name!r} must be True or False")
        doc = description if description is not None else inspect.getdoc(loader) or ""
        self.stage(
            name,
            DatasetInfo(
                name=name,
                loader=loader,
                plugin=self.plugin,
                description=doc.strip().splitlines()[0] if doc.strip() else "",
                takes_arg=takes_arg,
            ),
        )


#: Every dataset plugins registered, cached until the set of plugins changes.
DATASETS: Registry[DatasetInfo] = Registry("ganarch_register_datasets", DatasetRegistrar)
_lock = threading.RLock()  # guards the cache of loaded datasets
_loaded: OrderedDict[tuple[Any, ...], ImageDataset] = OrderedDict()


def datasets() -> dict[str, DatasetInfo]:
    """All registered datasets by name, in name order."""
    return DATASETS.entries()


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``"shapes:512"`` -> ``("shapes", "512")``; ``"digits"`` -> ``("digits", None)``."""
    if not isinstance(ref, str) or not ref.strip():
        raise DatasetError(f"a dataset reference must be a name like 'digits', got {ref!r}")
    name, sep, arg = ref.strip().partition(":")
    return name, (arg if sep else None)


def get_dataset(name: str) -> DatasetInfo:
    """Look up a dataset by name; ``DatasetError`` with the closest names if it is unknown."""
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(DATASETS.unknown(name))
    return info


#: The fewest images a dataset may hold: the scorer holds a fifth out and needs several.
MIN_IMAGES = 8


def load_dataset(
    ref: str,
    image_size: int,
    channels: int,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load ``ref`` (``"name"`` or ``"name:ARG"``) as images of ``channels``×``image_size``²
    in [-1, 1], on ``device`` (``None`` leaves it on the CPU).

    Cached per (reference, size, channels, seed, device) in this process: a search calls
    this once per trial. The result's ``name`` is ``ref``.

    Example::

        data = load_dataset("shapes:1024", image_size=32, channels=3, seed=1)
    """
    check_size_channels(image_size, channels)
    name, arg = parse_ref(ref)
    info = get_dataset(name)
    if arg is not None and not info.takes_arg:
        raise DatasetError(f"dataset {name!r} takes no argument, got {ref!r}; use --data {name}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen = plugins.generation()  # a re-registered dataset must not serve a stale cache
    key = (gen, name, arg, image_size, channels, int(seed))
    with _lock:
        hit = _loaded.get((*key, str(dev)))
        if hit is not None:
            _loaded.move_to_end((*key, str(dev)))
            return hit
        cpu = _loaded.get((*key, "cpu"))
    if cpu is None:
        cpu = _call_loader(info, ref, arg, image_size, channels, int(seed))
        _remember((*key, "cpu"), cpu)
    data = cpu.to(dev)
    if data is not cpu:
        _remember((*key, str(dev)), data)
    return data


def native_channels(ref: str, *, seed: int = 0) -> int:
    """The dataset's own channel count: 1 when every image is grey (digits, MNIST), else 3.

    Judged from the pixels rather than from a list of names, so a plugin's dataset or a
    folder of grey scans gets one channel without being declared anywhere. Read at 8×8:
    resizing keeps equal channels equal, and a large dataset costs little memory there.
    """
    rgb = load_dataset(ref, 8, 3, seed=seed).images
    grey = bool((rgb[:, :1] == rgb[:, 1:2]).all() and (rgb[:, :1] == rgb[:, 2:3]).all())
    return 1 if grey else 3


def _call_loader(
    info: DatasetInfo, ref: str, arg: str | None, image_size: int, channels: int, seed: int
) -> ImageDataset:
    kwargs: dict[str, Any] = {"image_size": image_size, "channels": channels}
    if info._accepts_seed():
        kwargs["seed"] = seed
    data = info.loader(arg, **kwargs)
    if not isinstance(data, ImageDataset):
        raise PluginError(
            f"dataset {info.name!r} (plugin {info.plugin!r}) returned "
            f"{type(data).__name__}, expected a ganarch.data.ImageDataset"
        )
    if (data.image_size, data.channels) != (image_size, channels):
        raise PluginError(
            f"dataset {info.name!r} (plugin {info.plugin!r}) returned "
            f"{data.channels}×{data.image_size}×{data.image_size} images, "
            f"expected {channels}×{image_size}×{image_size}"
        )
    if len(data) < MIN_IMAGES:  # a fifth is held out to score against; fewer cannot be scored
        raise DatasetError(
            f"{ref}: {len(data)} image(s); training and scoring need at least {MIN_IMAGES}"
        )
    return replace(data, name=ref.strip()) if data.name != ref.strip() else data


def _remember(key: tuple[Any, ...], data: ImageDataset) -> None:
    with _lock:
        _loaded[key] = data
        _loaded.move_to_end(key)
        while len(_loaded) > 1 and (
            len(_loaded) > CACHE_SIZE or sum(map(_nbytes, _loaded.values())) > CACHE_BYTES
        ):
            _loaded.popitem(last=False)


def _nbytes(data: ImageDataset) -> int:
    return data.images.numel() * data.images.element_size()


def clear_cache() -> None:
    """Forget every loaded dataset (e.g. after the files behind ``folder:PATH`` changed)."""
    with _lock:
        _loaded.clear()
