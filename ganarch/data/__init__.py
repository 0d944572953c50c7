"""Datasets as one tensor of images in [-1, 1] on the training device, loaded by name.

Built-ins (registered by the ``builtin`` plugin through ``ganarch_register_datasets``):
``digits``, ``shapes[:N]``, ``folder:PATH``, ``mnist:DIR``, ``cifar10:DIR``. Example::

    from ganarch.data import load_dataset

    data = load_dataset("digits", image_size=32, channels=1, device="cuda")
    train, held_out = data.split(0.2, seed=0)
"""

from ganarch.data.dataset import (
    DatasetError,
    ImageDataset,
    center_crop,
    convert_channels,
    prepare_images,
    resize,
    to_signed_unit,
)
from ganarch.data.registry import (
    DatasetInfo,
    DatasetRegistrar,
    clear_cache,
    datasets,
    get_dataset,
    load_dataset,
    native_channels,
    parse_ref,
)

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "DatasetRegistrar",
    "ImageDataset",
    "center_crop",
    "clear_cache",
    "convert_channels",
    "datasets",
    "get_dataset",
    "load_dataset",
    "native_channels",
    "parse_ref",
    "prepare_images",
    "resize",
    "to_signed_unit",
]
