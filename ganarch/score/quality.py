"""Sample-quality metrics on feature vectors: pure tensor functions that run on any device.

All take ``(N, D)`` feature tensors (real first, fake second where the order matters) and
return 0-dim tensors (call ``float()`` on them). Numerically delicate parts (covariances,
matrix square roots, kernel sums, distances) run in float64; on a device without float64
(Apple MPS) they run on the CPU.

References:
- FID: Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local
  Nash equilibrium" (arXiv 1706.08500).
- KID: Bińkowski et al. 2018, "Demystifying MMD GANs" (arXiv 1801.01401).
- Precision/recall: Kynkäänniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models" (arXiv 1904.06991).
- Density/coverage: Naeem et al. 2020, "Reliable fidelity and diversity metrics for
  generative models" (arXiv 2002.09797).
- Spectral distance: Durall et al. 2020, "Watch your up-convolution: CNN based generative deep
  neural networks are failing to reproduce spectral distributions" (arXiv 2003.01826): the
  azimuthally averaged power spectrum, where up-convolution artefacts show.
- Mode coverage: Metz et al. 2017, "Unrolled generative adversarial networks"
  (arXiv 1611.02163), the Stacked-MNIST count of modes and KL to the data's mode histogram.
"""

from __future__ import annotations

import torch

__all__ = [
    "copy_fraction",
    "density_coverage",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "kid",
    "knn_radii",
    "mode_coverage",
    "precision_recall",
    "radial_spectrum",
    "spectral_distance",
    "sqrtm_psd",
]


def _f64(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.device.type == "mps":  # no float64 there
        x = x.cpu()
    return x.to(torch.float64)


def _check_2d(name: str, x: torch.Tensor, min_rows: int = 1) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must be an (N, D) tensor, got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]}")


# --- FID --------------------------------------------------------------------------------------


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition.

    Eigenvalues below zero (round-off on a singular covariance) are clamped to zero.
    """
    a = _f64(a)
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (float64) of ``(N, D)`` features."""
    _check_2d("features", feats, 2)
    x = _f64(feats)
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> torch.Tensor:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1^½ sigma2 sigma1^½)^½)``.
    The last trace is computed with two symmetric eigendecompositions (``sigma1^½``, then the
    symmetric product), which is stable on the device and needs no SciPy; it equals
    ``tr((sigma1 sigma2)^½)`` of the usual formula.
    """
    mu1, mu2, sigma1, sigma2 = map(_f64, (mu1, mu2, sigma1, sigma2))
    s1h = sqrtm_psd(sigma1)
    m = s1h @ sigma2 @ s1h
    eig = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0)
    diff = mu1 - mu2
    d = diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * eig.sqrt().sum()
    return d.clamp_min(0)


def fid(feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor:
    """Fréchet distance between Gaussians fitted to two feature sets (FID on these features)."""
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


# --- KID --------------------------------------------------------------------------------------


def _kid_indicators(n: int, subsets: int, m: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.rand(subsets, n, generator=gen).argsort(1)[:, :m]
    s = torch.zeros(subsets, n, dtype=torch.float64)
    s.scatter_(1, idx, 1.0)
    return s


def _kid_real(a: torch.Tensor, subsets: int, m: int, seed: int):
    """The part of ``kid`` that depends only on the first set: its subset indicators, their
    within-set kernel sums, and the RNG state the second set's draw continues from."""
    gen = torch.Generator().manual_seed(seed)
    sa = _kid_indicators(a.shape[0], subsets, m, gen).to(a.device)
    kaa = (a @ a.T / a.shape[1] + 1) ** 3
    sum_aa = ((sa @ kaa) * sa).sum(1) - sa @ kaa.diagonal()
    return sa, sum_aa, gen.get_state()


def kid(
    feats_a: torch.Tensor,
    feats_b: torch.Tensor,
    subsets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
    cache: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel Inception Distance: unbiased MMD² with the kernel ``k(x, y) = (x·y/d + 1)³``.

    Averaged over ``subsets`` random subsets of ``m = min(subset_size, n_a, n_b)`` rows drawn
    without replacement from each set (as in Bińkowski et al.). Returns ``(mean, std)`` over
    subsets. The three kernel matrices are computed once; each subset's sums are read off
    them with indicator vectors (``s·K·s``), so many subsets cost little.

    ``cache``: a dict kept across calls that share ``feats_a`` (the real features); the
    ``feats_a``-only work (its kernel matrix and subset sums) is then done once per
    ``(subsets, m, seed)``. Results are identical with or without it.
    """
    _check_2d("feats_a", feats_a, 2)
    _check_2d("feats_b", feats_b, 2)
    m = min(subset_size, feats_a.shape[0], feats_b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least two samples in each set")
    key = ("kid", subsets, m, seed)
    entry = cache.get(key) if cache is not None else None
    if entry is None or entry[0] is not feats_a:  # the entry holds feats_a: `is` is safe
        a = _f64(feats_a)
        entry = (feats_a, a, *_kid_real(a, subsets, m, seed))
        if cache is not None:
            cache[key] = entry
    _, a, sa, sum_aa, state = entry
    b = _f64(feats_b).to(a.device)
    d = a.shape[1]
    kbb = (b @ b.T / d + 1) ** 3
    kab = (a @ b.T / d + 1) ** 3
    # The fakes' subsets continue the same random stream as when both were drawn together.
    gen = torch.Generator()
    gen.set_state(state)
    sb = _kid_indicators(b.shape[0], subsets, m, gen).to(a.device)
    sum_bb = ((sb @ kbb) * sb).sum(1) - sb @ kbb.diagonal()
    sum_ab = ((sa @ kab) * sb).sum(1)
    mmd = (sum_aa + sum_bb) / (m * (m - 1)) - 2 * sum_ab / (m * m)
    std = mmd.std() if subsets > 1 else torch.zeros((), dtype=mmd.dtype, device=mmd.device)
    return mmd.mean(), std


# --- precision / recall, density / coverage ---------------------------------------------------


def _sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # |x|² + |y|² - 2x·y in float64: exact enough, and a single matmul.
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return d.clamp_min(0)


def knn_radii(feats: torch.Tensor, k: int, batch: int = 4096) -> torch.Tensor:
    """Squared distance from each row to its ``k``-th nearest other row (float64)."""
    x = _f64(feats)
    if x.shape[0] <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} samples, got {x.shape[0]}")
    out = []
    for chunk in x.split(batch):
        # k + 1 smallest: the first is the point itself (distance 0).
        out.append(_sqdist(chunk, x).topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


def nearest_sqdist(
    points: torch.Tensor, ref: torch.Tensor, skip_self: bool = False, batch: int = 4096
) -> torch.Tensor:
    """Squared distance from each row of ``points`` to its nearest row of ``ref``, in
    ``ref``'s dtype and on its device, ``batch`` rows at a time (no N×M matrix at once).
    ``skip_self``: ``points`` are rows of ``ref``; take the nearest *other* (second smallest)."""
    k = 2 if skip_self else 1
    if ref.shape[0] < k:
        raise ValueError(f"need at least {k} reference rows, got {ref.shape[0]}")
    p = points.to(ref.device, ref.dtype)
    # At most ~2²⁶ distances (256 MiB in float32) at once, however large the reference.
    batch = max(1, min(batch, 2**26 // max(1, ref.shape[0])))
    out = [
        _sqdist(chunk, ref).topk(k, dim=1, largest=False).values[:, -1] for chunk in p.split(batch)
    ]
    return torch.cat(out)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch: int = 4096):
    """Count, for each point, the balls ``|p - c|² <= r`` that contain it; and per ball whether
    any point falls inside."""
    counts, hit = [], torch.zeros(centres.shape[0], dtype=torch.bool, device=centres.device)
    for chunk in points.split(batch):
        inside = _sqdist(chunk, centres) <= radii[None, :]
        counts.append(inside.sum(1))
        hit |= inside.any(0)
    return torch.cat(counts), hit


def precision_recall(
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = 3,
    real_radii: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The real manifold is the union of balls around each real feature reaching its ``k``-th
    nearest real neighbour; precision is the share of fakes inside it. Recall swaps the roles:
    the share of reals inside the fake manifold. ``real_radii`` (``knn_radii(real, k)``) may be
    passed to skip recomputing them.
    """
    _check_2d("real", real, k + 1)
    _check_2d("fake", fake, k + 1)
    r = _f64(real)
    f = _f64(fake).to(r.device)
    rr = knn_radii(r, k) if real_radii is None else _f64(real_radii).to(r.device)
    fr = knn_radii(f, k)
    in_real, _ = _inside(f, r, rr)
    in_fake, _ = _inside(r, f, fr)
    return (in_real > 0).double().mean(), (in_fake > 0).double().mean()


def density_coverage(
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = 5,
    real_radii: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density and coverage (Naeem et al. 2020), both from k-NN balls around real features.

    density = (1 / kM) Σ_j #{real balls containing fake j}  (≈1 when fakes match the reals;
    can exceed 1); coverage = share of real balls that contain at least one fake.
    """
    _check_2d("real", real, k + 1)
    _check_2d("fake", fake, 1)
    r = _f64(real)
    f = _f64(fake).to(r.device)
    rr = knn_radii(r, k) if real_radii is None else _f64(real_radii).to(r.device)
    counts, hit = _inside(f, r, rr)
    return counts.double().sum() / (k * f.shape[0]), hit.double().mean()


def prdc(
    real: torch.Tensor,
    fake: torch.Tensor,
    real_radii3: torch.Tensor | None = None,
    real_radii5: torch.Tensor | None = None,
    batch: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall (k=3), density and coverage (k=5) as :func:`precision_recall` and
    :func:`density_coverage` compute them, with one fake×real distance matrix (per chunk)
    serving precision, density and coverage."""
    _check_2d("real", real, 6)
    _check_2d("fake", fake, 4)
    r = _f64(real)
    f = _f64(fake).to(r.device)
    rr3 = knn_radii(r, 3) if real_radii3 is None else _f64(real_radii3).to(r.device)
    rr5 = knn_radii(r, 5) if real_radii5 is None else _f64(real_radii5).to(r.device)
    in3, counts5 = [], []
    hit5 = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    for chunk in f.split(batch):
        d = _sqdist(chunk, r)
        in3.append((d <= rr3[None, :]).any(1))
        inside5 = d <= rr5[None, :]
        counts5.append(inside5.sum(1))
        hit5 |= inside5.any(0)
    in_fake, _ = _inside(r, f, knn_radii(f, 3))
    precision = torch.cat(in3).double().mean()
    recall = (in_fake > 0).double().mean()
    density = torch.cat(counts5).double().sum() / (5 * f.shape[0])
    return precision, recall, density, hit5.double().mean()


def copy_fraction(
    real: torch.Tensor,
    fake: torch.Tensor,
    quantile: float = 0.01,
    real_radii: torch.Tensor | None = None,
    limit: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Share of fakes that are copies of a real (training) image.

    Two distinct real images are rarely very close: the copy radius is the ``quantile`` of the
    real set's nearest-other-neighbour squared distances (``knn_radii(real, 1)``, which
    ``real_radii`` may pass in), and a fake counts as a copy when its nearest real feature lies
    within it (``<=``). A generator that replays its training images scores about 1; unseen
    real images score about ``quantile`` or less. ``limit`` (the copy radius itself) may be
    passed to skip the radii; distances are then taken in ``real``'s dtype (float32 is exact
    enough to tell a copy, and fast on large reference sets).
    """
    _check_2d("real", real, 2)
    _check_2d("fake", fake, 1)
    if limit is None:
        r = _f64(real)
        radii = knn_radii(r, 1) if real_radii is None else _f64(real_radii).to(r.device)
        limit = torch.quantile(radii, quantile)
    else:
        r = real if real.dtype.is_floating_point else _f64(real)
    nearest = nearest_sqdist(fake, r)
    return (
        (nearest <= torch.as_tensor(limit, dtype=nearest.dtype).to(nearest.device)).double().mean()
    )


# --- power spectrum ---------------------------------------------------------------------------

#: Power below this share of an image's mean power per frequency counts as this share: the
#: spectral distance does not weigh differences between two negligible powers.
SPECTRUM_FLOOR = 1e-3


def radial_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Mean power per spatial-frequency radius of ``(N, C, H, W)`` images, float64 ``(R,)``.

    Each image is first standardised (zero mean, unit variance; a blank image stays zero), so
    the spectrum describes the *shape* of the image's variation, not its brightness or
    contrast: by Parseval the power averages 1 over all frequencies. Bin ``r`` holds the
    frequencies whose distance from zero rounds to ``r`` (0 .. round(√((H/2)² + (W/2)²))).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    x = _f64(images)
    _, _, h, w = x.shape
    flat = x.flatten(1)
    std = flat.std(1, correction=0, keepdim=True).clamp_min(1e-6)
    flat = (flat - flat.mean(1, keepdim=True)) / std
    power = torch.fft.fft2(flat.view_as(x)).abs().pow(2) / (h * w)  # mean over freqs: 1
    fy = torch.fft.fftfreq(h, device=x.device, dtype=torch.float64) * h
    fx = torch.fft.fftfreq(w, device=x.device, dtype=torch.float64) * w
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt().round().long().flatten()
    per_freq = power.mean((0, 1)).flatten()
    bins = int(radius.max()) + 1
    total = torch.zeros(bins, dtype=torch.float64, device=x.device).index_add_(0, radius, per_freq)
    count = torch.bincount(radius, minlength=bins).to(torch.float64)
    return total / count


def spectral_distance(real_spectrum: torch.Tensor, fake_spectrum: torch.Tensor) -> torch.Tensor:
    """Mean absolute log-ratio of two :func:`radial_spectrum` results over the non-zero
    frequencies, each power floored at ``SPECTRUM_FLOOR``: 0 for the same spectrum, log 2 when
    every frequency band carries twice (or half) the power it should."""
    a = _f64(real_spectrum)[1:].clamp_min(SPECTRUM_FLOOR)
    b = _f64(fake_spectrum).to(a.device)[1:].clamp_min(SPECTRUM_FLOOR)
    return (a.log() - b.log()).abs().mean()


# --- mode coverage ----------------------------------------------------------------------------


def mode_coverage(
    fake_logits_or_probs: torch.Tensor,
    real_labels: torch.Tensor,
    num_classes: int,
    alpha: float = 0.5,
) -> tuple[int, int, torch.Tensor]:
    """Modes hit, modes in the data, and KL(fake class histogram ‖ real class histogram).

    ``fake_logits_or_probs`` is ``(N, K)`` classifier output (argmax taken) or ``(N,)``
    predicted labels. A mode (class) counts as *hit* when it receives at least a quarter of
    its real share of the fakes, ``p_fake(c) >= p_real(c) / 4`` (for balanced classes:
    ``>= 1 / (4K)``), so a few misclassified samples of a collapsed generator do not count.
    ``modes_total`` counts the classes present in ``real_labels``. Both histograms are
    smoothed with ``alpha`` pseudo-counts per class (Jeffreys prior) before the KL, so it is
    finite; a generator emitting one class of K balanced ones scores about ``log K``.
    """
    x = torch.as_tensor(fake_logits_or_probs)
    pred = x.argmax(1) if x.dim() == 2 else x.long()
    labels = torch.as_tensor(real_labels).long().to(pred.device)
    fake_counts = torch.bincount(pred, minlength=num_classes)[:num_classes].double()
    real_counts = torch.bincount(labels, minlength=num_classes)[:num_classes].double()
    p_fake = fake_counts / fake_counts.sum().clamp_min(1)
    p_real = real_counts / real_counts.sum().clamp_min(1)
    present = real_counts > 0
    hit = present & (p_fake >= p_real / 4) & (fake_counts > 0)
    q_fake = (fake_counts + alpha) / (fake_counts.sum() + alpha * num_classes)
    q_real = (real_counts + alpha) / (real_counts.sum() + alpha * num_classes)
    kl = (q_fake * (q_fake / q_real).log()).sum()
    return int(hit.sum()), int(present.sum()), kl
