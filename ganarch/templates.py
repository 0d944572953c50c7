"""Architecture templates: families of specs laid out from keyword choices, registered by plugins.

A template is a build function ``build(image_size, channels, latent_dim, width, **choices) ->
GANSpec`` plus its choices declared as data: every choice with its default, which choices
name a block (and of which kind), which may be ``"none"``, which take block params
(``X_params``), which are integers or true/false, and which only matter when another is set.
The search layer reads a space's template from here and knows no template by name.

``dcgan`` (:mod:`ganarch.dcgan`) is the first template, registered by the built-in plugin like
any other. Example::

    info = ganarch.templates.get_template("dcgan")
    spec = info.spec(32, channels=1, width=16, d_norm="none", beta1=0.9)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ganarch.builder import GANSpec
from ganarch.dcgan import CHOICE_KINDS, CLAIM_TOGGLES, NONE_KINDS, PAPER_CHOICES, dcgan_spec
from ganarch.errors import PluginError, SpecError, closest
from ganarch.plugin.registry import Registrar, Registry, plugin_code
from ganarch.registry import get_block, is_kind, not_a_kind
from ganarch.spec import TrainingSpec

__all__ = [
    "CHOICE_KINDS",
    "CLAIM_TOGGLES",
    "GEOMETRY_ARGS",
    "NONE_KINDS",
    "PAPER_CHOICES",
    "TEMPLATES",
    "TemplateInfo",
    "TemplateRegistrar",
    "dcgan_spec",
    "get_template",
    "templates",
    "unknown_template",
]

#: What every build function takes besides the choices.
GEOMETRY_ARGS = ("image_size", "channels", "latent_dim", "width")
#: Training settings every template accepts as choices (applied to the spec's training).
TRAINING_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainingSpec))
#: Names a choice may not take: geometry, training settings, and the space's ``lr`` alias.
_RESERVED = {*GEOMETRY_ARGS, *TRAINING_KEYS, "lr"}


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class TemplateInfo:
    """A registered template: how to build a spec and its choices, as data."""

    name: str
    build: Callable[..., GANSpec]
    #: Every choice with its default (for ``dcgan``: the paper's value).
    defaults: Mapping[str, Any]
    plugin: str
    description: str = ""
    #: Choices whose value is a registered block, with the block kind it must be.
    block_choices: Mapping[str, str] = field(default_factory=dict)
    #: Block choices that may be ``"none"`` (no layer at all).
    optional: frozenset[str] = frozenset()
    #: Block choices whose block takes params through a choice ``X_params`` (a dict).
    param_choices: tuple[str, ...] = ()
    #: Non-negative integer choices, and true/false choices.
    int_choices: frozenset[str] = frozenset()
    bool_choices: frozenset[str] = frozenset()
    #: A choice that only matters when at least one of these is set (non-zero, true, not
    #: ``"none"``): a search asks for it only then.
    requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Claims of the DCGAN paper (``ganarch.analysis.claims`` ids) this template's choices can
    #: test, each with the choices its toggle moves together (a designed study's factors).
    claims: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def param_names(self) -> tuple[str, ...]:
        """The ``X_params`` choice names, e.g. ``("g_activation_params", ...)``."""
        return tuple(f"{owner}_params" for owner in self.param_choices)

    def resolve(self, choices: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The full choices: the defaults and training defaults, overridden by ``choices``."""
        return {**self.defaults, **TrainingSpec().to_dict(), **dict(choices or {})}

    def spec(
        self,
        image_size: int,
        channels: int = 3,
        latent_dim: int | None = None,
        width: int | None = None,
        **choices: Any,
    ) -> GANSpec:
        """Build this template's spec (raises ``SpecError``).

        Training settings among ``choices`` (``beta1``, ``lr_g``, ...) go to the spec's
        training; ``latent_dim`` and ``width`` default to the build function's defaults.
        ``spec.meta`` records the template, width and full choices. The spec is checked
        against the registered blocks (every shape inferred) before it is returned.
        """
        valid = [*self.defaults, *self.param_names, *TRAINING_KEYS]
        for key in choices:
            if key not in valid:
                raise SpecError(
                    key, f"not a choice of template {self.name!r}; {closest(key, valid)}"
                )
        for key, kind in self.block_choices.items():  # named here, not at a layer index
            value = choices.get(key, self.defaults[key])
            if not (key in self.optional and value in ("none", None)):
                get_block(value, key, kind=kind)
        training = {k: choices.pop(k) for k in list(choices) if k in TRAINING_KEYS}
        geometry = {"latent_dim": latent_dim, "width": width}
        given = {k: v for k, v in geometry.items() if v is not None}
        # A SpecError the build raises on purpose passes; any other failure of a plugin's
        # build is one line naming the template and the plugin (exit 2, not a ganarch bug).
        with plugin_code(self.plugin, f"template {self.name!r}", "build"):
            spec = self.build(image_size=image_size, channels=channels, **given, **choices)
        if not isinstance(spec, GANSpec):
            raise PluginError(
                f"template {self.name!r} (plugin {self.plugin!r}) built "
                f"{type(spec).__name__}, not a GANSpec"
            )
        if training:
            merged = {**spec.training.to_dict(), **training}
            spec = dataclasses.replace(spec, training=TrainingSpec.from_dict(merged))
        meta = dict(spec.meta)
        meta.setdefault("template", self.name)
        meta.setdefault("choices", {**self.defaults, **choices})
        if width is not None:
            meta.setdefault("width", width)
        if meta != dict(spec.meta):
            spec = dataclasses.replace(spec, meta=meta)
        from ganarch.builder import plan  # imports torch: only when a spec is made

        plan(spec)  # every layer against the registered blocks, every shape inferred
        return spec


class TemplateRegistrar(Registrar[TemplateInfo]):
    """What ``ganarch_register_templates`` receives: checks each template, then stages it."""

    noun = "template"

    def add(
        self,
        name: str,
        *,
        build: Callable[..., GANSpec],
        defaults: Mapping[str, Any],
        block_choices: Mapping[str, str] | None = None,
        optional: Iterable[str] = (),
        param_choices: Iterable[str] = (),
        int_choices: Iterable[str] | None = None,
        bool_choices: Iterable[str] | None = None,
        requires: Mapping[str, Iterable[str]] | None = None,
        claims: Mapping[int, Iterable[str]] | None = None,
        description: str | None = None,
    ) -> None:
        """Register template ``name``, built by ``build(image_size, channels, latent_dim,
        width, **choices)``.

        ``defaults``: every choice with its default (strings, numbers, bools). ``block_choices``:
        choice -> block kind (a registered kind: ``ganarch.BLOCK_KINDS``); ``optional``: block
        choices that may be ``"none"``; ``param_choices``: block choices whose block params
        come as ``X_params``; ``int_choices``/``bool_choices`` default to the choices whose default
        is an int/bool; ``requires``: choice -> choices of which one must be set for it to
        matter; ``claims``: DCGAN claim id -> the choices that test it; ``description``
        defaults to ``build``'s docstring's first line.
        """
        self.claim(name)
        who = f"{self.who}: template {name!r}"
        if not callable(build):
            raise PluginError(f"{who}: build is not callable: {build!r}")
        _check_build(build, who)
        if not isinstance(defaults, Mapping) or not defaults:
            raise PluginError(f"{who}: defaults must be a non-empty mapping of choice -> value")
        for key, value in defaults.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise PluginError(f"{who}: choice name {key!r} is not an identifier")
            if key in _RESERVED:
                raise PluginError(
                    f"{who}: choice {key!r} is a geometry or training setting every template "
                    "takes; name it otherwise"
                )
            if key.endswith("_params"):
                raise PluginError(f"{who}: choice {key!r}: '_params' names are for param_choices")
            if value is not None and not isinstance(value, str | bool | int | float):
                raise PluginError(
                    f"{who}: default of {key!r} must be a string, number or bool, got {value!r}"
                )
        blocks_ = dict(block_choices or {})
        for key, kind in blocks_.items():
            _known(key, defaults, who, "block_choices")
            if not is_kind(kind):  # the kinds registry is read here, never the reverse
                raise PluginError(f"{who}: block_choices[{key!r}]: {not_a_kind(kind)}")
            if not isinstance(defaults[key], str):
                raise PluginError(f"{who}: default of block choice {key!r} must be a block name")
        optional_ = frozenset(_names(optional, who, "optional"))
        params_ = tuple(_names(param_choices, who, "param_choices"))
        for what, names in (("optional", optional_), ("param_choices", params_)):
            for key in names:
                if key not in blocks_:
                    raise PluginError(
                        f"{who}: {what}: {key!r} is not a block choice; "
                        f"{closest(key, blocks_) or 'declare it in block_choices'}"
                    )
        for key in blocks_:
            if defaults[key] == "none" and key not in optional_:
                raise PluginError(f"{who}: {key!r} defaults to 'none' but is not optional")
        ints = _typed(defaults, int_choices, int, who, "int_choices")
        bools = _typed(defaults, bool_choices, bool, who, "bool_choices")
        requires_: dict[str, tuple[str, ...]] = {}
        for key, needs in dict(requires or {}).items():
            _known(key, defaults, who, "requires")
            needed = tuple(_names(needs, who, f"requires[{key!r}]"))
            if not needed or key in needed:
                raise PluginError(f"{who}: requires[{key!r}] must name other choices")
            for other in needed:
                _known(other, defaults, who, f"requires[{key!r}]")
            requires_[key] = needed
        claims_: dict[int, tuple[str, ...]] = {}
        for claim, names in dict(claims or {}).items():
            if isinstance(claim, bool) or not isinstance(claim, int):
                raise PluginError(f"{who}: claims: {claim!r} is not a claim number")
            toggles = tuple(_names(names, who, f"claims[{claim}]"))
            for key in toggles:
                if key not in defaults and key not in TRAINING_KEYS:
                    raise PluginError(
                        f"{who}: claims[{claim}]: {key!r} is not a choice; "
                        f"{closest(key, [*defaults, *TRAINING_KEYS])}"
                    )
            claims_[claim] = toggles
        if description is not None and not isinstance(description, str):
            raise PluginError(f"{who}: description must be a string")
        doc = description if description is not None else inspect.getdoc(build) or ""
        self.stage(
            name,
            TemplateInfo(
                name=name,
                build=build,
                defaults=_freeze(defaults),
                plugin=self.plugin,
                description=doc.strip().splitlines()[0] if doc.strip() else "",
                block_choices=_freeze(blocks_),
                optional=optional_,
                param_choices=params_,
                int_choices=ints,
                bool_choices=bools,
                requires=_freeze(requires_),
                claims=_freeze(claims_),
            ),
        )


def _check_build(build: Callable[..., Any], who: str) -> None:
    """``build`` must take the geometry by keyword, ``latent_dim`` and ``width`` with defaults,
    and the choices as ``**choices``."""
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{who}: cannot read the signature of build") from exc
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise PluginError(f"{who}: build must take the choices as **choices")
    for arg in GEOMETRY_ARGS:
        p = params.get(arg)
        if p is None or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise PluginError(f"{who}: build must take {arg!r} by keyword")
        if arg in ("latent_dim", "width") and p.default is p.empty:
            raise PluginError(f"{who}: build's {arg!r} needs a default")


def _names(value: Any, who: str, what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise PluginError(f"{who}: {what} must be a list of choice names, got {value!r}")
    names = list(value)
    for n in names:
        if not isinstance(n, str):
            raise PluginError(f"{who}: {what}: {n!r} is not a choice name")
    return names


def _known(key: Any, defaults: Mapping[str, Any], who: str, what: str) -> None:
    if key not in defaults:
        raise PluginError(
            f"{who}: {what}: {key!r} is not a choice (not in defaults); "
            f"{closest(str(key), defaults)}"
        )


def _typed(
    defaults: Mapping[str, Any], given: Iterable[str] | None, kind: type, who: str, what: str
) -> frozenset[str]:
    """The choices of ``kind`` (int or bool): those given, checked, or those whose default is."""

    def fits(v: Any) -> bool:
        return (
            isinstance(v, bool) if kind is bool else isinstance(v, int) and not isinstance(v, bool)
        )

    if given is None:
        return frozenset(k for k, v in defaults.items() if fits(v))
    names = _names(given, who, what)
    for key in names:
        _known(key, defaults, who, what)
        if not fits(defaults[key]) or (kind is int and defaults[key] < 0):
            rule = "true or false" if kind is bool else "a non-negative integer"
            raise PluginError(f"{who}: {what}: default of {key!r} must be {rule}")
    return frozenset(names)


#: Every template plugins registered, cached until the set of plugins changes.
TEMPLATES: Registry[TemplateInfo] = Registry("ganarch_register_templates", TemplateRegistrar)


def templates() -> dict[str, TemplateInfo]:
    """Every registered template by name, in name order."""
    return TEMPLATES.entries()


def get_template(name: Any, where: str = "template") -> TemplateInfo:
    """The template called ``name``; ``SpecError`` at ``where`` naming the closest names."""
    info = TEMPLATES.get(name)
    if info is None:
        raise SpecError(where, unknown_template(name))
    return info


def unknown_template(name: Any) -> str:
    """``"unknown template 'x'; did you mean 'dcgan'?"``, or which failed plugin would add it."""
    why = TEMPLATES.unknown(name)
    head = f"{name!r} is not a registered template; "
    return f"unknown template {name!r}; {why[len(head) :]}" if why.startswith(head) else why
