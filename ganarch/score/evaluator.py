"""The evaluator: real reference features computed once, every registered metric per call,
and one quality number in [0, 1].

Example::

    ev = Evaluator(load_dataset("digits", 32, 1))
    m = ev.evaluate_generator(G, n=1000)      # {"fid": ..., "precision": ..., ...}
    ev.quality(m)                             # 0 (useless) .. 1 (like held-out real images)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ganarch.errors import GanarchError
from ganarch.score import quality as q
from ganarch.score.features import (
    FEATURE_NET_VERSION,
    load_feature_net,
    real_data,
    split_indices,
)
from ganarch.score.inception import InceptionFeatures, inception_path
from ganarch.score.registry import (
    MetricContext,
    MetricFailure,
    MetricInfo,
    QualityTerm,
    metrics,
    quality_terms,
    quality_terms_digest,
)

#: What a quality value means: the feature net and the scoring recipe. Recorded in a study so
#: that a resumed search never mixes values of two scores. Bump on any change to a number.
#: (With quality terms from plugins, :func:`score_version` adds a digest of the terms.)
SCORE_VERSION = f"{FEATURE_NET_VERSION}/quality-2"


def score_version() -> str:
    """The score a study records: ``SCORE_VERSION``, plus ``+terms-<digest>`` of every
    registered quality term (name, metric, value, weight, goodness; the same text in every
    session) when a plugin other than the built-in one declares a term. A study scored with
    other terms then refuses to resume, and one scored with the built-ins alone keeps
    resuming."""
    digest = quality_terms_digest()
    return SCORE_VERSION if digest is None else f"{SCORE_VERSION}+terms-{digest}"


def check_score_version(recorded: str, who: str = "this worker") -> None:
    """Raise a one-line ``GanarchError`` when this process scores with another version than
    the study ``recorded``: a worker process loads plugins from entry points only, so the
    quality terms of a plugin registered in code (``ganarch.register_plugin``) in the parent
    are missing there, and its values would silently mean something else."""
    mine = score_version()
    if mine == recorded:
        return
    plugin_terms = sorted(
        f"{term} ({info.plugin})"
        for term, (info, _) in quality_terms().items()
        if info.plugin != "builtin"
    )
    raise GanarchError(
        f"{who} scores with {mine!r} but the study records {recorded!r} (plugin quality terms "
        f"here: {', '.join(plugin_terms) or 'none'}): quality terms of plugins registered in "
        "code (ganarch.register_plugin) are not seen by --workers processes; install the "
        "plugin through an entry point (group 'ganarch') or use --workers 1"
    )


def quality_weights() -> dict[str, float]:
    """The weight of every registered quality term, by term name."""
    return {term: t.weight for term, (_, t) in quality_terms().items()}


#: The "independent pixels" images that fix the scale of a ``goodness="baseline"`` term.
BASELINE_IMAGES = 1000

#: Datasets larger than this estimate the copy radius (the 1 % quantile of nearest-other
#: distances) from a random sample of this many images; every image is still compared against.
COPY_RADII_SAMPLE = 5_000

#: What :meth:`Evaluator.evaluate` checks copies against: every image the generators train on
#: (``"training"``: the whole dataset, held-out split included), or the 80 % split only
#: (``"train_split"``: to score held-out images as stand-ins for new samples).
COPY_REFERENCES = ("training", "train_split")


def _latent_dim(G: nn.Module) -> int:
    dim = getattr(G, "latent_dim", None)
    if isinstance(dim, int):
        return dim
    plan = getattr(G, "plan", None)
    if plan is not None:
        return int(plan.in_shape.channels)
    raise GanarchError("cannot tell the generator's latent size: pass latent_dim=")


class Evaluator:
    """Scores generated images against a dataset, in the feature space of its own feature net.

    On construction: the feature net is loaded from the cache (or trained once), the dataset
    is split as the feature net was (80 % train, 20 % held out), up to ``n_real`` training
    images become the *reference set* whose features every evaluation compares against, and
    the scales of the quality terms measured against a baseline (FID, spectral distance) are
    fixed (see :meth:`quality`).
    Copies are checked against every image of the dataset (:meth:`copy_reference`, built on
    the first evaluation).
    """

    def __init__(
        self,
        dataset: Any,
        device: torch.device | str | None = None,
        cache_dir: str | os.PathLike | None = None,
        inception_weights: str | os.PathLike | None = None,
        n_real: int = 2000,
        seed: int = 0,
    ) -> None:
        data = real_data(dataset)
        self.data = data
        self.seed = seed
        self.device = torch.device(device) if device is not None else data.images.device
        self.image_shape = tuple(data.images.shape[1:])
        self.net, self.feature_info = load_feature_net(
            data, cache_dir=cache_dir, seed=seed, device=self.device
        )
        self.net.requires_grad_(False)
        train_idx, held_idx = split_indices(data.images.shape[0], seed, data.labels)
        if len(train_idx) > n_real:
            pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed + 2))
            train_idx = train_idx[pick[:n_real]].sort().values
        self.real_images = data.images[train_idx].to(self.device)
        self.real_labels = (
            data.labels[train_idx].to(self.device) if data.labels is not None else None
        )
        self.held_out_images = data.images[held_idx].to(self.device)
        self.held_out_labels = (
            data.labels[held_idx].to(self.device) if data.labels is not None else None
        )
        self.real_features, _ = self.net.embed(self.real_images)
        path = inception_path(inception_weights)
        self.inception = InceptionFeatures(path, self.device) if path is not None else None
        self.real_inception_features = (
            self.inception(self.real_images) if self.inception is not None else None
        )
        self._memo: dict[str, Any] = {}
        self._reference: dict[str, float] | None = None
        #: Which way is better for every value recorded so far (True: higher).
        self.directions: dict[str, bool] = {}
        self._baseline_ctx: MetricContext | None = None
        self._baselines: dict[tuple[str, str], dict[str, float]] = {}
        for info, term in quality_terms().values():
            if term.goodness == "baseline":
                self.baseline(info)  # the scales are fixed now, not at the first evaluation

    # --- evaluation ---------------------------------------------------------------------------

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise GanarchError(f"expected an (N, C, H, W) image tensor, got {type(images)!r}")
        if tuple(images.shape[1:]) != self.image_shape:
            c, h, w = self.image_shape
            raise GanarchError(
                f"images of shape {tuple(images.shape[1:])} cannot be scored against a "
                f"{c}×{h}×{w} dataset"
            )
        if images.shape[0] < 6:
            raise GanarchError(f"need at least 6 images to score, got {images.shape[0]}")
        # What a saved PNG would show: non-finite pixels as 0, values clipped to [-1, 1].
        x = images.detach().to(self.device, torch.float32)
        return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)

    @torch.no_grad()
    def evaluate(
        self, fake_images: torch.Tensor, copies_against: str = "training"
    ) -> dict[str, float]:
        """Every registered metric of ``fake_images`` (``(N, C, H, W)`` in [-1, 1]) against
        the reference set, as one flat ``{name: float}`` dict.

        Copies are checked against every image of the dataset (the generators train on all
        of it); ``copies_against="train_split"`` checks them against the 80 % split only, so
        that held-out real images can stand in for a generator's new samples.
        """
        copy_features, copy_limit = self.copy_reference(copies_against)
        nonfinite = float((~torch.isfinite(fake_images.detach())).float().mean())
        fakes = self._prepare(fake_images)
        ctx = self._context(
            fakes,
            real_inception_features=self.real_inception_features,
            fake_inception_features=self.inception(fakes) if self.inception is not None else None,
            copy_features=copy_features,
            copy_limit=copy_limit,
        )
        out: dict[str, float] = {}
        for info in metrics().values():
            values = self._run(info, ctx)
            self._check_terms(info, values)
            for key, value in values.items():
                out[key] = float(value)
                d = info.direction(key)
                if d is not None:
                    self.directions[key] = d
        if nonfinite:
            out["nonfinite_fraction"] = nonfinite
            self.directions["nonfinite_fraction"] = False
        return out

    @staticmethod
    def _run(info: MetricInfo, ctx: MetricContext) -> Mapping[str, float]:
        if info.plugin == "builtin":
            return info.fn(ctx)
        try:  # a third-party metric must not take the evaluation down ...
            values = info.fn(ctx)
            return {str(k): float(v) for k, v in dict(values).items()}
        except Exception as exc:
            said = f"metric {info.name!r} of plugin {info.plugin!r} failed: {type(exc).__name__}: {exc}"
            if info.quality:  # ... unless quality would silently mean something else without it
                raise MetricFailure(
                    info.plugin,
                    info.name,
                    f"{said}; it counts toward quality, so nothing is scored",
                ) from exc
            warnings.warn(said, stacklevel=3)
            return {}

    @staticmethod
    def _check_terms(info: MetricInfo, values: Mapping[str, float]) -> None:
        """A metric that records values must record every value its quality terms read (one
        that records nothing, e.g. mode coverage on an unlabelled dataset, leaves its terms out)."""
        missing = sorted({t.value for t in info.quality.values()} - set(values)) if values else []
        if missing:
            raise GanarchError(
                f"plugin {info.plugin!r}: metric {info.name!r} declares quality terms on "
                f"{', '.join(map(repr, missing))} but returned only "
                f"{', '.join(map(repr, sorted(values)))}"
            )

    @torch.no_grad()
    def evaluate_generator(
        self,
        G: nn.Module,
        n: int = 1000,
        latent_dim: int | None = None,
        batch: int = 256,
        seed: int = 0,
    ) -> dict[str, float]:
        """Sample ``n`` images from ``G`` (eval mode, fixed noise from ``seed``) and evaluate
        them; ``G``'s training mode is restored afterwards."""
        return self.evaluate(self.sample(G, n, latent_dim, batch, seed))

    @torch.no_grad()
    def sample(
        self,
        G: nn.Module,
        n: int = 1000,
        latent_dim: int | None = None,
        batch: int = 256,
        seed: int = 0,
    ) -> torch.Tensor:
        """``n`` images from ``G`` in eval mode from fixed noise; restores ``G``'s mode."""
        dim = latent_dim if latent_dim is not None else _latent_dim(G)
        try:
            device = next(G.parameters()).device
        except StopIteration:
            device = self.device
        gen = torch.Generator(device=device).manual_seed(seed)
        z = torch.randn(n, dim, generator=gen, device=device)
        was_training = G.training
        G.eval()
        try:
            return torch.cat([G(chunk).float() for chunk in z.split(batch)])
        finally:
            G.train(was_training)

    @torch.no_grad()
    def copy_reference(self, which: str = "training") -> tuple[torch.Tensor, torch.Tensor]:
        """Features (float32, on the evaluator's device) of the images copies are checked
        against, and the copy limit: the 1 % quantile (linear interpolation) of their squared
        nearest-other distances. Computed once per evaluator, in chunks; with more than
        ``COPY_RADII_SAMPLE`` images the quantile is estimated from a random sample of them
        (each still measured against all)."""
        if which not in COPY_REFERENCES:
            raise GanarchError(
                f"copies_against must be one of {', '.join(COPY_REFERENCES)}, got {which!r}"
            )
        key = f"copies.reference.{which}"
        if key not in self._memo:
            images = self.data.images
            if which == "train_split":
                images = images[split_indices(images.shape[0], self.seed, self.data.labels)[0]]
            feats = torch.cat(
                [self.net.embed(c.to(self.device))[0].float() for c in images.split(1024)]
            )
            queries = feats
            if feats.shape[0] > COPY_RADII_SAMPLE:
                gen = torch.Generator().manual_seed(self.seed + 4)
                pick = torch.randperm(feats.shape[0], generator=gen)[:COPY_RADII_SAMPLE]
                queries = feats[pick.to(feats.device)]
            radii = q.nearest_sqdist(queries, feats, skip_self=True)
            self._memo[key] = (feats, torch.quantile(radii, 0.01))  # float32: MPS has no f64
        return self._memo[key]

    def reference(self) -> dict[str, float]:
        """Metrics of the held-out real images against the reference set: the "perfect" end
        (copies checked against the 80 % split: the GANs train on the held-out images too,
        so these stand in for a generator's new samples).

        (With fewer held-out images than a typical evaluation, its FID carries a larger
        finite-sample bias; it is still far below any generator's on these features.)
        """
        if self._reference is None:
            self._reference = self.evaluate(self.held_out_images, copies_against="train_split")
        return dict(self._reference)

    # --- one number ---------------------------------------------------------------------------

    @torch.no_grad()
    def _baseline_context(self) -> MetricContext:
        """The trivial "independent pixels" model's images: ``BASELINE_IMAGES`` images whose
        pixels are drawn from Gaussians with the reference set's per-pixel mean and standard
        deviation (clipped to [-1, 1]), as a metric sees them: no copy reference, and no
        Inception features (1,000 images through Inception would cost every evaluator with
        weights configured; a ``"baseline"`` term on an Inception value is refused in one
        line when first scored)."""
        if self._baseline_ctx is None:
            gen = torch.Generator().manual_seed(self.seed + 3)
            real = self.real_images.cpu()
            mu, sd = real.mean(0), real.std(0)
            noise = torch.randn((BASELINE_IMAGES, *self.image_shape), generator=gen)
            fakes = (mu + sd * noise).clamp(-1, 1).to(self.device)
            self._baseline_ctx = self._context(fakes)
        return self._baseline_ctx

    def _context(self, fakes: torch.Tensor, **extra: Any) -> MetricContext:
        """What a metric sees for prepared fake images: their features from the dataset's
        net beside the reference set's, and ``extra`` (Inception features, copy reference)."""
        feats, logits = self.net.embed(fakes)
        return MetricContext(
            real_features=self.real_features,
            fake_features=feats,
            fake_logits=logits,
            real_labels=self.real_labels,
            num_classes=self.data.num_classes,
            fake_images=fakes,
            real_images=self.real_images,
            device=self.device,
            seed=self.seed,
            memo=self._memo,
            **extra,
        )

    @torch.no_grad()
    def baseline(self, info: MetricInfo) -> dict[str, float]:
        """Metric ``info``'s values for the "independent pixels" images (once per evaluator)."""
        key = (info.plugin, info.name)
        if key not in self._baselines:
            values = {k: float(v) for k, v in self._run(info, self._baseline_context()).items()}
            self._check_terms(info, values)
            self._baselines[key] = values
        return dict(self._baselines[key])

    def _scale(self, info: MetricInfo, name: str, term: QualityTerm) -> float:
        """The baseline's value that a ``goodness="baseline"`` term divides by (≥ 1e-6)."""
        assert term.value is not None  # resolved by the registrar
        v = self.baseline(info).get(term.value)
        if v is None or not math.isfinite(v):
            raise GanarchError(
                f"plugin {info.plugin!r}: metric {info.name!r} gives no finite {term.value!r} "
                f"for the baseline images ({v!r}), so quality term {name!r} has no scale"
            )
        return max(v, 1e-6)

    def baseline_value(self, value: str) -> float:
        """The scale of the ``goodness="baseline"`` term that reads ``value``."""
        for name, (info, term) in quality_terms().items():
            if term.value == value and term.goodness == "baseline":
                return self._scale(info, name, term)
        raise GanarchError(f"no quality term measures {value!r} against the baseline")

    @property
    def fid_scale(self) -> float:
        """FID of the "independent pixels" baseline (the FID term's scale)."""
        return self.baseline_value("fid")

    @property
    def spectral_scale(self) -> float:
        """Spectral distance of the "independent pixels" baseline (the spectrum term's scale)."""
        return self.baseline_value("spectral_distance")

    def quality_components(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The [0, 1] terms of :meth:`quality` available in ``metrics``: every registered
        quality term whose value is there (the built-ins: ``fid``, ``precision``,
        ``density``, ``modes``, ``spectrum``) and the ``diversity`` and ``novelty`` factors."""
        terms: dict[str, float] = {}
        for name, (info, term) in quality_terms().items():
            v = metrics.get(term.value) if term.value is not None else None
            if v is None:
                continue
            g = term.goodness
            if g == "value":
                terms[name] = v
            elif g == "baseline":
                terms[name] = (
                    math.exp(-v / self._scale(info, name, term)) if math.isfinite(v) else 0.0
                )
            else:
                try:
                    t = g(v, metrics)
                    t = None if t is None else float(t)
                except Exception as exc:
                    raise MetricFailure(
                        info.plugin,
                        info.name,
                        f"plugin {info.plugin!r}: the goodness of quality term {name!r} "
                        f"(metric {info.name!r}) failed: {type(exc).__name__}: {exc}",
                    ) from exc
                if t is not None:
                    terms[name] = t
        if "recall" in metrics and "coverage" in metrics:
            terms["diversity"] = metrics["recall"] + metrics["coverage"]
        if "copy_fraction" in metrics:
            terms["novelty"] = 1.0 - metrics["copy_fraction"]
        return {k: (min(max(v, 0.0), 1.0) if math.isfinite(v) else 0.0) for k, v in terms.items()}

    def quality(self, metrics: Mapping[str, float]) -> float:
        """One higher-is-better number in [0, 1] from the metrics of :meth:`evaluate`.

        ``quality = diversity × novelty × Σ wᵢ·tᵢ / Σ wᵢ`` over the quality terms present:
        each registered metric declares its terms, a weight wᵢ and how its value becomes a
        goodness tᵢ in [0, 1] (:class:`~ganarch.score.registry.QualityTerm`). The built-ins:

        - ``t_fid = exp(−FID / FID_ref)`` (w = 0.5), where ``FID_ref`` is the FID of an
          "independent pixels" baseline: 1,000 images whose pixels are drawn from Gaussians
          with the real per-pixel mean and standard deviation — a model that knows each
          pixel's brightness but no strokes or shapes scores e^−1 ≈ 0.37 here;
        - precision and min(density, 1) (w = 0.1 each): samples lie where real ones do;
        - ``t_modes = (modes_hit / modes_total) · exp(−mode_KL)`` (w = 0.2), on labelled
          datasets only;
        - ``t_spectrum = exp(−spectral_distance / spectral_ref)`` (w = 0.1), with
          ``spectral_ref`` the same baseline's: checkerboard artefacts and pixel noise put
          power where real images have none;

        and a plugin's terms join the same weighted mean. The two factors:

        - ``diversity = min(1, recall + coverage)``: the samples must reach as far as the
          real data does. A collapsed or memorised set (one image, or ten, repeated) has
          recall and coverage near 0, so whatever its fidelity its quality is near 0;
        - ``novelty = 1 − copy_fraction``: samples that copy training images do not count (a
          generator that replays its training set would otherwise look perfect). A sample is
          a copy when its squared feature distance to the nearest image of the whole dataset
          (all the generators train on) is ≤ the 1 % quantile of those images' squared
          nearest-other distances (see :meth:`copy_reference`).

        Terms that are missing (e.g. modes on an unlabelled dataset) are left out and the
        weights renormalised (a factor missing: 1); a non-finite value counts as 0.
        """
        terms = self.quality_components(metrics)
        factor = terms.pop("diversity", 1.0) * terms.pop("novelty", 1.0)
        if not terms:
            return 0.0
        weights = quality_weights()
        total = sum(weights[k] for k in terms)
        return factor * sum(weights[k] * v for k, v in terms.items()) / total
