"""Datasets read from disk, never downloaded: an image folder, MNIST's IDX files and
CIFAR-10's python batches.

A missing or malformed file is a ``DatasetError`` that says what was expected where.
CIFAR-10's batches are pickles; they are read with an unpickler that only rebuilds numpy
arrays and plain containers, so a crafted file cannot run code.
"""

from __future__ import annotations

import gzip
import importlib
import io
import pickle
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganarch.data.dataset import DatasetError, ImageDataset, prepare_images

__all__ = [
    "CIFAR10_CLASSES",
    "IMAGE_SUFFIXES",
    "SafeUnpickler",
    "load_cifar10",
    "load_folder",
    "load_mnist",
    "read_idx",
    "safe_unpickle",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _directory(kind: str, arg: str | None, what: str) -> Path:
    if arg is None or not arg.strip():
        raise DatasetError(f"{kind} needs a directory: use --data {kind}:DIR ({what})")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DatasetError(f"{kind}:{arg}: {path} does not exist (expected {what})")
    if not path.is_dir():
        raise DatasetError(f"{kind}:{arg}: {path} is not a directory (expected {what})")
    return path


# --- folder:PATH -----------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _read_image(path: Path, ref: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.seek(0)  # the first frame of an animated GIF
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "F") or (
                im.mode == "P" and not _palette_has_colour(im)
            )
            return np.asarray(im.convert("L" if grey else "RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{ref}: cannot read image {path}: {exc}") from None


def _palette_has_colour(im: Any) -> bool:
    rgb = im.convert("RGB")
    arr = np.asarray(rgb)
    return bool((arr[..., 0] != arr[..., 1]).any() or (arr[..., 1] != arr[..., 2]).any())


def load_folder(arg: str | None, *, image_size: int, channels: int) -> ImageDataset:
    """Image files (.png .jpg .jpeg .bmp .gif) under folder:PATH; each sub-folder is a class."""
    ref = f"folder:{arg}"
    root = _directory("folder", arg, "a folder of .png/.jpg/.jpeg/.bmp/.gif images")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [(d.name, files) for d in subdirs if (files := _image_files(d))]
    if classes:
        loose = [
            p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ]
        if loose:  # they would be left out of every class without a word
            raise DatasetError(
                f"{ref}: {len(loose)} image(s) ({', '.join(sorted(loose)[:3])}"
                f"{', ...' if len(loose) > 3 else ''}) lie beside the class folders "
                f"{', '.join(n for n, _ in classes[:3])}{', ...' if len(classes) > 3 else ''}; "
                "move them into a class folder, or use a folder without sub-folders"
            )
        paths = [f for _, files in classes for f in files]
        labels = [k for k, (_, files) in enumerate(classes) for _ in files]
        class_names = tuple(name for name, _ in classes)
    else:
        paths = _image_files(root)
        labels, class_names = [], ()
    if not paths:
        raise DatasetError(f"{ref}: no image files ({', '.join(IMAGE_SUFFIXES)}) found in {root}")
    # Images of one size and mode are converted together; sizes may differ across files.
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    arrays = []
    for i, p in enumerate(paths):
        a = _read_image(p, ref)
        arrays.append(a)
        groups[a.shape].append(i)
    out = torch.empty(len(paths), channels, image_size, image_size)
    for shape, idx in groups.items():
        stack = np.stack([arrays[i] for i in idx])
        out[torch.tensor(idx)] = prepare_images(
            stack, image_size, channels, channels_last=len(shape) == 3
        )
    y = torch.tensor(labels, dtype=torch.long) if class_names else None
    return ImageDataset(out, y, class_names, ref)


# --- mnist:DIR -------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, *, ndim: int, ref: str = "") -> np.ndarray:
    """Read an IDX file (optionally gzipped) holding a ``ndim``-dimensional array.

    The header is checked: magic number ``0x0000TTDD`` (type ``TT``, ``DD`` dimensions,
    so 2051 for MNIST images and 2049 for labels), then each size, then the data length.
    """
    where = f"{ref}: {path}" if ref else str(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{where}: cannot read the file: {exc}") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{where}: {len(raw)} bytes is too short for an IDX header")
    zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
    magic = struct.unpack(">I", raw[:4])[0]
    expected_magic = 0x0800 | ndim
    if zero != 0 or dims != ndim or dtype_code not in _IDX_TYPES:
        raise DatasetError(
            f"{where}: not an IDX file of {ndim} dimension(s): magic number {magic} "
            f"(expected {expected_magic})"
        )
    sizes = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[dtype_code])
    expected = header + int(np.prod(sizes)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(
            f"{where}: the header says {' × '.join(map(str, sizes))} values "
            f"({expected} bytes in all) but the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(sizes)


def _find(dirs: list[Path], stems: tuple[str, ...]) -> Path | None:
    for d in dirs:
        for stem in stems:
            for name in (stem, stem + ".gz"):
                if (d / name).is_file():
                    return d / name
    return None


def load_mnist(arg: str | None, *, image_size: int, channels: int) -> ImageDataset:
    """MNIST's 60,000 training digits from its IDX files in mnist:DIR (optionally .gz)."""
    ref = f"mnist:{arg}"
    root = _directory("mnist", arg, "train-images-idx3-ubyte and train-labels-idx1-ubyte")
    dirs = [root, root / "raw", root / "MNIST" / "raw"]  # also torchvision's layout
    images_path = _find(dirs, ("train-images-idx3-ubyte", "train-images.idx3-ubyte"))
    labels_path = _find(dirs, ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"))
    for path, stem in ((images_path, "train-images"), (labels_path, "train-labels")):
        if path is None:
            dims = "idx3" if stem == "train-images" else "idx1"
            raise DatasetError(f"{ref}: expected {stem}-{dims}-ubyte(.gz) in {root}")
    assert images_path is not None and labels_path is not None
    images = read_idx(images_path, ndim=3, ref=ref)
    labels = read_idx(labels_path, ndim=1, ref=ref)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{ref}: {images_path.name} has {images.shape[0]} images but "
            f"{labels_path.name} has {labels.shape[0]} labels"
        )
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DatasetError(f"{ref}: expected unsigned-byte IDX files (type 0x08)")
    if images.shape[0] == 0:
        raise DatasetError(f"{ref}: {images_path.name} holds no images")
    y = torch.from_numpy(labels.astype(np.int64))
    top = int(y.max()) + 1
    x = prepare_images(images, image_size, channels)
    return ImageDataset(x, y, tuple(str(k) for k in range(max(top, 10))), ref)


# --- cifar10:DIR -----------------------------------------------------------------------------

#: The only globals a CIFAR-10 batch needs: numpy's array rebuilders and plain containers.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol 2 stores bytes under Python 3
    *(
        (module, name)
        for module in ("builtins", "__builtin__")
        for name in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "bytes",
            "bytearray",
            "str",
            "int",
            "float",
            "complex",
            "bool",
        )
    ),
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global but numpy array rebuilding and containers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays and plain containers "
                "are allowed in a dataset pickle"
            )
        if module == "__builtin__":
            module = "builtins"
        if module.startswith("numpy.core."):  # numpy 2 renamed numpy.core to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core" + module[10:]), name)
            except (ImportError, AttributeError):
                pass
        return getattr(importlib.import_module(module), name)


def safe_unpickle(data: bytes, *, encoding: str = "bytes") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (``encoding='bytes'`` for Python 2 files)."""
    return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()


def _unpickle(path: Path, ref: str) -> Any:
    try:
        return safe_unpickle(path.read_bytes())
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"{ref}: {path}: {exc}") from None
    except Exception as exc:  # any malformed pickle: truncated, wrong opcodes, bad state
        raise DatasetError(
            f"{ref}: {path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})"
        ) from None


def _get(d: Any, key: str) -> Any:
    if not isinstance(d, dict):
        return None
    return d.get(key.encode(), d.get(key))


def load_cifar10(arg: str | None, *, image_size: int, channels: int) -> ImageDataset:
    """CIFAR-10's 50,000 training images from its python batches in cifar10:DIR."""
    ref = f"cifar10:{arg}"
    root = _directory("cifar10", arg, "cifar-10-batches-py or the folder holding it")
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetError(
            f"{ref}: expected data_batch_1 … data_batch_5 in {folder} (missing: {', '.join(missing)})"
        )
    images, labels = [], []
    for n in names:
        batch = _unpickle(folder / n, ref)
        data, y = _get(batch, "data"), _get(batch, "labels")
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
            got = getattr(data, "shape", type(data).__name__)
            raise DatasetError(
                f"{ref}: {folder / n}: expected b'data' of shape (N, 3072), got {got}"
            )
        if data.dtype != np.uint8:
            raise DatasetError(f"{ref}: {folder / n}: expected uint8 b'data', got {data.dtype}")
        y = np.asarray(y if y is not None else [], dtype=np.int64).reshape(-1)
        if y.shape[0] != data.shape[0]:
            raise DatasetError(
                f"{ref}: {folder / n}: {data.shape[0]} images but {y.shape[0]} b'labels'"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(y)
    class_names = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = _get(_unpickle(folder / "batches.meta", ref), "label_names")
        if isinstance(meta, list) and meta:
            class_names = tuple(m.decode() if isinstance(m, bytes) else str(m) for m in meta)
    y_all = torch.from_numpy(np.concatenate(labels))
    if y_all.numel() and (int(y_all.min()) < 0 or int(y_all.max()) >= len(class_names)):
        raise DatasetError(
            f"{ref}: labels must lie in 0..{len(class_names) - 1}, "
            f"got {int(y_all.min())}..{int(y_all.max())}"
        )
    x = prepare_images(np.concatenate(images), image_size, channels)
    return ImageDataset(x, y_all, class_names, ref)
