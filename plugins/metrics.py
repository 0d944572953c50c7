"""Built-in sample-quality metrics, registered like any plugin's.

Each works on the features of the dataset's own feature network (``ganarch.score``); a metric
that does not apply (mode coverage on an unlabelled dataset, Inception FID without a weights
file) records nothing. Five of their values enter the quality score through declared
:class:`QualityTerm` s, as a plugin's would (weights 0.5 FID, 0.1 precision, 0.1 density,
0.2 modes, 0.1 spectrum; see ``Evaluator.quality``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ganarch.plugin import hookimpl
from ganarch.score import quality as q
from ganarch.score.registry import MetricContext, QualityTerm


def _memo(ctx: MetricContext, key: str, make):
    if key not in ctx.memo:
        ctx.memo[key] = make()
    return ctx.memo[key]


def fid(ctx: MetricContext) -> dict[str, float]:
    """Fréchet distance between Gaussians fitted to real and fake features (Heusel et al. 2017)."""
    real = _memo(ctx, "fid.real_stats", lambda: q.gaussian_stats(ctx.real_features))
    return {"fid": float(q.frechet_distance(*real, *q.gaussian_stats(ctx.fake_features)))}


def kid(ctx: MetricContext) -> dict[str, float]:
    """Unbiased MMD² with a cubic polynomial kernel, over random subsets (Bińkowski et al. 2018)."""
    # The real-vs-real kernel sums depend only on the reference set: computed once per evaluator.
    cache = _memo(ctx, "kid.real", dict)
    mean, std = q.kid(
        ctx.real_features,
        ctx.fake_features,
        subsets=50,
        subset_size=1000,
        seed=ctx.seed,
        cache=cache,
    )
    return {"kid": float(mean), "kid_std": float(std)}


def prdc(ctx: MetricContext) -> dict[str, float]:
    """Improved precision/recall (k=3) and density/coverage (k=5) of k-NN balls."""
    r3 = _memo(ctx, "prdc.radii3", lambda: q.knn_radii(ctx.real_features, 3))
    r5 = _memo(ctx, "prdc.radii5", lambda: q.knn_radii(ctx.real_features, 5))
    precision, recall, density, coverage = q.prdc(ctx.real_features, ctx.fake_features, r3, r5)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "density": float(density),
        "coverage": float(coverage),
    }


def modes(ctx: MetricContext) -> dict[str, float]:
    """Classes the feature net sees among the fakes, and KL to the real class histogram."""
    if ctx.fake_logits is None or ctx.real_labels is None or not ctx.num_classes:
        return {}
    hit, total, kl = q.mode_coverage(ctx.fake_logits, ctx.real_labels, ctx.num_classes)
    return {"modes_hit": float(hit), "modes_total": float(total), "mode_kl": float(kl)}


def copies(ctx: MetricContext) -> dict[str, float]:
    """Share of fakes within (<=) the 1 % quantile of the training images' squared
    nearest-other distances of some training image (every image the generators train on)."""
    if ctx.copy_features is not None and ctx.copy_limit is not None:
        ref, limit = ctx.copy_features, ctx.copy_limit
    else:  # a context built by hand: the reference set stands in
        ref = ctx.real_features
        limit = _memo(
            ctx,
            "copies.limit",
            lambda: torch.quantile(q.knn_radii(ctx.real_features, 1), 0.01),
        )
    return {"copy_fraction": float(q.copy_fraction(ref, ctx.fake_features, limit=limit))}


def spectrum(ctx: MetricContext) -> dict[str, float]:
    """Distance between the radially averaged power spectra of real and fake images."""
    real = _memo(ctx, "spectrum.real", lambda: q.radial_spectrum(ctx.real_images))
    return {
        "spectral_distance": float(q.spectral_distance(real, q.radial_spectrum(ctx.fake_images)))
    }


def inception_fid(ctx: MetricContext) -> dict[str, float]:
    """FID on 2048-d Inception features; only with a local weights file configured."""
    if ctx.real_inception_features is None or ctx.fake_inception_features is None:
        return {}
    real = _memo(
        ctx, "inception_fid.real_stats", lambda: q.gaussian_stats(ctx.real_inception_features)
    )
    fake = q.gaussian_stats(ctx.fake_inception_features)
    return {"inception_fid": float(q.frechet_distance(*real, *fake))}


def mode_goodness(hit: float, values: Mapping[str, float]) -> float | None:
    """Share of the real classes hit, times exp(−KL) to the real class histogram."""
    total = values.get("modes_total")
    if not total:
        return None
    return hit / total * math.exp(-values.get("mode_kl", 0.0))


@hookimpl
def ganarch_register_metrics(registrar) -> None:
    registrar.add(
        "fid",
        fn=fid,
        higher_is_better=False,
        quality={"fid": QualityTerm(0.5, goodness="baseline")},
    )
    registrar.add("kid", fn=kid, higher_is_better={"kid": False, "kid_std": False})
    registrar.add(
        "prdc",
        fn=prdc,
        higher_is_better={"precision": True, "recall": True, "density": True, "coverage": True},
        # min(density, 1): the term is clipped to [0, 1]; recall and coverage are the
        # diversity factor, not terms.
        quality={"precision": QualityTerm(0.1), "density": QualityTerm(0.1)},
    )
    registrar.add(
        "modes",
        fn=modes,
        higher_is_better={"modes_hit": True, "modes_total": True, "mode_kl": False},
        quality={"modes": QualityTerm(0.2, value="modes_hit", goodness=mode_goodness)},
    )
    registrar.add("copies", fn=copies, higher_is_better={"copy_fraction": False})
    registrar.add(
        "spectrum",
        fn=spectrum,
        higher_is_better={"spectral_distance": False},
        quality={"spectrum": QualityTerm(0.1, value="spectral_distance", goodness="baseline")},
    )
    registrar.add("inception_fid", fn=inception_fid, higher_is_better=False)
