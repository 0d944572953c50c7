"""The block registry: what plugins register, checked on the way in, and looked up by name.

A block is a factory ``factory(in_shape, **params) -> nn.Module`` with a *kind* and a shape
rule (channels and spatial size in -> out). The builder only ever talks to this registry,
so it never names a concrete block.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ganarch.errors import PluginError, SpecError, closest
from ganarch.plugin.registry import Registrar, Registry


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


# -- a block's description and param types, read from its factory ---------------------------

_RST = (
    (re.compile(r":[\w:.-]+:`~?([^`]+)`"), r"\1"),  # :class:`nn.Mish`, :param:`x` -> the name
    (re.compile(r"``([^`]+)``"), r"\1"),  # ``groups`` -> groups
    (re.compile(r"`([^`]+)`_?"), r"\1"),
    (re.compile(r"\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*"), r"\1\2"),
)


def plain_description(doc: str) -> str:
    """The first paragraph of a docstring as one line of plain text (no reStructuredText
    markup), so a table shows ``not above groups`` rather than ``not above ``groups````."""
    lines = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    text = " ".join(lines)
    for pattern, repl in _RST:
        text = pattern.sub(repl, text)
    return text


def _param_types(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's parameter annotations, resolved where possible (string annotations from
    ``from __future__ import annotations`` included); an unresolvable one is left out."""
    # a class's own annotations are its attributes, not its parameters: read __init__'s
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # one unresolvable name: resolve the rest one by one
        pass
    found: dict[str, Any] = {}
    glb = getattr(target, "__globals__", {})
    for name, p in inspect.signature(factory).parameters.items():
        tp = p.annotation
        if isinstance(tp, str):
            try:
                tp = eval(tp, dict(glb))  # an annotation the plugin itself wrote, not a spec's
            except Exception:
                continue
        if tp is not p.empty:
            found[name] = tp
    return found


_SCALARS = {bool: "bool", int: "int", float: "float", str: "str", type(None): "None"}


def _members(tp: Any) -> list[Any] | None:
    """The scalar alternatives an annotation allows, or None when it is not only scalars
    (a container, a class of the plugin's own, ``Any``): such a value is not checked."""
    origin = typing.get_origin(tp)
    if tp is None:
        return [type(None)]
    if tp in _SCALARS:
        return [tp]
    if origin is typing.Literal:
        return [("literal", a) for a in typing.get_args(tp)]
    if origin is typing.Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(tp):
            inner = _members(arg)
            if inner is None:
                return None
            out += inner
        return out
    return None


def _fits(value: Any, member: Any) -> bool:
    if isinstance(member, tuple):  # a Literal value: equal and of the same type (1 is not True)
        return type(value) is type(member[1]) and value == member[1]
    if member is bool:
        return isinstance(value, bool)
    if member is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if member is float:  # an int is a fine float (JSON and YAML write 1.0 as 1)
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, member)


def _expected(members: list[Any]) -> str:
    names = [repr(m[1]) if isinstance(m, tuple) else _SCALARS[m] for m in members]
    if all(isinstance(m, tuple) for m in members):
        return "one of " + ", ".join(names)
    return " or ".join(dict.fromkeys(names))


def type_name(annotation: Any) -> str | None:
    """``"int"``, ``"float or None"``, ``"one of 'a', 'b'"`` for a checked annotation, else None."""
    members = _members(annotation)
    return None if members is None else _expected(members)


def type_problem(value: Any, annotation: Any) -> str | None:
    """``"expected int, got 'x'"`` when ``value`` does not fit a scalar ``annotation``; None
    when it fits or the annotation is not one that can be checked."""
    members = _members(annotation)
    if members is None or any(_fits(value, m) for m in members):
        return None
    return f"expected {_expected(members)}, got {value!r}"


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
    #: The factory's parameter annotations; spec values are checked against them.
    param_types: Mapping[str, Any] = field(default_factory=dict)

    def out_shape(self, in_shape: Shape, params: Mapping[str, Any]) -> Shape:
        """The output shape for ``in_shape``; raises ``ValueError`` if the input cannot fit."""
        rule = self.shape_rule or BLOCK_KINDS[self.kind][0]
        return Shape(*rule(in_shape, params))

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword parameters the factory accepts (after ``in_shape`` or ``module``)."""
        sig = inspect.signature(self.factory)
        return dict(list(sig.parameters.items())[1:])

    def check_params(self, params: Mapping[str, Any], where: str) -> None:
        """Raise ``SpecError`` for unknown or missing keyword parameters, and for a value
        that does not fit the factory's annotation (``groups: int`` given ``"x"``), so a bad
        value is named where it is written instead of failing inside the plugin's code."""
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
        for key, value in params.items():
            if key in self.param_types:
                problem = type_problem(value, self.param_types[key])
                if problem:
                    raise SpecError(f"{where}.{key}", problem)


class BlockRegistrar(Registrar[BlockInfo]):
    """What ``ganarch_register_blocks`` receives: checks each block, then stages it.

    A name another plugin already took is not raised at once: the hook goes on, so that
    ``commit()`` can name every clash in one error (and every block the plugin would have
    added is known, for the error of a spec that names one of them).
    """

    noun = "block"
    clashes_at_commit = True

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
        self.claim(name)
        who = self.who
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
        doc = description if description is not None else inspect.getdoc(factory) or ""
        self.stage(
            name,
            BlockInfo(
                name=name,
                kind=kind,
                factory=factory,
                plugin=self.plugin,
                description=plain_description(doc),
                shape_rule=shape,
                folds_into_loss=folds_into_loss,
                param_types=_param_types(factory),
            ),
        )


#: Every block plugins registered, cached until the set of plugins changes.
BLOCKS: Registry[BlockInfo] = Registry("ganarch_register_blocks", BlockRegistrar)


def blocks(kind: str | None = None) -> dict[str, BlockInfo]:
    """All registered blocks (optionally of one kind), by name, in name order."""
    table = BLOCKS.entries()
    if kind is None:
        return table
    if kind not in BLOCK_KINDS:
        raise SpecError("kind", f"unknown block kind {kind!r}; {closest(kind, BLOCK_KINDS)}")
    return {n: b for n, b in table.items() if b.kind == kind}


def get_block(name: str, where: str = "block", kind: str | None = None) -> BlockInfo:
    """Look up a block by name; ``SpecError`` with the closest names if it is unknown."""
    table = blocks()
    if not isinstance(name, str) or name not in table:
        pool = [n for n, b in table.items() if kind is None or b.kind == kind]
        raise SpecError(where, BLOCKS.unknown(name, pool))
    info = table[name]
    if kind is not None and info.kind != kind:
        pool = [n for n, b in table.items() if b.kind == kind]
        raise SpecError(
            where,
            f"block {name!r} is a {info.kind!r} block, expected {kind!r}; {closest(name, pool)}",
        )
    return info
