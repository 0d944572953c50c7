"""The metric registry: sample-quality metrics that plugins register, checked on the way in.

A metric is ``fn(ctx: MetricContext) -> dict[str, float]``; one metric may record several
values (``prdc`` gives precision, recall, density and coverage). Every value declares
whether higher is better, so reports and searches know which way is up, and a metric may
declare :class:`QualityTerm` s: values that enter the quality mean with a weight.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ganarch.errors import GanarchError, PluginError
from ganarch.plugin.registry import Registrar, Registry


@dataclass
class MetricContext:
    """What a metric function receives at each evaluation.

    Features are those of the dataset's feature network (``ganarch.score.features``);
    ``fake_logits`` is its class output for the fakes (``None`` for an unlabelled dataset).
    ``memo`` persists across evaluations of one evaluator: cache real-side work there
    (e.g. k-NN radii of the real features), keyed by your metric's name.
    """

    real_features: torch.Tensor
    fake_features: torch.Tensor
    fake_logits: torch.Tensor | None
    real_labels: torch.Tensor | None
    num_classes: int | None
    fake_images: torch.Tensor
    real_images: torch.Tensor
    device: torch.device
    seed: int = 0
    #: 2048-d Inception features, only when Inception weights are configured.
    real_inception_features: torch.Tensor | None = None
    fake_inception_features: torch.Tensor | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    #: What copies are checked against (every image the generators train on) and the copy
    #: radius; ``None``: the reference set and its own 1 % nearest-other quantile.
    copy_features: torch.Tensor | None = None
    copy_limit: torch.Tensor | None = None


MetricFn = Callable[[MetricContext], Mapping[str, float]]


class MetricFailure(PluginError):
    """A plugin's metric that counts toward quality (or its goodness function) failed: nothing
    can be scored. A fault of the plugin, not of the architecture being scored, so a search
    marks the trial failed (no value) rather than scoring it as bad."""

    def __init__(self, plugin: str, metric: str, message: str) -> None:
        self.plugin = plugin
        self.metric = metric
        super().__init__(message)


#: A goodness function: ``(value, every value recorded at this evaluation) -> [0, 1]``, or
#: ``None`` to leave the term out of this evaluation's mean.
GoodnessFn = Callable[[float, Mapping[str, float]], "float | None"]

#: The named ways a raw value becomes a goodness in [0, 1] (see :class:`QualityTerm`).
GOODNESS = ("value", "baseline")

#: Names the quality formula uses for its factors; no term may take them.
RESERVED_TERMS = ("diversity", "novelty")


@dataclass(frozen=True)
class QualityTerm:
    """How one recorded value enters the quality mean: ``quality = diversity × novelty ×
    Σ wᵢ·tᵢ / Σ wᵢ`` over the terms present (see ``Evaluator.quality``).

    - ``weight``: wᵢ, a positive finite number.
    - ``value``: the recorded value the term reads (default: the term's own name).
    - ``goodness``: how that value becomes tᵢ in [0, 1] (clipped; non-finite counts as 0):
      ``"value"``: the value itself (a higher-is-better value already in [0, 1]);
      ``"baseline"``: ``exp(−value / baseline)``, where ``baseline`` is the value the same
      metric gives the evaluator's "independent pixels" images (a lower-is-better distance:
      as bad as that trivial model scores e^−1 ≈ 0.37);
      or a function ``(value, values) -> float | None`` of the value and every value recorded
      at the evaluation (``None``: the term is left out of that evaluation).

    Example: ``QualityTerm(0.2, value="spectral_distance", goodness="baseline")``.
    """

    weight: float
    value: str | None = None
    goodness: str | GoodnessFn = "value"

    def describe(self) -> str:
        """The goodness as text that is the same in every session (for digests and docs): a
        name, a function's ``module.qualname``, a partial's function and its (plain) args."""
        described = describe_goodness(self.goodness)
        if described is None:
            raise PluginError(f"goodness {self.goodness!r}: {UNNAMED_GOODNESS}")
        return described


#: Why a goodness other than a name, a function or a partial of plain data is refused.
UNNAMED_GOODNESS = (
    "pass a named function (def at module level, or a functools.partial of one with plain-data "
    "arguments): the score version describes a goodness by its name, which must be the same "
    "in every session"
)

_PLAIN = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """Plain data: its repr is the same in every session (no memory addresses)."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def describe_goodness(g: Any) -> str | None:
    """``g`` as text that does not change between sessions, or ``None`` when it cannot be
    (a callable object or a partial of non-plain data: their reprs hold memory addresses)."""
    if isinstance(g, str):
        return g
    if isinstance(g, functools.partial):
        inner = describe_goodness(g.func)
        if inner is None or not _plain(g.args) or not _plain(g.keywords):
            return None
        kw = ", ".join(f"{k}={v!r}" for k, v in sorted(g.keywords.items()))
        return f"partial({inner}, args={g.args!r}, {kw})"
    if inspect.isfunction(g) or inspect.isbuiltin(g):
        return f"{g.__module__}.{g.__qualname__}"
    return None


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric."""

    name: str
    fn: MetricFn
    #: One flag for every value the metric records, or one per value name.
    higher_is_better: bool | Mapping[str, bool]
    plugin: str
    description: str = ""
    #: The terms this metric adds to the quality mean, by term name (``value`` resolved).
    quality: Mapping[str, QualityTerm] = field(default_factory=dict)
    #: When it was registered (a running count): quality sums its terms in that order.
    declared: int = field(default=0, compare=False, repr=False)

    def direction(self, key: str) -> bool | None:
        """Whether higher is better for the value ``key`` (``None`` when not declared)."""
        if isinstance(self.higher_is_better, bool):
            return self.higher_is_better
        return self.higher_is_better.get(key)


class MetricRegistrar(Registrar[MetricInfo]):
    """What ``ganarch_register_metrics`` receives: checks each metric, then stages it."""

    noun = "metric"

    def add(
        self,
        name: str,
        *,
        fn: MetricFn,
        higher_is_better: bool | Mapping[str, bool],
        description: str | None = None,
        quality: Mapping[str, QualityTerm | float] | None = None,
    ) -> None:
        """Register metric ``name``: ``fn(ctx)`` returns ``{value_name: float}``.

        ``higher_is_better`` is one bool for all values, or a mapping ``{value_name: bool}``
        naming every value ``fn`` returns. ``quality`` (optional) maps term names to
        :class:`QualityTerm` s (a bare number: ``QualityTerm(number)``, the value itself):
        the values that count toward quality, with their weights. Without it the metric is
        recorded and reported but does not move quality. Example::

            registrar.add("sharpness", fn=sharpness, higher_is_better=True,
                          quality={"sharpness": QualityTerm(0.2)})
        """
        self.claim(name)
        who = self.who
        if not callable(fn):
            raise PluginError(f"{who}: fn of metric {name!r} is not callable: {fn!r}")
        try:
            inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{who}: cannot read the signature of {name!r}'s fn") from exc
        if isinstance(higher_is_better, Mapping):
            bad = {
                k: v
                for k, v in higher_is_better.items()
                if not isinstance(k, str) or not isinstance(v, bool)
            }
            if bad or not higher_is_better:
                raise PluginError(
                    f"{who}: metric {name!r}: higher_is_better must map value names to bools, "
                    f"got {dict(higher_is_better)!r}"
                )
            higher_is_better = dict(higher_is_better)
        elif not isinstance(higher_is_better, bool):
            raise PluginError(
                f"{who}: metric {name!r}: higher_is_better must be a bool or a dict, "
                f"got {higher_is_better!r}"
            )
        terms = self._quality_terms(name, higher_is_better, quality)
        doc = description if description is not None else inspect.getdoc(fn) or ""
        self.stage(
            name,
            MetricInfo(
                name=name,
                fn=fn,
                higher_is_better=higher_is_better,
                plugin=self.plugin,
                description=doc.strip().splitlines()[0] if doc.strip() else "",
                quality=terms,
                declared=next(_DECLARED),
            ),
        )

    def _quality_terms(
        self,
        name: str,
        higher_is_better: bool | Mapping[str, bool],
        quality: Mapping[str, QualityTerm | float] | None,
    ) -> dict[str, QualityTerm]:
        """``quality`` checked, bare weights wrapped and each term's value resolved."""
        if quality is None:
            return {}
        where = f"{self.who}: metric {name!r}: quality"
        if not isinstance(quality, Mapping) or not quality:
            raise PluginError(f"{where} must map term names to QualityTerm, got {quality!r}")
        taken = {
            term: info.name
            for table in (self._table, self._staged)
            for info in table.values()
            for term in info.quality
        }
        terms: dict[str, QualityTerm] = {}
        for term, spec in quality.items():
            if not isinstance(term, str) or not term.isidentifier():
                raise PluginError(f"{where}: term name must be an identifier, got {term!r}")
            if term in RESERVED_TERMS:
                raise PluginError(f"{where}: term name {term!r} is reserved for the factor")
            if term in taken:
                raise PluginError(
                    f"{where}: term {term!r} is already declared by metric {taken[term]!r}"
                )
            if isinstance(spec, (int, float)) and not isinstance(spec, bool):
                spec = QualityTerm(float(spec))
            if not isinstance(spec, QualityTerm):
                raise PluginError(f"{where}[{term!r}] must be a QualityTerm, got {spec!r}")
            w = spec.weight
            if (
                isinstance(w, bool)
                or not isinstance(w, (int, float))
                or not math.isfinite(w)
                or w <= 0
            ):
                raise PluginError(
                    f"{where}[{term!r}]: weight must be a positive finite number, got {w!r}"
                )
            value = spec.value if spec.value is not None else term
            if not isinstance(value, str) or not value:
                raise PluginError(f"{where}[{term!r}]: value must be a value name, got {value!r}")
            g = spec.goodness
            if isinstance(g, str):
                if g not in GOODNESS:
                    raise PluginError(
                        f"{where}[{term!r}]: goodness must be one of {', '.join(GOODNESS)} "
                        f"or a function (value, values) -> float, got {g!r}"
                    )
                up = (
                    higher_is_better
                    if isinstance(higher_is_better, bool)
                    else higher_is_better.get(value)
                )
                if up is not None and up != (g == "value"):
                    raise PluginError(
                        f"{where}[{term!r}]: goodness {g!r} needs a "
                        + ("higher" if g == "value" else "lower")
                        + f"-is-better value, but {value!r} is declared "
                        + ("higher" if up else "lower")
                        + "-is-better"
                    )
            elif not callable(g):
                raise PluginError(
                    f"{where}[{term!r}]: goodness must be a name or a function, got {g!r}"
                )
            elif describe_goodness(g) is None:
                raise PluginError(f"{where}[{term!r}]: goodness {g!r}: {UNNAMED_GOODNESS}")
            terms[term] = QualityTerm(float(w), value, g)
        return terms


#: Counts registrations, so that the quality terms keep the order they were declared in.
_DECLARED = itertools.count()

#: Every metric plugins registered, cached until the set of plugins changes.
METRICS: Registry[MetricInfo] = Registry("ganarch_register_metrics", MetricRegistrar)


def metrics() -> dict[str, MetricInfo]:
    """All registered metrics, by name, in name order."""
    return METRICS.entries()


def quality_terms() -> dict[str, tuple[MetricInfo, QualityTerm]]:
    """Every registered quality term by name, with the metric that declares it: the built-in
    plugin's first, then in the order they were declared (the order quality sums them in,
    so that the built-in score is the same number, to the last bit, it always was)."""
    ordered = sorted(metrics().values(), key=lambda i: (i.plugin != "builtin", i.declared))
    return {term: (info, t) for info in ordered for term, t in info.quality.items()}


def describe_terms(terms: Mapping[str, tuple[MetricInfo, QualityTerm]]) -> str:
    """The terms as text that is the same in every session: term, metric, value, weight and
    goodness, by term name. The plugin's label is left out (pluggy names a plugin registered
    without ``name=`` by its object id, which changes every session)."""
    return ";".join(
        f"{term}={info.name}:{t.value}:{t.weight!r}:{t.describe()}"
        for term, (info, t) in sorted(terms.items())
    )


def terms_digest(terms: Mapping[str, tuple[MetricInfo, QualityTerm]]) -> str:
    """A 12-hex digest of :func:`describe_terms`."""
    return hashlib.sha256(describe_terms(terms).encode()).hexdigest()[:12]


def quality_terms_digest() -> str | None:
    """A short digest of the quality terms (:func:`describe_terms`), or ``None`` when only
    the built-in plugin declares terms: what a score version records so that a study scored
    with other terms is not resumed under these."""
    terms = quality_terms()
    if all(info.plugin == "builtin" for info, _ in terms.values()):
        return None
    return terms_digest(terms)


def get_metric(name: str) -> MetricInfo:
    """Look up a metric by name; ``GanarchError`` with the closest names if it is unknown."""
    info = METRICS.get(name)
    if info is None:
        raise GanarchError(METRICS.unknown(name))
    return info


def higher_is_better(key: str) -> bool | None:
    """Direction of a recorded value ``key``: from a metric's per-value mapping, else from a
    metric with a single flag named ``key`` or a prefix of it (``kid`` for ``kid_std``)."""
    table = metrics()
    for info in table.values():
        if isinstance(info.higher_is_better, Mapping) and key in info.higher_is_better:
            return info.higher_is_better[key]
    for info in table.values():
        if isinstance(info.higher_is_better, bool) and (
            key == info.name or key.startswith(info.name + "_")
        ):
            return info.higher_is_better
    return None
