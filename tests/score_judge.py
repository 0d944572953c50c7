"""An independent judge of generated images, to check ganarch's quality score against.

It shares no code and no features with ``ganarch.score``: NumPy, SciPy and scikit-learn on
raw pixels only. Three numbers per image set, each against a reference set of real images:

- ``fd``: the Fréchet distance between Gaussians fitted to the images' first 20 principal
  components (PCA fitted on the reference images), matrix square root by SciPy; lower is better.
- ``nn1``: the leave-one-out 1-nearest-neighbour two-sample test (Lopez-Paz & Oquab 2017)
  between up to 500 generated and as many reference images, in pixel space: its accuracy is
  0.5 when the two sets cannot be told apart and 1.0 when every image's nearest neighbour is
  of its own kind (noise, a collapsed set, duplicates); lower is better.
- ``classifier``: a support-vector classifier on raw pixels trained on labelled reference
  images; the mean confidence of its predictions (how legible) times the effective number of
  classes among them over the number of classes (how varied), in [0, 1]; higher is better.
  Without labels (``labels=None``, an unlabelled dataset) there is no classifier: ``score``
  returns ``fd`` and ``nn1`` only.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.svm import SVC

__all__ = ["DIRECTIONS", "Judge", "control_sets"]

#: Each metric's direction: +1 when higher is better, −1 when lower is.
DIRECTIONS = {"fd": -1, "nn1": -1, "classifier": 1}


def _flat(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    return np.clip(np.nan_to_num(x, nan=0.0), -1, 1).reshape(len(x), -1)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # A small ridge keeps the square root defined for a collapsed set's singular covariance.
    ridge = 1e-6 * np.eye(len(s1))
    covmean = np.real(scipy.linalg.sqrtm((s1 + ridge) @ (s2 + ridge)))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def one_nn_accuracy(fake: np.ndarray, real: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy on the union of two equal-size sets (ties broken toward
    the other set, so exact duplicates across sets count as indistinguishable)."""
    x = np.concatenate([fake, real])
    label = np.r_[np.zeros(len(fake)), np.ones(len(real))]
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * x @ x.T
    np.fill_diagonal(d, np.inf)
    # A tiny penalty on same-kind neighbours: a tie goes to the other kind.
    d = d + 1e-9 * (label[:, None] == label[None, :])
    nearest = d.argmin(1)
    return float((label[nearest] == label).mean())


def control_sets(
    reference: np.ndarray, held_out: np.ndarray, n: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Image sets whose place in any ranking is known, from real ``(N, C, H, W)`` images in
    [-1, 1]: the evaluator's reference images (``reference``, part of its 80 % split) and its
    held-out images (``held_out``; the GANs train on these too, so the ganarch tests check
    copies of held-out sets against the 80 % split only, as stand-ins for new samples).

    - ``held-out real``: the held-out images themselves (the top);
    - ``uniform noise`` and ``independent pixels`` (each pixel from a Gaussian with the real
      per-pixel mean and standard deviation): no strokes at all;
    - ``one real digit x1000`` (collapse) and ``ten real digits x100`` (a memorised handful);
    - ``real + checkerboard 0.4``: training images with a period-2 pattern of amplitude 0.4
      added, the artefact of transposed convolutions;
    - ``real on grey background``: held-out images at half contrast on a grey background;
    - ``training images replayed``: 1,000 of the reference images, which the generators
      trained on (memorised).
    """
    rng = np.random.default_rng(seed)
    shape = (n, *reference.shape[1:])
    mu, sd = reference.mean(0), reference.std(0, ddof=1)
    side = np.arange(reference.shape[-1])
    checker = ((side[:, None] + side[None, :]) % 2 * 2 - 1.0).astype(reference.dtype)
    real_n = reference[rng.choice(len(reference), n, replace=False)]
    ten = held_out[rng.choice(len(held_out), 10, replace=False)]
    return {
        "held-out real": held_out,
        "uniform noise": rng.uniform(-1, 1, shape),
        "independent pixels": np.clip(mu + sd * rng.standard_normal(shape), -1, 1),
        "one real digit x1000": np.repeat(held_out[:1], n, axis=0),
        "ten real digits x100": np.tile(ten, (n // 10, 1, 1, 1)),
        "real + checkerboard 0.4": np.clip(real_n + 0.4 * checker, -1, 1),
        "real on grey background": held_out * 0.5 + 0.2,
        "training images replayed": real_n,
    }


class Judge:
    """Scores image sets ``(N, C, H, W)`` in [-1, 1] against ``reference`` real images with
    ``labels`` (see the module docstring)."""

    def __init__(
        self,
        reference: np.ndarray,
        labels: np.ndarray | None,
        *,
        components: int = 20,
        n_test: int = 500,
        seed: int = 0,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.n_test = n_test
        self.reference = _flat(reference)
        self.pca = PCA(n_components=components, random_state=seed).fit(self.reference)
        self.ref_pca = self.pca.transform(self.reference)
        self.classifier = None
        self.num_classes = None
        if labels is None:  # an unlabelled dataset: fd and nn1 only
            return
        labels = np.asarray(labels)
        self.num_classes = len(np.unique(labels))
        # Platt-calibrated probabilities, so "confidence" means something.
        svc = SVC(random_state=seed)
        self.classifier = CalibratedClassifierCV(svc, ensemble=False).fit(self.reference, labels)

    def score(self, images: np.ndarray) -> dict[str, float]:
        x = _flat(images)
        rng = np.random.default_rng(self.seed)
        n = min(self.n_test, len(x), len(self.reference))
        fake = x[rng.choice(len(x), n, replace=False)]
        real = self.reference[rng.choice(len(self.reference), n, replace=False)]
        pixels = {
            "fd": frechet(self.ref_pca, self.pca.transform(x)),
            "nn1": one_nn_accuracy(fake, real),
        }
        if self.classifier is None:
            return pixels
        probs = self.classifier.predict_proba(x)
        hist = np.bincount(probs.argmax(1), minlength=self.num_classes) / len(x)
        nz = hist[hist > 0]
        effective = float(np.exp(-(nz * np.log(nz)).sum()))
        return {
            **pixels,
            "classifier": float(probs.max(1).mean()) * effective / self.num_classes,
            "confidence": float(probs.max(1).mean()),
            "classes": effective,
        }
