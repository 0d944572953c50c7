"""The declarative GAN spec: image geometry, the generator's and discriminator's layers, and
the training settings that reproduce a run. Pure data: it never executes code or imports paths,
and knows nothing of blocks. The public spec, which validates its layers against the block
registry and builds its networks, is ``ganarch.builder.GANSpec`` (``ganarch.GANSpec``).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

import yaml

from ganarch.errors import SpecError, closest

_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class LayerSpec:
    """One layer: a registered block name, its keyword params, and optional weight wrappers."""

    block: str
    params: Mapping[str, Any] = field(default_factory=dict)
    wrap: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"block": self.block}
        if self.params:
            d["params"] = dict(self.params)
        if self.wrap:
            d["wrap"] = list(self.wrap)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> LayerSpec:
        if isinstance(d, str):  # shorthand: a bare block name
            return cls(block=d)
        if not isinstance(d, Mapping):
            raise SpecError(where, f"a layer must be a mapping with key 'block', got {_kind(d)}")
        unknown = set(d) - {"block", "params", "wrap"}
        if unknown:
            key = sorted(unknown)[0]
            raise SpecError(
                f"{where}.{key}", f"unknown key; {closest(key, ['block', 'params', 'wrap'])}"
            )
        if "block" not in d:
            raise SpecError(where, "missing key 'block'")
        block = d["block"]
        if not isinstance(block, str):
            raise SpecError(f"{where}.block", f"must be a block name, got {_kind(block)}")
        params = d.get("params", {}) or {}
        if not isinstance(params, Mapping):
            raise SpecError(f"{where}.params", f"must be a mapping, got {_kind(params)}")
        for key, value in params.items():
            if not isinstance(key, str):
                raise SpecError(f"{where}.params", f"parameter names must be strings, got {key!r}")
            if not isinstance(value, _SCALARS):
                raise SpecError(
                    f"{where}.params.{key}", f"must be a number, string or bool, got {_kind(value)}"
                )
        wrap = d.get("wrap", []) or []
        if isinstance(wrap, str):
            wrap = [wrap]
        if not isinstance(wrap, Sequence) or not all(isinstance(w, str) for w in wrap):
            raise SpecError(f"{where}.wrap", "must be a list of wrap-block names")
        return cls(block=block, params=dict(params), wrap=tuple(wrap))


@dataclass(frozen=True)
class TrainingSpec:
    """Training settings stored with the spec, so a found spec reproduces its own training.

    Defaults are the paper's: Adam lr 2e-4, beta1 0.5, beta2 0.999, batch 128, weights from
    N(0, 0.02) and norm scales from N(1, 0.02).
    """

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 128
    init_std: float = 0.02
    d_steps: int = 1  # discriminator updates per generator update

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "training") -> TrainingSpec:
        if not isinstance(d, Mapping):
            raise SpecError(where, f"must be a mapping, got {_kind(d)}")
        names = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in d.items():
            if key not in names:
                raise SpecError(
                    f"{where}.{key}", f"unknown training setting; {closest(str(key), names)}"
                )
            want = int if names[key].type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(f"{where}.{key}", f"must be a number, got {_kind(value)}")
            if want is int and (not float(value).is_integer()):
                raise SpecError(f"{where}.{key}", f"must be an integer, got {value!r}")
            values[key] = want(value)
        spec = cls(**values)
        spec._check(where)
        return spec

    def _check(self, where: str) -> None:
        for name in ("lr_g", "lr_d", "init_std"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise SpecError(f"{where}.{name}", f"must be a positive number, got {v!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise SpecError(f"{where}.{name}", f"must be in [0, 1), got {v!r}")
        for name, most in (("batch_size", MAX_BATCH), ("d_steps", MAX_D_STEPS)):
            if getattr(self, name) < 1:
                raise SpecError(
                    f"{where}.{name}", f"must be at least 1, got {getattr(self, name)!r}"
                )
            if getattr(self, name) > most:
                raise SpecError(f"{where}.{name}", f"at most {most}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class SpecData:
    """A GAN as data: parsing (``from_dict``), ``to_dict()``, ``replace()``, ``save(path)``.

    ``ganarch.GANSpec`` (``ganarch.builder``) is this plus ``validate()`` and ``build()``; make
    specs with it. Here ``from_dict`` checks structure and sizes, not the layers' blocks.
    """

    image_size: int
    channels: int
    latent_dim: int
    generator: tuple[LayerSpec, ...]
    discriminator: tuple[LayerSpec, ...]
    training: TrainingSpec = field(default_factory=TrainingSpec)
    meta: Mapping[str, Any] = field(
        default_factory=dict
    )  # free-form notes, e.g. the template choices

    # -- conversion ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "image_size": self.image_size,
            "channels": self.channels,
            "latent_dim": self.latent_dim,
            "generator": {"layers": [layer.to_dict() for layer in self.generator]},
            "discriminator": {"layers": [layer.to_dict() for layer in self.discriminator]},
            "training": self.training.to_dict(),
        }
        if self.meta:
            d["meta"] = json.loads(json.dumps(dict(self.meta)))
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        """Read a spec from plain data, checking its structure and sizes (raises
        ``SpecError``); the layers' blocks are the builder's to check."""
        if not isinstance(d, Mapping):
            raise SpecError("", f"a spec must be a mapping, got {_kind(d)}")
        allowed = [
            "image_size",
            "channels",
            "latent_dim",
            "generator",
            "discriminator",
            "training",
            "meta",
        ]
        for key in d:
            if key not in allowed:
                raise SpecError(str(key), f"unknown key; {closest(str(key), allowed)}")
        for key in ("image_size", "channels", "latent_dim", "generator", "discriminator"):
            if key not in d:
                raise SpecError(key, "missing")
        ints = {k: _positive_int(d[k], k) for k in ("image_size", "channels", "latent_dim")}
        nets = {name: _layers(d[name], name) for name in ("generator", "discriminator")}
        if "meta" in d:
            check_data_size(d["meta"], "meta")
        training = TrainingSpec.from_dict(d.get("training", {}) or {}, "training")
        meta = d.get("meta", {}) or {}
        if not isinstance(meta, Mapping):
            raise SpecError("meta", f"must be a mapping, got {_kind(meta)}")
        spec = cls(**ints, **nets, training=training, meta=dict(meta))
        check_sizes(spec)
        return spec

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (``training`` may be a dict of overrides)."""
        if isinstance(changes.get("training"), Mapping):
            merged = {**self.training.to_dict(), **changes["training"]}
            changes["training"] = TrainingSpec.from_dict(merged)
        d = {**{f.name: getattr(self, f.name) for f in fields(self)}, **changes}
        return type(self)(**d)

    # -- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        elif suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            raise SpecError(
                str(path),
                f"cannot save a spec as {suffix or 'a file without suffix'!r}; use .json or .yaml",
            )
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # never leave a half-written spec behind
        return path


def read_data_file(path: str | Path) -> Any:
    """Parse a JSON, TOML or YAML file as plain data (YAML with the safe loader only)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise SpecError(where, "no such file")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml", ".yaml", ".yml"):
        raise SpecError(where, f"unknown file type {suffix!r}; use .json, .toml or .yaml")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpecError(
                where,
                f"{path.stat().st_size} bytes; a spec or space file holds at most {MAX_FILE_BYTES}",
            )
        text = path.read_text()
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except RecursionError:
        raise SpecError(where, f"nested too deeply (at most {MAX_DEPTH} levels)") from None
    except (
        ValueError,  # JSON and TOML syntax, a 5000-digit integer
        yaml.YAMLError,
        UnicodeDecodeError,
        OSError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(where, f"cannot parse {suffix[1:].upper()}: {first}") from None
    check_data_size(data, where)
    return data


# -- limits: what a spec or a data file may ask for, checked before anything is allocated ------

#: Layers in one network.
MAX_LAYERS = 256
#: Image side, latent size and every integer block parameter (channels, features, kernel).
MAX_IMAGE_SIZE = 1024
MAX_LATENT = 65536
MAX_INT_PARAM = 65536
#: Training settings.
MAX_BATCH = 65536
MAX_D_STEPS = 100
#: Weights of G and D together (fp32 with Adam: 16 bytes each, 16 GB at the limit).
MAX_PARAMS = 1_000_000_000
#: Estimated activation memory of one training step (see ``activation_bytes``).
MAX_ACTIVATION_BYTES = 64 * 2**30
#: A spec or space file: bytes on disk, values after YAML aliases are expanded, nesting.
MAX_FILE_BYTES = 10 * 2**20
MAX_NODES = 100_000
MAX_DEPTH = 64


def check_data_size(data: Any, where: str) -> None:
    """Refuse data that expands past ``MAX_NODES`` values (YAML aliases of aliases: a few
    lines can stand for billions) or nests deeper than ``MAX_DEPTH``, counting each use of a
    shared value again and stopping as soon as a limit is passed."""
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise SpecError(where, f"expands to more than {MAX_NODES} values (YAML aliases?)")
        if depth > MAX_DEPTH:
            raise SpecError(where, f"nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if not isinstance(k, str | int | float))
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)


def check_sizes(spec: SpecData) -> None:
    """Refuse sizes no machine could train (a located ``SpecError``), before any allocation."""
    if spec.image_size > MAX_IMAGE_SIZE:
        raise SpecError("image_size", f"at most {MAX_IMAGE_SIZE}, got {spec.image_size}")
    if spec.latent_dim > MAX_LATENT:
        raise SpecError("latent_dim", f"at most {MAX_LATENT}, got {spec.latent_dim}")
    if spec.channels > 4:
        raise SpecError("channels", f"images have 1 to 4 channels, got {spec.channels}")
    for name, layers in (("generator", spec.generator), ("discriminator", spec.discriminator)):
        if len(layers) > MAX_LAYERS:
            raise SpecError(f"{name}.layers", f"{len(layers)} layers; at most {MAX_LAYERS}")
        for i, layer in enumerate(layers):
            for key, value in layer.params.items():
                if (
                    isinstance(value, int)
                    and not isinstance(value, bool)
                    and abs(value) > MAX_INT_PARAM
                ):
                    raise SpecError(
                        f"{name}.layers[{i}].params.{key}", f"at most {MAX_INT_PARAM}, got {value}"
                    )
    spec.training._check("training")


def activation_bytes(batch_size: int, g_shapes: Sequence[Any], d_shapes: Sequence[Any]) -> int:
    """A floor on one training step's activation memory: every layer's fp32 output for the
    batch, D run on a real and a fake batch, all kept for the backward pass."""
    g = sum(math.prod(s) for s in g_shapes)
    d = sum(math.prod(s) for s in d_shapes)
    return 4 * batch_size * (g + 2 * d)


def check_plan_sizes(
    spec: SpecData, n_params: int, g_shapes: Sequence[Any], d_shapes: Sequence[Any]
) -> None:
    """Refuse a planned spec whose weights or activations exceed the limits (the builder
    calls this with the shapes and parameter counts it inferred on the meta device)."""
    if n_params > MAX_PARAMS:
        raise SpecError(
            "", f"{n_params:,} parameters in G and D; at most {MAX_PARAMS:,} (narrow the layers)"
        )
    need = activation_bytes(spec.training.batch_size, g_shapes, d_shapes)
    if need > MAX_ACTIVATION_BYTES:
        raise SpecError(
            "training.batch_size",
            f"one training step would hold about {need / 2**30:.0f} GiB of activations; at "
            f"most {MAX_ACTIVATION_BYTES / 2**30:.0f} GiB (lower batch_size or the layers' size)",
        )


def _kind(value: Any) -> str:
    return (
        f"{type(value).__name__} {value!r}" if isinstance(value, _SCALARS) else type(value).__name__
    )


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(where, f"must be a positive integer, got {_kind(value)}")
    return value


def _layers(net: Any, name: str) -> tuple[LayerSpec, ...]:
    if isinstance(net, Mapping):
        extra = set(net) - {"layers"}
        if extra:
            key = sorted(extra)[0]
            raise SpecError(f"{name}.{key}", "unknown key; expected only 'layers'")
        if "layers" not in net:
            raise SpecError(name, "missing key 'layers'")
        raw = net["layers"]
    else:
        raw = net  # a bare list is accepted as shorthand
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise SpecError(f"{name}.layers", "must be a non-empty list of layers")
    if len(raw) > MAX_LAYERS:
        raise SpecError(f"{name}.layers", f"{len(raw)} layers; at most {MAX_LAYERS}")
    return tuple(LayerSpec.from_dict(layer, f"{name}.layers[{i}]") for i, layer in enumerate(raw))
