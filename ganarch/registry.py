"""The block registry: what plugins register, checked on the way in, and looked up by name.

A block is a factory ``factory(in_shape, **params) -> nn.Module`` with a *kind* and a shape
rule (channels and spatial size in -> out). The builder only ever talks to this registry,
so it never names a concrete block.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
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


# -- block kinds: registered by plugins (the built-in ones by ``plugins/blocks.py``) -------------


@dataclass(frozen=True)
class KindInfo:
    """A registered block kind: the shape rule every block of the kind follows by default."""

    name: str
    shape_rule: ShapeRule
    description: str
    plugin: str
    #: Registration order (built-ins first, in their order), so listings keep it.
    position: int = 0


_POSITIONS = itertools.count()  # rebuilt tables draw new numbers, in the same order


class BlockKindRegistrar(Registrar[KindInfo]):
    """What ``ganarch_register_block_kinds`` receives: checks each kind, then stages it."""

    noun = "block kind"
    listed_by = "ganarch blocks"

    def add(self, name: str, *, shape: ShapeRule, description: str) -> None:
        """Register kind ``name`` whose blocks map ``shape(in_shape, params) -> Shape`` (raise
        ``ValueError`` when the input cannot fit, :class:`ParamError` for one bad param)."""
        self.claim(name)
        who = f"{self.who}: block kind {name!r}"
        if not callable(shape):
            raise PluginError(f"{who}: shape rule is not callable: {shape!r}")
        if not isinstance(description, str) or not description.strip():
            raise PluginError(f"{who}: description must be a non-empty string (one line)")
        info = KindInfo(name, shape, " ".join(description.split()), self.plugin)
        self.stage(name, dataclasses.replace(info, position=next(_POSITIONS)))


#: Every block kind plugins registered, cached until the set of plugins changes. The block
#: registry reads this one (a block is checked against its kind), never the other way round.
KINDS: Registry[KindInfo] = Registry("ganarch_register_block_kinds", BlockKindRegistrar)


def block_kinds() -> dict[str, KindInfo]:
    """Every registered block kind by name, in registration order (built-ins first)."""
    return dict(sorted(KINDS.entries().items(), key=lambda item: item[1].position))


def unknown_kind(kind: Any) -> str:
    """``"unknown kind 'x'; did you mean 'conv'?"``, or which failed plugin would add it."""
    why = KINDS.unknown(kind)
    head = f"{kind!r} is not a registered block kind; "
    return f"unknown kind {kind!r}; {why[len(head) :]}" if why.startswith(head) else why


def not_a_kind(kind: Any) -> str:
    """``"'x' is not a block kind; did you mean 'conv'?"`` (or which failed plugin adds it)."""
    why = unknown_kind(kind)
    head = f"unknown kind {kind!r}; "
    return f"{kind!r} is not a block kind; {why[len(head) :]}" if why.startswith(head) else why


def is_kind(kind: Any) -> bool:
    """True when ``kind`` is a registered block kind."""
    return KINDS.get(kind) is not None


class _KindsView(Mapping[str, tuple[ShapeRule, str]]):
    """``BLOCK_KINDS`` as before: kind -> (shape rule, meaning), read-only, computed from the
    registered kinds at each use (so a plugin's kind is in it once the plugin is loaded)."""

    def __getitem__(self, kind: str) -> tuple[ShapeRule, str]:
        info = KINDS.get(kind)
        if info is None:
            raise KeyError(kind)
        return info.shape_rule, info.description

    def __iter__(self) -> Iterator[str]:
        return iter(block_kinds())

    def __len__(self) -> int:
        return len(KINDS.entries())

    def __contains__(self, kind: object) -> bool:
        return KINDS.get(kind) is not None

    def __repr__(self) -> str:
        return f"BLOCK_KINDS({list(self)})"


#: Every block kind with its shape rule and a one-line meaning (a read-only view of
#: :func:`block_kinds`, kept for code written when the kinds were a fixed table).
BLOCK_KINDS: Mapping[str, tuple[ShapeRule, str]] = _KindsView()


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
        rule = self.shape_rule
        if rule is None:
            kind = KINDS.get(self.kind)
            if kind is None:  # the kind's plugin was unloaded after this block was looked up
                raise ValueError(unknown_kind(self.kind))
            rule = kind.shape_rule
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
    listed_by = "ganarch blocks"
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
        if KINDS.get(kind) is None:
            why = unknown_kind(kind)  # or: the kind's plugin failed, and why
            joint = " has " if why.startswith("unknown kind") else ": kind "
            raise PluginError(f"{who}: block {name!r}{joint}{why}")
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
    if KINDS.get(kind) is None:
        raise SpecError("kind", unknown_kind(kind).replace("unknown kind", "unknown block kind", 1))
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
