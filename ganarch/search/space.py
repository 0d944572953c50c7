"""Search-space files: which template choices a study varies, and how each is sampled.

A space file (TOML or YAML, read as data only) looks like::

    template = "dcgan"
    description = "the paper's rule toggles"
    image_size = 32          # defaults; CLI flags override them
    width = 32
    latent_dim = 100

    [fixed]                  # choices held constant in every trial
    batch_size = 64

    [choices]
    g_upsample = { blocks = "upsample" }                 # every registered upsample block
    d_norm = { blocks = "norm", exclude = ["groupnorm"] }
    d_wrap = { blocks = "wrap", include_none = true }    # spectral_norm or "none"
    beta1 = [0.5, 0.9]                                   # a list: categorical
    lr = { low = 5e-5, high = 1e-3, log = true }         # a range (add int = true, step = ...)
    "d_activation_params.slope" = { low = 0.05, high = 0.3 }   # only when the block takes it

The choices are the template's (``ganarch.templates``: ``dcgan`` unless the file names
another); the search layer takes everything it knows about them from the template's
declaration. A choice of the form ``X_params.P`` is asked only when the block chosen for ``X``
accepts the parameter ``P``; a choice the template declares as requiring others (``dcgan``'s
width of dense layers) only when one of them is set; any choice may add
``when = { other_choice = value-or-list }``. A ``when`` or ``X_params.P`` choice gets a
distinct Optuna parameter name per branch (``d_activation_params.slope|leaky_relu``), because
Optuna's samplers model a parameter name as one distribution; a ``requires`` choice keeps its
own name (its values are the same wherever it is asked). ``lr`` sets both ``lr_g`` and ``lr_d``.
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ganarch.errors import SpecError, closest
from ganarch.registry import blocks, is_kind, not_a_kind
from ganarch.spec import TrainingSpec, read_data_file
from ganarch.templates import TemplateInfo, get_template, templates, unknown_template

__all__ = [
    "Choice",
    "SearchSpace",
    "available_spaces",
    "load_space",
    "space_path",
]

SPACE_PACKAGE = "ganarch_search_spaces"
SUFFIXES = (".toml", ".yaml", ".yml", ".json")
#: The template of a space file that names none.
DEFAULT_TEMPLATE = "dcgan"

#: Geometry settings a space may give as defaults (CLI flags override them).
GEOMETRY = ("image_size", "width", "latent_dim")
TRAINING_KEYS: tuple[str, ...] = tuple(f.name for f in fields(TrainingSpec))
#: Aliases a space may use: ``lr`` sets the learning rate of both networks.
ALIASES: dict[str, tuple[str, ...]] = {"lr": ("lr_g", "lr_d")}
#: Integer training settings (a range over them needs ``int = true``).
_INT_TRAINING = tuple(k for k, v in TrainingSpec().to_dict().items() if type(v) is int)
BRANCH_SEP = "|"

_TOP_KEYS = ["template", "description", *GEOMETRY, "fixed", "choices"]
_RANGE_KEYS = {"low", "high", "log", "int", "step", "when"}
_BLOCK_KEYS = {"blocks", "exclude", "include_none", "when"}
_VALUES_KEYS = {"values", "when"}


def _valid_names(info: TemplateInfo) -> list[str]:
    return [*info.defaults, *TRAINING_KEYS, *ALIASES, *info.param_names]


@dataclass(frozen=True)
class Choice:
    """One searched choice: categorical ``values`` or a numeric range, maybe conditional."""

    name: str  # the template choice, e.g. "g_upsample" or "d_activation_params.slope"
    values: tuple[Any, ...] | None = None  # categorical values (None for a range)
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    step: float | None = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    where: str = ""  # path-qualified place in the file, for error messages

    @property
    def is_categorical(self) -> bool:
        return self.values is not None

    @property
    def is_finite(self) -> bool:
        return self.is_categorical or self.int or self.step is not None

    def grid_values(self) -> list[Any]:
        """Every value of a finite choice (for the grid sampler)."""
        if self.values is not None:
            return list(self.values)
        if not self.is_finite:
            raise SpecError(self.where, "a continuous range has no finite grid")
        step = self.step if self.step is not None else 1
        n = math.floor((self.high - self.low) / step + 1e-9) + 1
        vals = [self.low + i * step for i in range(n)]
        return [round(v) for v in vals] if self.int else vals

    def suggest(self, trial: Any, param_name: str) -> Any:
        if self.values is not None:
            return trial.suggest_categorical(param_name, list(self.values))
        if self.int:
            return trial.suggest_int(
                param_name,
                int(self.low),
                int(self.high),
                step=int(self.step or 1),
                log=self.log,
            )
        return trial.suggest_float(param_name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.values is not None:
            text = "{" + ", ".join(map(_fmt, self.values)) + "}"
        else:
            text = f"[{_fmt(self.low)}, {_fmt(self.high)}]" + (" log" if self.log else "")
            text += " int" if self.int else ""
            text += f" step {_fmt(self.step)}" if self.step is not None else ""
        if self.when:
            cond = ", ".join(f"{k} in {{{', '.join(map(_fmt, v))}}}" for k, v in self.when.items())
            text += f" when {cond}"
        return text


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; ``suggest(trial)`` returns the template choices of one trial."""

    name: str
    source: str
    template: str = DEFAULT_TEMPLATE
    description: str = ""
    image_size: int = 32
    width: int = 64
    latent_dim: int = 100
    fixed: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[Choice, ...] = ()

    @property
    def info(self) -> TemplateInfo:
        """The registered template this space searches."""
        return get_template(self.template, f"{self.source}: template")

    def is_conditional(self, choice: Choice) -> bool:
        """True when ``choice`` is asked only in some trials (a condition, block params, or a
        choice the template declares as requiring others)."""
        return _conditional(choice, self.info)

    def resolve(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's full choices: the template's defaults and training defaults, overridden."""
        return self.info.resolve(choices)

    # -- sampling -----------------------------------------------------------------------------

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask ``trial`` for every active choice; return the template keyword choices.

        The result holds the fixed choices and the suggested ones (aliases expanded and
        ``X_params.P`` gathered into ``X_params`` dicts), ready for :meth:`spec`.
        """
        flat: dict[str, Any] = dict(self.fixed)
        for choice in self.choices:  # validated order: a condition's parent comes first
            branch = self._branch(choice, flat)
            if branch is None:
                continue
            name = choice.name + (BRANCH_SEP + BRANCH_SEP.join(branch) if branch else "")
            flat[choice.name] = choice.suggest(trial, name)
        return _expand(flat, self.info)

    def _branch(self, choice: Choice, flat: Mapping[str, Any]) -> list[str] | None:
        """The branch labels that make ``choice``'s parameter name, or None if inactive."""
        info = self.info
        labels: list[str] = []
        for key, allowed in choice.when.items():
            value = _resolved(key, flat, info)
            if value not in allowed:
                return None
            labels.append(_fmt(value))
        if "_params." in choice.name:
            owner, param = choice.name.split(".", 1)
            block = _resolved(owner.removesuffix("_params"), flat, info)
            if not _accepts(block, param):
                return None
            if owner.removesuffix("_params") not in choice.when:
                labels.append(str(block))
        needs = info.requires.get(choice.name)
        if needs and not any(_is_set(_resolved(n, flat, info)) for n in needs):
            return None
        return labels

    # -- grid ---------------------------------------------------------------------------------

    @property
    def is_finite(self) -> bool:
        return all(c.is_finite for c in self.choices)

    def grid(self) -> dict[str, list[Any]]:
        """Every Optuna parameter name (one per branch) with its values, for ``GridSampler``."""
        infinite = [c for c in self.choices if not c.is_finite]
        if infinite:
            raise SpecError(
                infinite[0].where,
                "the grid sampler needs a finite space; this is a continuous range "
                "(give a list, int = true or a step)",
            )
        grid: dict[str, list[Any]] = {}
        for choice in self.choices:
            for labels in self._possible_branches(choice):
                name = choice.name + (BRANCH_SEP + BRANCH_SEP.join(labels) if labels else "")
                grid[name] = choice.grid_values()
        return grid

    def grid_size(self) -> int:
        """How many distinct configurations the space holds (conditional branches counted)."""
        total = 0
        by_name = {c.name: c for c in self.choices}
        top = [c for c in self.choices if not self.is_conditional(c)]
        for combo in itertools.product(*(c.grid_values() for c in top)):
            flat = {**self.fixed, **{c.name: v for c, v in zip(top, combo, strict=True)}}
            n = 1
            for c in self.choices:
                if self.is_conditional(c) and self._branch(c, flat) is not None:
                    n *= len(by_name[c.name].grid_values())
            total += n
        return total

    def _possible_branches(self, choice: Choice) -> list[list[str]]:
        if not self.is_conditional(choice):
            return [[]]
        options: list[list[str]] = []
        for allowed in choice.when.values():
            options.append([_fmt(v) for v in allowed])
        if "_params." in choice.name:
            owner, param = choice.name.split(".", 1)
            owner = owner.removesuffix("_params")
            if owner not in choice.when:
                options.append([str(b) for b in self._values_of(owner) if _accepts(b, param)])
        return [list(p) for p in itertools.product(*options)]

    def _values_of(self, name: str) -> list[Any]:
        for c in self.choices:
            if c.name == name:
                return c.grid_values() if c.is_finite else []
        return [_resolved(name, self.fixed, self.info)]

    # -- display ------------------------------------------------------------------------------

    def describe(self) -> list[tuple[str, str]]:
        rows = [(c.name, c.describe()) for c in self.choices]
        rows += [(k, f"{_fmt(v)} (fixed)") for k, v in self.fixed.items()]
        return rows

    def first_choices(self) -> dict[str, Any]:
        """The first value of every active choice: one buildable point to check settings on."""
        flat: dict[str, Any] = dict(self.fixed)
        for c in self.choices:
            if self._branch(c, flat) is None:
                continue
            flat[c.name] = c.values[0] if c.values is not None else c.low
        return _expand(flat, self.info)

    def spec(
        self,
        choices: Mapping[str, Any],
        *,
        channels: int,
        image_size: int | None = None,
        width: int | None = None,
        latent_dim: int | None = None,
    ):
        """Build the template's ``GANSpec`` for ``choices`` (raises ``SpecError``)."""
        return self.info.spec(
            image_size=image_size or self.image_size,
            channels=channels,
            latent_dim=latent_dim or self.latent_dim,
            width=width or self.width,
            **dict(choices),
        )


# -- loading ----------------------------------------------------------------------------------


def space_path(name_or_path: str | Path) -> Path:
    """Find a space file: an existing path, or the name of a shipped space (``dcgan``)."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix.lower() in SUFFIXES or "/" in text or path.is_file():
        if not path.is_file():
            raise SpecError(text, "no such search-space file")
        return path
    shipped = _shipped()
    if text in shipped:
        return shipped[text]
    raise SpecError(
        "--space", f"no search space named {text!r}; {closest(text, shipped) or 'none shipped'}"
    )


def available_spaces() -> dict[str, Path]:
    """The shipped search spaces by name."""
    return _shipped()


def _shipped() -> dict[str, Path]:
    try:
        roots = [importlib.resources.files(SPACE_PACKAGE)]
    except ModuleNotFoundError:  # pragma: no cover - a broken install
        return {}
    except NotADirectoryError:  # an editable install made before __init__.py existed
        import ganarch_search_spaces

        roots = [Path(p) for p in ganarch_search_spaces.__path__ if Path(p).is_dir()]
    found: dict[str, Path] = {}
    for root in roots:
        for entry in root.iterdir():
            suffix = Path(entry.name).suffix.lower()
            if suffix in SUFFIXES and entry.is_file():
                found.setdefault(Path(entry.name).stem, Path(str(entry)))
    return dict(sorted(found.items()))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a search space by shipped name or path (raises ``SpecError``)."""
    path = space_path(name_or_path)
    data = read_data_file(path)
    return parse_space(data, source=str(path), name=path.stem)


def parse_space(data: Any, source: str = "<space>", name: str = "space") -> SearchSpace:
    """Validate plain data as a search space; every error names ``source: key.path``."""

    def err(where: str, problem: str) -> SpecError:
        return SpecError(f"{source}: {where}" if where else source, problem)

    if not isinstance(data, Mapping):
        raise err("", f"a search space must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise err(str(key), f"unknown key; {closest(str(key), _TOP_KEYS)}")
    template = data.get("template", DEFAULT_TEMPLATE)
    if not isinstance(template, str) or template not in templates():  # a list is unhashable
        raise err("template", unknown_template(template))
    info = get_template(template)
    geometry: dict[str, int] = {}
    for key in GEOMETRY:
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise err(key, f"must be a positive integer, got {v!r}")
            geometry[key] = v
    description = data.get("description", "")
    if not isinstance(description, str):
        raise err("description", "must be a string")

    valid = _valid_names(info)
    fixed_raw = data.get("fixed", {}) or {}
    if not isinstance(fixed_raw, Mapping):
        raise err("fixed", f"must be a table, got {type(fixed_raw).__name__}")
    fixed: dict[str, Any] = {}
    for key, value in fixed_raw.items():
        _check_name(str(key), f"fixed.{key}", valid, err, info)
        if "_params." not in key and key in info.param_names:
            if not isinstance(value, Mapping):
                raise err(f"fixed.{key}", "must be a table of block params")
            for p, pv in value.items():
                fixed[f"{key}.{p}"] = _scalar(pv, f"fixed.{key}.{p}", err)
            continue
        fixed[str(key)] = _scalar(value, f"fixed.{key}", err)
        if key in info.block_choices:  # the same block checks as a one-value list
            _categorical(str(key), [value], {}, f"fixed.{key}", err, info)

    raw = data.get("choices", {}) or {}
    if not isinstance(raw, Mapping):
        raise err("choices", f"must be a table, got {type(raw).__name__}")
    if not raw:
        raise err("choices", "a search space needs at least one choice")
    parsed: dict[str, Choice] = {}
    for key, value in raw.items():
        key = str(key)
        where = f"choices.{key}"
        _check_name(key, where, valid, err, info)
        if key in info.param_names:
            raise err(where, f"give one parameter per choice, e.g. '{key}.slope'")
        if key in fixed:
            raise err(where, f"{key!r} is also fixed in [fixed]; keep one")
        parsed[key] = _parse_choice(key, value, where, err, info)
    _check_aliases({**fixed, **parsed}, err)

    # Conditions must name an earlier or fixed choice with values it can take.
    for choice in parsed.values():
        for parent, allowed in choice.when.items():
            where = f"{choice.where}.when.{parent}"
            if parent == choice.name:
                raise err(where, "a choice cannot depend on itself")
            if parent not in parsed and parent not in fixed and parent not in info.defaults:
                raise err(where, f"unknown choice; {closest(parent, list(parsed))}")
            if parent in parsed and parsed[parent].is_categorical:
                for v in allowed:
                    if v not in parsed[parent].values:
                        raise err(
                            where,
                            f"{v!r} is not among the values of {parent!r}: "
                            + ", ".join(map(_fmt, parsed[parent].values)),
                        )
        if "_params." in choice.name:
            _check_param_choice(choice, parsed, fixed, err, info)

    space = SearchSpace(
        name=name,
        source=source,
        template=template,
        description=description,
        **geometry,
        fixed=fixed,
        choices=tuple(replace(c, where=f"{source}: {c.where}") for c in _order(parsed, err, info)),
    )
    _check_representative(space, err)
    return space


def _check_name(key: str, where: str, valid: list[str], err, info: TemplateInfo) -> None:
    if key in valid:
        return
    if "." in key:
        owner, param = key.split(".", 1)
        if owner in info.param_names and param.isidentifier():
            return
        if owner in info.param_names:
            raise err(where, f"{param!r} is not a parameter name")
    raise err(where, f"unknown choice {key!r}; {closest(key, valid)}")


def _parse_choice(key: str, value: Any, where: str, err, info: TemplateInfo) -> Choice:
    if isinstance(value, list):
        return _categorical(key, value, {}, where, err, info)
    if not isinstance(value, Mapping):
        raise err(
            where,
            "must be a list of values, a range table {low, high}, or {blocks = KIND}; "
            f"got {type(value).__name__} {value!r} (fixed values go in [fixed])",
        )
    when = _parse_when(value.get("when"), f"{where}.when", err)
    if "blocks" in value:
        return _block_choice(key, value, when, where, err, info)
    if "values" in value:
        _unknown_keys(value, _VALUES_KEYS, where, err)
        if not isinstance(value["values"], list):
            raise err(f"{where}.values", "must be a list")
        return _categorical(key, value["values"], when, where, err, info)
    if "low" in value or "high" in value:
        return _range(key, value, when, where, err, info)
    keys = sorted(value)
    hint = closest(keys[0], [*_RANGE_KEYS, *_BLOCK_KEYS, "values"]) if keys else ""
    raise err(where, f"needs 'values', 'low'/'high' or 'blocks'; {hint}".rstrip("; "))


def _unknown_keys(value: Mapping[str, Any], allowed: set[str], where: str, err) -> None:
    for k in value:
        if k not in allowed:
            raise err(f"{where}.{k}", f"unknown key; {closest(str(k), allowed)}")


def _categorical(key: str, values: list[Any], when, where: str, err, info: TemplateInfo) -> Choice:
    if not values:
        raise err(where, "an empty list of values")
    out = []
    for i, v in enumerate(values):
        out.append(_scalar(v, f"{where}[{i}]", err))
    if len({(type(v), v) for v in out}) != len(out):
        raise err(where, "the same value is listed twice")
    kind = info.block_choices.get(key)
    if kind is not None:
        table = blocks()
        for i, v in enumerate(out):
            if v in ("none", None) and key in info.optional:
                continue
            if not isinstance(v, str) or v not in table:
                pool = [n for n, b in table.items() if b.kind == kind]
                if key in info.optional:
                    pool.append("none")
                raise err(
                    f"{where}[{i}]",
                    f"{v!r} is not a registered {kind} block; {closest(str(v), pool)}",
                )
            if table[v].kind != kind:
                pool = [n for n, b in table.items() if b.kind == kind]
                raise err(
                    f"{where}[{i}]",
                    f"block {v!r} is a {table[v].kind!r} block, expected {kind!r}; "
                    f"{closest(v, pool)}",
                )
    return Choice(key, values=tuple(out), when=when, where=where)


def _block_choice(
    key: str, value: Mapping[str, Any], when, where: str, err, info: TemplateInfo
) -> Choice:
    _unknown_keys(value, _BLOCK_KEYS, where, err)
    kind = value["blocks"]
    expected = info.block_choices.get(key)
    optional = key in info.optional
    if not isinstance(kind, str) or not is_kind(kind):
        raise err(f"{where}.blocks", not_a_kind(kind))
    if expected is None:
        raise err(f"{where}.blocks", f"choice {key!r} is not a block choice; give values")
    if kind != expected:
        raise err(f"{where}.blocks", f"choice {key!r} takes {expected!r} blocks, not {kind!r}")
    names = list(blocks(kind))
    exclude = value.get("exclude", []) or []
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list):
        raise err(f"{where}.exclude", "must be a list of block names")
    for i, name in enumerate(exclude):
        if name not in names and not (name == "none" and optional):
            raise err(
                f"{where}.exclude[{i}]",
                f"{name!r} is not a registered {kind} block; {closest(str(name), names)}",
            )
    # The built-in "norm" kind's semantics: its "none" block (no norm) is searched only when
    # asked for, so `{ blocks = "norm" }` means "every real norm" unless include_none says so.
    include_none = value.get("include_none", kind == "norm" and optional)
    if not isinstance(include_none, bool):
        raise err(f"{where}.include_none", "must be true or false")
    if include_none and not optional:
        raise err(
            f"{where}.include_none", f"the template cannot leave out a {kind!r} block; remove it"
        )
    values = [n for n in names if n not in exclude]
    if kind == "norm" and not include_none and "none" in values:
        values.remove("none")  # "none" is itself a registered norm block
    if include_none and "none" not in values and "none" not in exclude:
        values.append("none")
    if not values:
        raise err(where, f"no {kind} blocks left after exclude")
    return Choice(key, values=tuple(values), when=when, where=where)


def _range(key: str, value: Mapping[str, Any], when, where: str, err, info: TemplateInfo) -> Choice:
    _unknown_keys(value, _RANGE_KEYS, where, err)
    for k in ("low", "high"):
        if k not in value:
            raise err(where, f"a range needs both 'low' and 'high' (missing {k!r})")
        v = value[k]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise err(f"{where}.{k}", f"must be a number, got {v!r}")
    low, high = value["low"], value["high"]
    for k in ("log", "int"):
        if k in value and not isinstance(value[k], bool):
            raise err(f"{where}.{k}", "must be true or false")
    is_int = value.get("int", False)
    log = value.get("log", False)
    if key in info.block_choices:
        raise err(where, f"{key!r} takes block names; use a list or {{blocks = ...}}")
    if low >= high:
        raise err(where, f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise err(f"{where}.low", f"a log range needs low > 0, got {low}")
    if is_int:
        for k in ("low", "high"):
            if not float(value[k]).is_integer():
                raise err(f"{where}.{k}", f"int = true needs an integer, got {value[k]!r}")
        low, high = int(low), int(high)
    step = value.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            raise err(f"{where}.step", f"must be a positive number, got {step!r}")
        if log:
            raise err(f"{where}.step", "Optuna does not combine step with log = true")
        if is_int and not float(step).is_integer():
            raise err(f"{where}.step", f"int = true needs an integer step, got {step!r}")
    if (key in info.int_choices or key in _INT_TRAINING) and not is_int:
        raise err(where, f"{key!r} is an integer; add int = true")
    return Choice(
        key,
        low=low,
        high=high,
        log=log,
        int=is_int,
        step=step,
        when=when,
        where=where,
    )


def _parse_when(raw: Any, where: str, err) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        raise err(where, "must be a table {choice = value or [values]}")
    out: dict[str, tuple[Any, ...]] = {}
    for k, v in raw.items():
        vals = v if isinstance(v, list) else [v]
        out[str(k)] = tuple(_scalar(x, f"{where}.{k}", err) for x in vals)
    return out


def _scalar(v: Any, where: str, err) -> Any:
    if v is None or isinstance(v, str | bool | int | float):
        return v
    raise err(where, f"must be a string, number or bool, got {type(v).__name__}")


def _check_aliases(names: Mapping[str, Any], err) -> None:
    for alias, targets in ALIASES.items():
        if alias in names:
            for t in targets:
                if t in names:
                    raise err(f"choices.{t}", f"{alias!r} already sets {t!r}; keep one")


def _check_param_choice(choice: Choice, parsed, fixed, err, info: TemplateInfo) -> None:
    owner, param = choice.name.split(".", 1)
    base = owner.removesuffix("_params")
    if base in parsed:
        candidates = list(parsed[base].values or [])
    else:
        candidates = [fixed.get(base, info.defaults[base])]
    if not any(_accepts(b, param) for b in candidates):
        accepted: set[str] = set()
        table = blocks()
        for b in candidates:
            if b in table:
                accepted |= set(table[b].parameters())
        raise err(
            choice.where,
            f"no {base} block in {{{', '.join(map(str, candidates))}}} takes a parameter "
            f"{param!r}; {closest(param, accepted) or 'they take none'}",
        )


def _order(parsed: dict[str, Choice], err, info: TemplateInfo) -> list[Choice]:
    """Parents before the choices that depend on them (a topological order)."""
    done: dict[str, Choice] = {}
    visiting: set[str] = set()

    def deps(c: Choice) -> list[str]:
        d = list(c.when)
        if "_params." in c.name:
            d.append(c.name.split(".", 1)[0].removesuffix("_params"))
        d += info.requires.get(c.name, ())
        return [x for x in d if x in parsed]

    def visit(c: Choice) -> None:
        if c.name in done:
            return
        if c.name in visiting:
            raise err(f"{c.where}.when", "conditions form a cycle")
        visiting.add(c.name)
        for d in deps(c):
            visit(parsed[d])
        visiting.discard(c.name)
        done[c.name] = c

    for c in parsed.values():
        visit(c)
    return list(done.values())


def _check_values(space: SearchSpace, err) -> None:
    """Cheap per-value checks of what the template would reject (every value, every choice)."""
    info = space.info
    for c in space.choices:
        values = c.values if c.values is not None else (c.low, c.high)
        name = c.name
        for i, v in enumerate(values):
            where = f"choices.{name}" + (f"[{i}]" if c.values is not None else "")
            keys = ALIASES.get(name, (name,))
            for key in keys:
                if key in TRAINING_KEYS:
                    try:
                        TrainingSpec.from_dict({key: v}, "training")
                    except SpecError as exc:
                        raise err(where, f"the template rejects {v!r}: {exc.problem}") from None
            if name in info.int_choices and (
                isinstance(v, bool) or not isinstance(v, int) or v < 0
            ):
                raise err(where, f"must be a non-negative integer, got {v!r}")
            if name in info.bool_choices and not isinstance(v, bool):
                raise err(where, f"must be true or false, got {v!r}")


def _check_representative(space: SearchSpace, err) -> None:
    """Build the spec for the first value of every choice so template errors show at load."""
    _check_values(space, err)
    try:
        space.spec(space.first_choices(), channels=1)
    except SpecError as exc:
        raise err("choices", f"the template rejects these choices: {exc}") from exc


def _conditional(c: Choice, info: TemplateInfo) -> bool:
    return bool(c.when) or "_params." in c.name or c.name in info.requires


def _is_set(value: Any) -> bool:
    """A value that makes a ``requires`` choice matter: non-zero, true, not ``"none"``."""
    return bool(value) and value != "none"


def _resolved(name: str, flat: Mapping[str, Any], info: TemplateInfo) -> Any:
    if name in flat:
        return flat[name]
    if name in ALIASES:
        return _resolved(ALIASES[name][0], flat, info)
    for alias, targets in ALIASES.items():
        if name in targets and alias in flat:
            return flat[alias]
    if name in info.defaults:
        return info.defaults[name]
    return getattr(TrainingSpec(), name, None)


def _accepts(block: Any, param: str) -> bool:
    table = blocks()
    if not isinstance(block, str) or block not in table:
        return False
    params = table[block].parameters()
    return param in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _expand(flat: Mapping[str, Any], info: TemplateInfo) -> dict[str, Any]:
    """Aliases into their targets and ``X_params.P`` into ``X_params = {P: ...}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in ALIASES:
            for t in ALIASES[key]:
                out[t] = value
        elif "." in key:
            owner, param = key.split(".", 1)
            out.setdefault(owner, {})[param] = value
        else:
            out[key] = value
    # params for a block that was not chosen are dropped by the branch logic; fixed params of
    # an activation the trial did not pick would fail the template, so keep only accepted ones
    for owner in info.param_names:
        if owner in out:
            base = owner.removesuffix("_params")
            block = out.get(base, info.defaults[base])
            out[owner] = {p: v for p, v in out[owner].items() if _accepts(block, p)}
            if not out[owner]:
                del out[owner]
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def format_choices(choices: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """A compact one-line rendering of choices (for tables)."""
    items = [(k, choices[k]) for k in (keys or choices) if k in choices]
    return ", ".join(f"{k}={_fmt(v)}" for k, v in items)
