"""The metric registry: sample-quality metrics that plugins register, checked on the way in.

A metric is ``fn(ctx: MetricContext) -> dict[str, float]``; one metric may record several
values (``prdc`` gives precision, recall, density and coverage). Every value declares
whether higher is better, so reports and searches know which way is up.
"""

from __future__ import annotations

import inspect
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


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric."""

    name: str
    fn: MetricFn
    #: One flag for every value the metric records, or one per value name.
    higher_is_better: bool | Mapping[str, bool]
    plugin: str
    description: str = ""

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
    ) -> None:
        """Register metric ``name``: ``fn(ctx)`` returns ``{value_name: float}``.

        ``higher_is_better`` is one bool for all values, or a mapping ``{value_name: bool}``
        naming every value ``fn`` returns.
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
        doc = description if description is not None else inspect.getdoc(fn) or ""
        self.stage(
            name,
            MetricInfo(
                name=name,
                fn=fn,
                higher_is_better=higher_is_better,
                plugin=self.plugin,
                description=doc.strip().splitlines()[0] if doc.strip() else "",
            ),
        )


#: Every metric plugins registered, cached until the set of plugins changes.
METRICS: Registry[MetricInfo] = Registry("ganarch_register_metrics", MetricRegistrar)


def metrics() -> dict[str, MetricInfo]:
    """All registered metrics, by name, in name order."""
    return METRICS.entries()


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
