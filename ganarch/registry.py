"""The block registry: what plugins register, checked on the way in, and looked up by name.

A block is a factory ``factory(in_shape, **params) -> nn.Module`` with a *kind* and a shape
rule (channels and spatial size in -> out). The builder only ever talks to this registry,
so it never names a concrete block.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ganarch import plugins
from ganarch.errors import PluginError, SpecError, closest


class Shape(NamedTuple):
    """Per-sample tensor shape (channels, height, width); vectors are ``(features, 1, 1)``."""

    channels: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.channels}×{self.height}×{self.width}"


ShapeRule = Callable[[Shape, Mapping[str, Any]], Shape]


class ParamError(ValueError):
    """Raised by a shape rule for one bad parameter, so the error can name ``params.<param>``."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)


def _needs(params: Mapping[str, Any], key: str, kind: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamError(key, f"{kind} blocks need a positive integer {key!r}, got {value!r}")
    return value


def _keep(s: Shape, p: Mapping[str, Any]) -> Shape:
    return s


def _conv(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(_needs(p, "out_channels", "conv"), s.height, s.width)


def _up(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(_needs(p, "out_channels", "upsample"), s.height * 2, s.width * 2)


def _down(s: Shape, p: Mapping[str, Any]) -> Shape:
    if s.height % 2 or s.width % 2 or s.height < 2:
        raise ValueError(f"cannot halve a {s.height}×{s.width} feature map")
    return Shape(_needs(p, "out_channels", "downsample"), s.height // 2, s.width // 2)


def _project(s: Shape, p: Mapping[str, Any]) -> Shape:
    if (s.height, s.width) != (1, 1):
        raise ValueError(f"a project block takes a latent vector, got a {s} feature map")
    size = p.get("size", 4)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ParamError("size", f"'size' must be a positive integer, got {size!r}")
    return Shape(_needs(p, "out_channels", "project"), size, size)


def _head(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(1, 1, 1)


def _dense(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(_needs(p, "features", "dense"), 1, 1)


#: Every block kind with its default shape rule and a one-line meaning.
BLOCK_KINDS: dict[str, tuple[ShapeRule, str]] = {
    "conv": (_conv, "convolution that keeps the spatial size (param out_channels)"),
    "upsample": (_up, "doubles height and width (param out_channels)"),
    "downsample": (_down, "halves height and width (param out_channels)"),
    "norm": (_keep, "normalisation; keeps the shape"),
    "activation": (_keep, "elementwise nonlinearity; keeps the shape"),
    "project": (_project, "latent vector -> first feature map (params out_channels, size=4)"),
    "head": (_head, "feature map -> one score per image"),
    "dense": (_dense, "fully connected hidden layer (param features)"),
    "wrap": (_keep, "wraps a layer's weights (e.g. spectral norm); named in a layer's 'wrap'"),
}


@dataclass(frozen=True)
class BlockInfo:
    """A registered block."""

    name: str
    kind: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    shape_rule: ShapeRule | None = None
    #: True for a trailing sigmoid that a logits-based loss folds in (same math, bf16-safe).
    folds_into_loss: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def out_shape(self, in_shape: Shape, params: Mapping[str, Any]) -> Shape:
        """The output shape for ``in_shape``; raises ``ValueError`` if the input cannot fit."""
        rule = self.shape_rule or BLOCK_KINDS[self.kind][0]
        return Shape(*rule(in_shape, params))

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword parameters the factory accepts (after ``in_shape`` or ``module``)."""
        sig = inspect.signature(self.factory)
        return dict(list(sig.parameters.items())[1:])

    def check_params(self, params: Mapping[str, Any], where: str) -> None:
        """Raise ``SpecError`` for unknown or missing keyword parameters."""
        accepted = self.parameters()
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        named = {
            k for k, p in accepted.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        if not takes_any:
            for key in params:
                if key not in named:
                    raise SpecError(
                        f"{where}.{key}",
                        f"block {self.name!r} has no parameter {key!r}; {closest(key, named)}",
                    )
        for key, p in accepted.items():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.default is p.empty and key not in params:
                raise SpecError(f"{where}.{key}", f"block {self.name!r} needs parameter {key!r}")


class BlockRegistrar:
    """What ``ganarch_register_blocks`` receives: checks each block, then adds it."""

    def __init__(self, registry: dict[str, BlockInfo], plugin: str) -> None:
        self._registry = registry
        self._plugin = plugin
        self._staged: dict[str, BlockInfo] = {}

    def commit(self) -> None:
        """Add what this plugin registered (called once its hook returned without error)."""
        self._registry.update(self._staged)

    def add(
        self,
        name: str,
        *,
        kind: str,
        factory: Callable[..., Any],
        description: str | None = None,
        shape: ShapeRule | None = None,
        folds_into_loss: bool = False,
    ) -> None:
        """Register block ``name`` of ``kind`` built by ``factory(in_shape, **params)``.

        For ``kind="wrap"`` the factory is ``factory(module, **params) -> module``.
        """
        who = f"plugin {self._plugin!r}"
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"{who}: block name must be an identifier-like string, got {name!r}")
        if kind not in BLOCK_KINDS:
            raise PluginError(
                f"{who}: block {name!r} has unknown kind {kind!r}; {closest(kind, BLOCK_KINDS)}"
            )
        if not callable(factory):
            raise PluginError(f"{who}: factory of block {name!r} is not callable: {factory!r}")
        if shape is not None and not callable(shape):
            raise PluginError(f"{who}: shape rule of block {name!r} is not callable: {shape!r}")
        try:
            inspect.signature(factory)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{who}: cannot read the signature of {name!r}'s factory") from exc
        if name in self._registry or name in self._staged:
            other = (self._registry.get(name) or self._staged[name]).plugin
            raise PluginError(f"block {name!r} is registered twice: by plugin {other!r} and {who}")
        doc = description if description is not None else inspect.getdoc(factory) or ""
        self._staged[name] = BlockInfo(
            name=name,
            kind=kind,
            factory=factory,
            plugin=self._plugin,
            description=doc.strip().splitlines()[0] if doc.strip() else "",
            shape_rule=shape,
            folds_into_loss=folds_into_loss,
        )


_lock = threading.RLock()
_cache: tuple[int, dict[str, BlockInfo]] | None = None


def blocks(kind: str | None = None) -> dict[str, BlockInfo]:
    """All registered blocks (optionally of one kind), by name, in name order."""
    global _cache
    with _lock:
        gen = plugins.generation()
        if _cache is None or _cache[0] != gen:
            found: dict[str, BlockInfo] = {}
            plugins.collect("ganarch_register_blocks", lambda p: BlockRegistrar(found, p))
            _cache = (gen, dict(sorted(found.items())))
        table = _cache[1]
    if kind is None:
        return dict(table)
    if kind not in BLOCK_KINDS:
        raise SpecError("kind", f"unknown block kind {kind!r}; {closest(kind, BLOCK_KINDS)}")
    return {n: b for n, b in table.items() if b.kind == kind}


def get_block(name: str, where: str = "block", kind: str | None = None) -> BlockInfo:
    """Look up a block by name; ``SpecError`` with the closest names if it is unknown."""
    table = blocks()
    if not isinstance(name, str) or name not in table:
        pool = [n for n, b in table.items() if kind is None or b.kind == kind]
        raise SpecError(where, f"{name!r} is not a registered block; {closest(str(name), pool)}")
    info = table[name]
    if kind is not None and info.kind != kind:
        pool = [n for n, b in table.items() if b.kind == kind]
        raise SpecError(
            where,
            f"block {name!r} is a {info.kind!r} block, expected {kind!r}; {closest(name, pool)}",
        )
    return info
