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
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.decomposition import PCA
from sklearn.svm import SVC

__all__ = ["Judge"]


def _flat(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    return np.clip(np.nan_to_num(x, nan=0.0), -1, 1).reshape(len(x), -1)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
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


class Judge:
    """Scores image sets ``(N, C, H, W)`` in [-1, 1] against ``reference`` real images with
    ``labels`` (see the module docstring)."""

    def __init__(
        self,
        reference: np.ndarray,
        labels: np.ndarray,
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
        labels = np.asarray(labels)
        self.num_classes = len(np.unique(labels))
        self.classifier = SVC(probability=True, random_state=seed).fit(self.reference, labels)

    def score(self, images: np.ndarray) -> dict[str, float]:
        x = _flat(images)
        rng = np.random.default_rng(self.seed)
        n = min(self.n_test, len(x), len(self.reference))
        fake = x[rng.choice(len(x), n, replace=False)]
        real = self.reference[rng.choice(len(self.reference), n, replace=False)]
        probs = self.classifier.predict_proba(x)
        hist = np.bincount(probs.argmax(1), minlength=self.num_classes) / len(x)
        nz = hist[hist > 0]
        effective = float(np.exp(-(nz * np.log(nz)).sum()))
        return {
            "fd": frechet(self.ref_pca, self.pca.transform(x)),
            "nn1": one_nn_accuracy(fake, real),
            "classifier": float(probs.max(1).mean()) * effective / self.num_classes,
            "confidence": float(probs.max(1).mean()),
            "classes": effective,
        }
