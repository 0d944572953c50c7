"""Scoring sample quality without downloads: a feature net trained on the dataset itself,
FID, KID, precision/recall, density/coverage and mode coverage on its features, and an
:class:`Evaluator` that runs every registered metric and folds them into one number.

Training-stability scores live beside these (``stability``, ``objective``).
"""

import warnings
from typing import Any

from ganarch.score.evaluator import (
    SCORE_VERSION,
    Evaluator,
    check_score_version,
    quality_weights,
    score_version,
)
from ganarch.score.features import (
    FEATURE_DIM,
    FEATURE_NET_VERSION,
    FeatureNet,
    load_feature_net,
)
from ganarch.score.inception import InceptionFeatures
from ganarch.score.quality import (
    density_coverage,
    fid,
    frechet_distance,
    kid,
    mode_coverage,
    precision_recall,
)
from ganarch.score.registry import (
    MetricContext,
    MetricFailure,
    MetricInfo,
    MetricRegistrar,
    QualityTerm,
    get_metric,
    higher_is_better,
    metrics,
    quality_terms,
)


def __getattr__(name: str) -> Any:
    # QUALITY_WEIGHTS was a constant; the weights now come from the registered metrics.
    if name == "QUALITY_WEIGHTS":
        warnings.warn(
            "ganarch.score.QUALITY_WEIGHTS is deprecated: it is a fresh copy of the registered "
            "weights at each access (changing it changes nothing); use quality_weights(), and "
            "declare a weight with a metric plugin's quality=",
            DeprecationWarning,
            stacklevel=2,
        )
        return quality_weights()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FEATURE_DIM",
    "FEATURE_NET_VERSION",
    "QUALITY_WEIGHTS",
    "SCORE_VERSION",
    "Evaluator",
    "FeatureNet",
    "InceptionFeatures",
    "MetricContext",
    "MetricFailure",
    "MetricInfo",
    "MetricRegistrar",
    "QualityTerm",
    "check_score_version",
    "density_coverage",
    "fid",
    "frechet_distance",
    "get_metric",
    "higher_is_better",
    "kid",
    "load_feature_net",
    "metrics",
    "mode_coverage",
    "precision_recall",
    "quality_terms",
    "quality_weights",
    "score_version",
]
