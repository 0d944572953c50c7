"""Datasets: the built-ins, the loaders from disk, the registry and ImageDataset itself."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

import ganarch
from ganarch.data import (
    DatasetError,
    DatasetRegistrar,
    ImageDataset,
    clear_cache,
    convert_channels,
    datasets,
    load_dataset,
    parse_ref,
    resize,
    to_signed_unit,
)
from ganarch.data.files import safe_unpickle
from ganarch.errors import GanarchError, PluginError


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _in_range(x: torch.Tensor) -> bool:
    return bool(x.min() >= -1.0) and bool(x.max() <= 1.0)


# --- built-ins ---------------------------------------------------------------------------------


def test_builtins_registered():
    table = datasets()
    assert {"digits", "shapes", "folder", "mnist", "cifar10"} <= set(table)
    assert not table["digits"].takes_arg
    assert table["folder"].takes_arg and table["mnist"].takes_arg and table["cifar10"].takes_arg
    assert all(d.description for d in table.values())


@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_digits(size, channels):
    data = load_dataset("digits", image_size=size, channels=channels)
    assert data.images.shape == (1797, channels, size, size)
    assert data.images.dtype == torch.float32
    assert _in_range(data.images)
    assert data.images.min() == -1.0 and data.images.max() > 0.9  # background and ink
    assert data.num_classes == 10 and len(data) == 1797
    assert set(data.labels.tolist()) == set(range(10))
    assert data.name == "digits"
    if channels == 3:  # grey repeated into RGB
        assert torch.equal(data.images[:, 0], data.images[:, 2])


def test_digits_at_native_size_keeps_pixels():
    data = load_dataset("digits", image_size=8, channels=1)
    # scikit-learn's first image (a zero), top two rows, pixel values 0..16
    first = torch.tensor([[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0]])
    torch.testing.assert_close(data.images[0, 0, :2], first / 16 * 2 - 1)
    assert data.labels[:10].tolist() == list(range(10))
    assert torch.bincount(data.labels).tolist()[:3] == [178, 182, 177]


def test_shapes_deterministic_and_complete():
    a = load_dataset("shapes:256", image_size=16, channels=3, seed=3)
    clear_cache()
    b = load_dataset("shapes:256", image_size=16, channels=3, seed=3)
    c = load_dataset("shapes:256", image_size=16, channels=3, seed=4)
    assert a is not b and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert a.num_classes == 16 and len(a) == 256 and a.images.shape == (256, 3, 16, 16)
    assert torch.bincount(a.labels, minlength=16).min() > 0  # every class present
    assert "red circle" in a.class_names
    assert _in_range(a.images)


def test_shapes_grey_keeps_modes_apart():
    data = load_dataset("shapes:64", image_size=16, channels=1)
    assert data.num_classes == 16 and data.channels == 1
    # The brightest pixel of an image tells its grey level: four levels, no two colours merged.
    peak = data.images.amax(dim=(1, 2, 3))
    level = data.labels % 4
    means = torch.stack([peak[level == k].mean() for k in range(4)])
    assert (means.diff() > 0.2).all()


def test_shapes_default_count_and_bad_args():
    assert len(load_dataset("shapes", image_size=8, channels=3)) == 4096
    with pytest.raises(DatasetError, match="number of images"):
        load_dataset("shapes:many", image_size=8, channels=3)
    with pytest.raises(DatasetError, match="at least 16"):
        load_dataset("shapes:5", image_size=8, channels=3)


def test_unknown_dataset_names_the_closest():
    with pytest.raises(GanarchError, match="did you mean 'digits'"):
        load_dataset("digts", image_size=8, channels=1)
    with pytest.raises(DatasetError, match="takes no argument"):
        load_dataset("digits:3", image_size=8, channels=1)
    with pytest.raises(DatasetError, match="channels must be 1 or 3"):
        load_dataset("digits", image_size=8, channels=2)


def test_parse_ref():
    assert parse_ref("digits") == ("digits", None)
    assert parse_ref("folder:C:/images") == ("folder", "C:/images")
    assert parse_ref("shapes:") == ("shapes", "")


def test_cache_returns_the_same_object():
    a = load_dataset("digits", image_size=8, channels=1)
    assert load_dataset("digits", image_size=8, channels=1) is a
    assert load_dataset("digits", image_size=8, channels=3) is not a


# --- folder:PATH -------------------------------------------------------------------------------


def _png(path: Path, value: int, size=(10, 12), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (value, 255 - value, 0) if mode == "RGB" else value
    Image.new(mode, size, colour).save(path)


def test_folder_with_classes(tmp_path):
    _png(tmp_path / "cats" / "a.png", 10)
    _png(tmp_path / "cats" / "b.PNG", 20, size=(7, 7), mode="L")
    _png(tmp_path / "dogs" / "sub" / "c.bmp", 200)
    Image.new("RGB", (9, 9), (250, 5, 0)).save(tmp_path / "dogs" / "d.jpg", quality=95)
    for i in range(4):  # a dataset holds at least 8 images (MIN_IMAGES)
        _png(tmp_path / "dogs" / f"z{i}.png", 100 + i)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    data = load_dataset(f"folder:{tmp_path}", image_size=8, channels=3)
    assert data.class_names == ("cats", "dogs")
    assert data.labels.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert data.images.shape == (8, 3, 8, 8) and _in_range(data.images)
    # a flat colour stays that colour after cropping and resizing
    torch.testing.assert_close(data.images[0, :, 4, 4], torch.tensor([10, 245, 0]) / 127.5 - 1)
    grey = data.images[1]
    assert torch.equal(grey[0], grey[1])  # a grey file becomes grey RGB


def test_folder_without_classes(tmp_path):
    for i in range(7):
        _png(tmp_path / f"{i}.png", 30 * i, size=(16, 16))
    Image.new("RGB", (16, 16)).save(tmp_path / "anim.gif")
    data = load_dataset(f"folder:{tmp_path}", image_size=4, channels=1)
    assert data.labels is None and data.num_classes is None and len(data) == 8
    assert data.images.shape == (8, 1, 4, 4)


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset(f"folder:{tmp_path}", image_size=8, channels=1)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}", image_size=8, channels=1)
    with pytest.raises(DatasetError, match="needs a directory"):
        load_dataset("folder", image_size=8, channels=1)
    for i in range(3):  # too few images to train and score: refused before any training
        _png(tmp_path / "few" / f"{i}.png", 10 * i)
    with pytest.raises(DatasetError, match=r"3 image\(s\); training and scoring need at least 8"):
        load_dataset(f"folder:{tmp_path / 'few'}", image_size=8, channels=1)
    # images beside class folders would silently belong to no class
    for i in range(8):
        _png(tmp_path / "mixed" / "cats" / f"{i}.png", 10 * i)
    _png(tmp_path / "mixed" / "stray.png", 5)
    with pytest.raises(DatasetError, match=r"1 image\(s\) \(stray\.png\) lie beside the class"):
        load_dataset(f"folder:{tmp_path / 'mixed'}", image_size=8, channels=1)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.png"):
        load_dataset(f"folder:{tmp_path / 'bad'}", image_size=8, channels=1)


# --- mnist:DIR ---------------------------------------------------------------------------------


def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else 0x0800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_mnist(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in (
        ("train-images-idx3-ubyte", _idx(images)),
        ("train-labels-idx1-ubyte", _idx(labels)),
    ):
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 5, 5), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9, 1, 4, 4], dtype=np.uint8)
    _write_mnist(tmp_path, images, labels, gz=gz)
    data = load_dataset(f"mnist:{tmp_path}", image_size=5, channels=1)
    torch.testing.assert_close(data.images[:, 0], torch.from_numpy(images).float() / 127.5 - 1)
    assert data.labels.tolist() == labels.tolist()
    assert data.num_classes == 10
    assert load_dataset(f"mnist:{tmp_path}", image_size=10, channels=3).images.shape == (
        8,
        3,
        10,
        10,
    )


def test_mnist_errors(tmp_path):
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    labels = np.zeros(2, dtype=np.uint8)
    with pytest.raises(DatasetError, match=r"expected train-images-idx3-ubyte\(\.gz\) in"):
        load_dataset(f"mnist:{tmp_path}", image_size=4, channels=1)
    _write_mnist(tmp_path, images, labels)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="expected train-labels-idx1-ubyte"):
        load_dataset(f"mnist:{tmp_path}", image_size=4, channels=1)
    _write_mnist(tmp_path, images, labels)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(images, magic=1234))
    with pytest.raises(DatasetError, match=r"magic number 1234 \(expected 2051\)"):
        load_dataset(f"mnist:{tmp_path}", image_size=4, channels=1)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(images)[:-3])
    with pytest.raises(DatasetError, match="the header says 2 × 4 × 4 values"):
        load_dataset(f"mnist:{tmp_path}", image_size=4, channels=1)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match="too short"):
        load_dataset(f"mnist:{tmp_path}", image_size=4, channels=1)
    _write_mnist(tmp_path, images, np.zeros(3, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"2 images but .* 3 labels"):
        load_dataset(f"mnist:{tmp_path}", image_size=4, channels=1)


# --- cifar10:DIR -------------------------------------------------------------------------------


def _write_cifar(folder: Path, per_batch: int = 2, protocol: int = 2) -> tuple[np.ndarray, list]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    all_data, all_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {b"batch_label": b"x", b"data": data, b"labels": labels}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=protocol))
        all_data.append(data)
        all_labels += labels
    names = [f"class{k}".encode() for k in range(10)]
    meta = {b"label_names": names, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return np.concatenate(all_data), all_labels


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_round_trip(tmp_path, protocol):
    data_bytes, labels = _write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    for ref in (f"cifar10:{tmp_path}", f"cifar10:{tmp_path / 'cifar-10-batches-py'}"):
        data = load_dataset(ref, image_size=32, channels=3)
        expected = torch.from_numpy(data_bytes.reshape(-1, 3, 32, 32)).float() / 127.5 - 1
        torch.testing.assert_close(data.images, expected)
        assert data.labels.tolist() == labels
        assert data.class_names[3] == "class3"
    assert load_dataset(f"cifar10:{tmp_path}", image_size=8, channels=1).images.shape == (
        10,
        1,
        8,
        8,
    )


def test_cifar10_missing_batch(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(
        DatasetError, match=r"expected data_batch_1 … data_batch_5 .*missing: data_batch_4"
    ):
        load_dataset(f"cifar10:{tmp_path}", image_size=8, channels=3)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_a_malicious_pickle(tmp_path):
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": _Evil(marker), b"labels": [0]}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DatasetError, match=r"refusing to load (posix|nt|os)\.system"):
        load_dataset(f"cifar10:{tmp_path}", image_size=8, channels=3)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        safe_unpickle(b"cbuiltins\neval\n(S'1+1'\ntR.")


def test_cifar10_malformed_batch(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02}q\x00(")  # truncated
    with pytest.raises(DatasetError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load_dataset(f"cifar10:{tmp_path}", image_size=8, channels=3)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((1, 10), np.uint8)}))
    with pytest.raises(DatasetError, match=r"expected b'data' of shape \(N, 3072\)"):
        load_dataset(f"cifar10:{tmp_path}", image_size=8, channels=3)


# --- ImageDataset ------------------------------------------------------------------------------


def _numbered(n: int = 50, classes: int = 3) -> ImageDataset:
    """Image i is filled with i (so a subset tells which images it holds); label i % classes."""
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2) / n
    return ImageDataset(images.contiguous(), torch.arange(n) % classes, name="numbered")


def _ids(d: ImageDataset) -> set[int]:
    return {round(v) for v in (d.images[:, 0, 0, 0] * 50).tolist()}


def test_split_is_stratified_and_disjoint():
    data = _numbered(50, 3)
    train, held = data.split(0.2, seed=0)
    assert _ids(train).isdisjoint(_ids(held)) and _ids(train) | _ids(held) == set(range(50))
    assert len(held) == 10  # 20% of 50 overall, although 17, 17, 16 per class
    assert sorted(torch.bincount(held.labels, minlength=3).tolist()) == [3, 3, 4]
    assert train.class_names == data.class_names
    again = data.split(0.2, seed=0)[1]
    assert _ids(again) == _ids(held)
    assert _ids(data.split(0.2, seed=1)[1]) != _ids(held)
    # unlabelled datasets split too
    plain = ImageDataset(data.images)
    a, b = plain.split(0.3, seed=0)
    assert len(a) + len(b) == 50 and len(b) == 15


def test_split_keeps_class_proportions_on_digits():
    data = load_dataset("digits", image_size=8, channels=1)
    train, held = data.split(0.2, seed=0)
    assert len(train) + len(held) == len(data)
    torch.testing.assert_close(held.class_histogram(), data.class_histogram(), atol=0.01, rtol=0)


def test_to_device_and_fingerprint():
    data = _numbered()
    fp = data.fingerprint()
    assert data.to("cpu") is data and data.to(None) is data
    target = "cuda" if torch.cuda.is_available() else "meta"
    moved = data.to(target)
    assert moved.device.type == target and moved.labels.device.type == target
    assert moved.fingerprint() == fp and len(moved) == len(data)
    images, labels = data.sample(7, generator=torch.Generator().manual_seed(0))
    assert images.shape == (7, 1, 2, 2) and labels.shape == (7,)


def test_fingerprint_is_stable_and_content_sensitive():
    a = _numbered()
    assert a.fingerprint() == _numbered().fingerprint()  # same content, a new object
    assert len(a.fingerprint()) == 32
    pixel = a.images.clone()
    pixel[3, 0, 1, 1] += 1e-3
    assert ImageDataset(pixel, a.labels).fingerprint() != a.fingerprint()
    labels = a.labels.clone()
    labels[0] = 1
    assert ImageDataset(a.images, labels).fingerprint() != a.fingerprint()
    assert ImageDataset(a.images).fingerprint() != a.fingerprint()
    d1 = load_dataset("digits", image_size=16, channels=1)
    clear_cache()
    assert load_dataset("digits", image_size=16, channels=1).fingerprint() == d1.fingerprint()


def test_image_dataset_validation():
    with pytest.raises(DatasetError, match="1 or 3 channels"):
        ImageDataset(torch.zeros(2, 2, 4, 4))
    with pytest.raises(DatasetError, match="square"):
        ImageDataset(torch.zeros(2, 1, 4, 5))
    with pytest.raises(DatasetError, match="labels must be"):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    d = ImageDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 2]))
    assert d.class_names == ("0", "1", "2") and d.num_classes == 3


# --- helpers -----------------------------------------------------------------------------------


def test_helpers():
    x = torch.rand(2, 3, 16, 16)
    assert resize(x, 8).shape == (2, 3, 8, 8) and resize(x, 32).shape == (2, 3, 32, 32)
    assert resize(x, 16) is x
    flat = torch.full((1, 1, 16, 16), 0.25)
    torch.testing.assert_close(resize(flat, 5), torch.full((1, 1, 5, 5), 0.25))
    grey = convert_channels(torch.ones(1, 3, 2, 2) * torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1), 1)
    torch.testing.assert_close(grey, torch.full((1, 1, 2, 2), 0.299))
    assert torch.equal(convert_channels(flat, 3)[:, 2], flat[:, 0])
    torch.testing.assert_close(
        to_signed_unit(torch.tensor([0.0, 8.0, 16.0, 20.0]), 0, 16),
        torch.tensor([-1.0, 0.0, 1.0, 1.0]),
    )


# --- plugins -----------------------------------------------------------------------------------


class _TinyData:
    """A plugin that registers a dataset in code."""

    calls = 0

    @ganarch.hookimpl
    def ganarch_register_datasets(self, registrar):
        registrar.add("tiny", loader=self.load, takes_arg=True)

    def load(self, arg, *, image_size, channels, seed=0):
        """Constant images, one per class."""
        type(self).calls += 1
        n = int(arg or 4)
        g = torch.Generator().manual_seed(seed)
        images = torch.rand(n, channels, image_size, image_size, generator=g) * 2 - 1
        return ImageDataset(images, torch.arange(n), name="whatever")


def test_dataset_from_a_plugin_registered_in_code():
    name = ganarch.register_plugin(_TinyData(), name="tiny-data")
    try:
        assert datasets()["tiny"].plugin == "tiny-data"
        assert datasets()["tiny"].description == "Constant images, one per class."
        data = load_dataset("tiny:9", image_size=4, channels=3, seed=2)
        assert data.name == "tiny:9" and len(data) == 9 and data.num_classes == 9
        assert load_dataset("tiny:9", image_size=4, channels=3, seed=2) is data
        other = load_dataset("tiny:9", image_size=4, channels=3, seed=3)
        assert not torch.equal(other.images, data.images)
        # fewer images than training and scoring need: refused when loaded
        with pytest.raises(DatasetError, match="tiny:5: 5 image"):
            load_dataset("tiny:5", image_size=4, channels=3)
    finally:
        ganarch.unregister_plugin(name)
    assert "tiny" not in datasets()
    with pytest.raises(DatasetError, match="not a registered dataset"):
        load_dataset("tiny:9", image_size=4, channels=3)


def test_registrar_checks():
    table: dict = {}
    first = DatasetRegistrar(table, "one")
    first.add("x", loader=lambda arg, **kw: None)
    first.commit()
    with pytest.raises(
        PluginError, match="'x' is registered twice: by plugin 'one' and plugin 'two'"
    ):
        DatasetRegistrar(table, "two").add("x", loader=lambda arg, **kw: None)
    with pytest.raises(PluginError, match="not callable"):
        DatasetRegistrar(table, "two").add("y", loader="nope")
    with pytest.raises(PluginError, match="dataset name"):
        DatasetRegistrar(table, "two").add("a:b", loader=print)


def test_loader_returning_the_wrong_size_is_reported():
    class Wrong:
        @ganarch.hookimpl
        def ganarch_register_datasets(self, registrar):
            registrar.add("wrong", loader=lambda arg, **kw: ImageDataset(torch.zeros(2, 1, 3, 3)))

    name = ganarch.register_plugin(Wrong(), name="wrong-data")
    try:
        with pytest.raises(PluginError, match="returned 1×3×3 images, expected 1×8×8"):
            load_dataset("wrong", image_size=8, channels=1)
    finally:
        ganarch.unregister_plugin(name)


# --- CLI ---------------------------------------------------------------------------------------


def test_datasets_command():
    from ganarch.cli import data as data_cli

    app = typer.Typer()
    data_cli.register(app)

    @app.callback()
    def _root() -> None:
        """test app"""

    result = CliRunner().invoke(app, ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["shapes"]["takes_arg"] is True and rows["digits"]["plugin"] == "builtin"
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0 and "cifar10" in result.stdout
