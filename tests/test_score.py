"""Sample-quality scoring: the metrics against closed forms and brute force, the metric
registry, the cached feature net, the evaluator's ordering of real vs. bad images, and the
optional Inception FID."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import scipy.linalg
import torch

import ganarch
import ganarch.score.features as features_mod
from ganarch.data import ImageDataset, load_dataset
from ganarch.errors import GanarchError, PluginError
from ganarch.score import (
    Evaluator,
    InceptionFeatures,
    MetricRegistrar,
    density_coverage,
    fid,
    frechet_distance,
    kid,
    metrics,
    mode_coverage,
    precision_recall,
)
from ganarch.score.quality import (
    copy_fraction,
    gaussian_stats,
    radial_spectrum,
    spectral_distance,
)
from ganarch.score.registry import MetricContext

# --- helpers -----------------------------------------------------------------------------------


def _gauss(n: int, d: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _spd(d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d + 3))
    return a @ a.T / d + 1e-3 * np.eye(d)


def _fid_reference(mu1, s1, mu2, s2) -> float:
    """The textbook formula with SciPy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _sqd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _kth(x: np.ndarray, k: int) -> np.ndarray:
    return np.sort(_sqd(x, x), axis=1)[:, k]  # index 0 is the point itself


# --- FID ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 8, 32])
def test_frechet_distance_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(d, 1), _spd(d, 2)
    got = float(frechet_distance(*map(torch.from_numpy, (mu1, s1, mu2, s2))))
    assert got == pytest.approx(_fid_reference(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # W2² between N(m1, diag v1) and N(m2, diag v2) = |m1 - m2|² + Σ (√v1 - √v2)².
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    v1, v2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    expected = float(((m1 - m2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())
    got = float(frechet_distance(m1, torch.diag(v1), m2, torch.diag(v2)))
    assert got == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(10.0 + 2.0)


def test_frechet_distance_handles_singular_covariances():
    s = torch.zeros(4, 4)
    s[0, 0] = 1.0
    assert float(frechet_distance(torch.zeros(4), s, torch.zeros(4), s)) == pytest.approx(
        0, abs=1e-9
    )


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_costs_its_square():
    x = _gauss(4000, 6, seed=1)
    assert float(fid(x, x)) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, -2.0, 0.0, 0.0, 0.5, 0.0], dtype=torch.float64)
    # Same covariance, mean moved by `shift`: FID = |shift|² exactly.
    assert float(fid(x, x + shift)) == pytest.approx(float(shift @ shift), rel=1e-6)
    # Independent samples: close to the closed form, up to sampling noise.
    y = _gauss(20000, 6, seed=2) * 2.0 + shift  # N(shift, 4 I)
    closed = float(shift @ shift) + 6 * (2.0 - 1.0) ** 2
    assert float(fid(_gauss(20000, 6, seed=3), y)) == pytest.approx(closed, rel=0.05)


def test_gaussian_stats_are_the_mean_and_unbiased_covariance():
    # Three points (0, 0), (3, 0), (0, 6): mean (1, 2); deviations (−1, −2), (2, −2), (−1, 4);
    # sums of products over n − 1 = 2: var x = 6/2, var y = 24/2, cov = (2 − 4 − 4)/2.
    mu, cov = gaussian_stats(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 6.0]]))
    assert mu.tolist() == pytest.approx([1.0, 2.0])
    assert cov.tolist() == [pytest.approx([3.0, -3.0]), pytest.approx([-3.0, 12.0])]
    # So the FID of two tiny sets is the unbiased one: two points each, the same mean and
    # variances 2 (x) and 8 (y): W2² = (√2 − √8)² = 2.
    a = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    assert float(fid(a, b)) == pytest.approx(2.0)


def test_copy_fraction_by_hand():
    # Reals on a line at 0, 1, 3, 6, 10: nearest-other squared distances 1, 1, 4, 9, 16; their
    # 25 % quantile (linear interpolation) is 1. Fakes at 0.5 (0.25 from a real: a copy),
    # 2 (1: on the limit, a copy), 4.5 (2.25: not) and 20 (100: not) → 2 of 4.
    real = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    fake = torch.tensor([[0.5], [2.0], [4.5], [20.0]])
    assert float(copy_fraction(real, fake, quantile=0.25)) == pytest.approx(0.5)
    assert float(copy_fraction(real, real, quantile=0.25)) == 1.0


def test_radial_spectrum_and_spectral_distance_by_hand():
    # A ±1 checkerboard is standardised to itself; all its power, (16·16)² / (16·16) = 256,
    # sits at the one frequency (8, 8), whose radius √128 rounds to 11.
    i = torch.arange(16)
    board = ((i[:, None] + i[None, :]) % 2 * 2 - 1.0).expand(3, 1, 16, 16)
    spec = radial_spectrum(board)
    f = torch.fft.fftfreq(16) * 16
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt().round().long()
    assert len(spec) == int(radius.max()) + 1 == 12
    expected = torch.zeros(12, dtype=torch.float64)
    expected[11] = 256 / int((radius == 11).sum())
    assert torch.allclose(spec, expected)
    # Brightness and contrast do not change a spectrum.
    assert torch.allclose(radial_spectrum(0.3 * board - 0.2), spec)
    # Mean |log ratio| over the bins after the first, powers floored at 1e-3:
    # bins 1..3: |ln(2/1)|, |ln(0.5/0.5)|, |ln(1e-3/1e-3)| (both below the floor) → ln 2 / 3.
    real = torch.tensor([5.0, 1.0, 0.5, 1e-5])
    fake = torch.tensor([9.0, 2.0, 0.5, 1e-4])
    assert float(spectral_distance(real, fake)) == pytest.approx(math.log(2) / 3)


# --- KID ---------------------------------------------------------------------------------------


def test_kid_matches_the_unbiased_mmd_formula_on_whole_sets():
    # With subset_size >= both set sizes every subset is the whole set: plain unbiased MMD².
    a, b = _gauss(30, 5, seed=1).numpy(), _gauss(30, 5, 0.3, seed=2).numpy()
    k = lambda x, y: (x @ y.T / 5 + 1) ** 3  # noqa: E731
    m = 30
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    expected = (
        (kaa.sum() - np.trace(kaa)) / (m * (m - 1))
        + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        - 2 * kab.sum() / m**2
    )
    got, std = kid(torch.from_numpy(a), torch.from_numpy(b), subsets=3, subset_size=1000)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    assert float(std) == pytest.approx(0.0, abs=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    x, y = _gauss(1000, 16, seed=1), _gauss(1000, 16, seed=2)
    same, same_std = kid(x, y, subsets=20, subset_size=500)
    diff, diff_std = kid(x, _gauss(1000, 16, 0.5, seed=3), subsets=20, subset_size=500)
    assert abs(float(same)) < 3 * float(same_std) + 1e-3
    assert float(diff) > 10 * float(diff_std) and float(diff) > 50 * abs(float(same))


def test_kid_with_a_cache_of_the_real_side_gives_identical_results():
    real = _gauss(300, 8, seed=1).float()
    cache: dict = {}
    for n, shift, seed in [(200, 0.2, 2), (200, 0.5, 3), (100, 0.2, 4), (200, 0.2, 2)]:
        fake = _gauss(n, 8, shift, seed=seed).float()
        fresh = kid(real, fake, subsets=7, subset_size=150, seed=5)
        cached = kid(real, fake, subsets=7, subset_size=150, seed=5, cache=cache)
        assert all(torch.equal(x, y) for x, y in zip(fresh, cached, strict=True))
    assert len(cache) == 2  # one entry per subset size m (150 and 100)
    # Another real set through the same cache is recomputed, not served the stale entry.
    other = _gauss(300, 8, 1.0, seed=9).float()
    assert torch.equal(kid(other, fake, 7, 150, 5, cache=cache)[0], kid(other, fake, 7, 150, 5)[0])


# --- precision / recall, density / coverage ----------------------------------------------------


def test_precision_recall_match_brute_force():
    real, fake = _gauss(60, 3, seed=1), _gauss(50, 3, 0.7, seed=2)
    r, f = real.numpy(), fake.numpy()
    rr, fr = _kth(r, 3), _kth(f, 3)
    precision = (_sqd(f, r) <= rr[None, :]).any(1).mean()
    recall = (_sqd(r, f) <= fr[None, :]).any(1).mean()
    p, rc = precision_recall(real, fake, k=3)
    assert float(p) == pytest.approx(precision) and float(rc) == pytest.approx(recall)
    assert 0 < precision < 1 and 0 < recall < 1  # the case is not trivial


def test_density_coverage_match_brute_force():
    real, fake = _gauss(60, 3, seed=1), _gauss(50, 3, 0.7, seed=2)
    r, f = real.numpy(), fake.numpy()
    rr = _kth(r, 5)
    inside = _sqd(f, r) <= rr[None, :]  # (fake, real ball)
    d, c = density_coverage(real, fake, k=5)
    assert float(d) == pytest.approx(inside.sum() / (5 * len(f)))
    assert float(c) == pytest.approx(inside.any(0).mean())


def test_prdc_on_identical_far_and_one_cluster_fakes():
    real = _gauss(1000, 8, seed=1)
    p, r = precision_recall(real, real.clone())
    assert float(p) == 1.0 and float(r) == 1.0
    d, c = density_coverage(real, real.clone())
    assert float(c) == 1.0 and float(d) == pytest.approx(1.2, abs=0.05)  # (k + 1) / k
    # A fresh sample of the same distribution: density about 1, coverage high.
    d, c = density_coverage(real, _gauss(1000, 8, seed=2))
    assert 0.8 < float(d) < 1.2 and float(c) > 0.9

    far = _gauss(1000, 8, 50.0, seed=3)
    assert [float(v) for v in precision_recall(real, far)] == [0.0, 0.0]
    assert [float(v) for v in density_coverage(real, far)] == [0.0, 0.0]

    # Two real clusters; the fakes cover only one: precision high, recall about half.
    two = torch.cat([_gauss(500, 8, -10.0, seed=4), _gauss(500, 8, 10.0, seed=5)])
    one = _gauss(1000, 8, -10.0, seed=6)
    p, r = precision_recall(two, one)
    assert float(p) > 0.8 and float(r) < 0.55
    d, c = density_coverage(two, one)
    assert float(c) < 0.55 and float(d) > 0.8


# --- mode coverage -----------------------------------------------------------------------------


def test_mode_coverage_collapsed_and_balanced():
    real = torch.arange(10).repeat(100)
    hit, total, kl = mode_coverage(torch.full((1000,), 3), real, 10)
    assert (hit, total) == (1, 10)
    assert float(kl) == pytest.approx(math.log(10), rel=0.03)  # ≈ log K when one class is left

    logits = torch.nn.functional.one_hot(torch.arange(10).repeat(50), 10).float() * 5
    hit, total, kl = mode_coverage(logits, real, 10)  # (N, K) logits: argmax is taken
    assert (hit, total) == (10, 10) and float(kl) < 1e-3


def test_mode_coverage_threshold_is_a_quarter_of_the_real_share():
    real = torch.arange(4).repeat(25)  # 25 % each: a mode needs ≥ 6.25 % of the fakes
    fake = torch.tensor([0] * 50 + [1] * 44 + [2] * 6)  # class 2 at 6 % is not hit, 3 absent
    hit, total, _ = mode_coverage(fake, real, 4)
    assert (hit, total) == (2, 4)
    # Classes absent from the real data are not modes.
    hit, total, _ = mode_coverage(torch.tensor([0, 1] * 10), torch.tensor([0, 1] * 10), 5)
    assert (hit, total) == (2, 2)


# --- the metric registry -----------------------------------------------------------------------


def test_builtin_metrics_are_registered_with_directions():
    table = metrics()
    assert {"fid", "kid", "prdc", "modes", "inception_fid"} <= set(table)
    assert table["fid"].direction("fid") is False
    assert table["prdc"].direction("coverage") is True
    assert table["modes"].direction("mode_kl") is False
    assert table["fid"].plugin == "builtin"


def test_registrar_checks_what_it_is_given():
    found = {}
    reg = MetricRegistrar(found, "mine")
    with pytest.raises(PluginError, match="identifier"):
        reg.add("no good", fn=lambda ctx: {}, higher_is_better=True)
    with pytest.raises(PluginError, match="not callable"):
        reg.add("x", fn=3, higher_is_better=True)
    with pytest.raises(PluginError, match="higher_is_better"):
        reg.add("x", fn=lambda ctx: {}, higher_is_better="up")
    with pytest.raises(PluginError, match="higher_is_better"):
        reg.add("x", fn=lambda ctx: {}, higher_is_better={"a": 1})
    reg.add("x", fn=lambda ctx: {"x": 1.0}, higher_is_better=True)
    reg.commit()
    with pytest.raises(
        PluginError, match=r"'x' is registered twice: by plugin 'mine' and plugin 'other'"
    ):
        MetricRegistrar(found, "other").add("x", fn=lambda ctx: {}, higher_is_better=False)


def test_a_plugin_metric_is_run_by_the_evaluator(plugin_state, evaluator):
    class Mean:
        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar):
            def mean_pixel(ctx: MetricContext) -> dict[str, float]:
                return {"mean_pixel": float(ctx.fake_images.mean())}

            registrar.add("mean_pixel", fn=mean_pixel, higher_is_better=False)

    plugin_state(Mean(), name="mean-metric")
    out = evaluator.evaluate(torch.zeros(64, 1, 16, 16))
    assert out["mean_pixel"] == 0.0 and "fid" in out
    assert evaluator.directions["mean_pixel"] is False


def test_a_duplicate_metric_is_reported_naming_both_plugins(plugin_state):
    class Clash:
        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar):
            registrar.add("fid", fn=lambda ctx: {}, higher_is_better=False)

    plugin_state(Clash(), name="clash")
    with pytest.warns(
        UserWarning, match=r"registered twice: by plugin 'builtin' and plugin 'clash'"
    ):
        table = metrics()
    assert table["fid"].plugin == "builtin"


# --- the feature net and the evaluator ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits16():
    return load_dataset("digits", 16, 1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ganarch-cache")


@pytest.fixture(scope="module")
def evaluator(digits16, cache):
    return Evaluator(digits16, cache_dir=cache)


def test_feature_net_is_an_accurate_classifier_cached_on_disk(evaluator, cache):
    info = evaluator.feature_info
    assert info["kind"] == "classifier" and info["held_out_accuracy"] > 0.9
    files = list((cache / "features").glob("digits-1x16x16-*.pt"))
    assert len(files) == 1 and str(files[0]) == info["cache_path"]
    assert not list((cache / "features").glob("*.tmp"))
    assert evaluator.real_features.shape[1] <= 256


def test_second_evaluator_loads_the_feature_net_from_the_cache(
    evaluator, digits16, cache, monkeypatch
):
    def no_training(*args, **kwargs):
        raise AssertionError("the feature net was trained again")

    monkeypatch.setattr(features_mod, "train_feature_net", no_training)
    again = Evaluator(digits16, cache_dir=cache)
    assert again.feature_info["from_cache"] is True
    for a, b in zip(
        again.net.state_dict().values(), evaluator.net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    # Another size is another cache entry, so it would need training.
    with pytest.raises(AssertionError, match="trained again"):
        Evaluator(load_dataset("digits", 8, 1), cache_dir=cache)


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path / "env-cache"))
    assert features_mod.cache_dir() == tmp_path / "env-cache"
    assert features_mod.cache_dir(tmp_path / "x") == tmp_path / "x"


def _small(labels: bool) -> ImageDataset:
    data = load_dataset("digits", 8, 1).subset(range(300))
    return data if labels else ImageDataset(data.images, name="digits-unlabelled")


def test_feature_net_training_is_deterministic(monkeypatch, tmp_path):
    monkeypatch.setattr(features_mod, "STEPS", 15)
    data = _small(labels=True)
    a, _ = features_mod.load_feature_net(data, cache_dir=tmp_path / "a", seed=1)
    b, _ = features_mod.load_feature_net(data, cache_dir=tmp_path / "b", seed=1)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_unlabelled_data_gets_an_autoencoder_and_no_mode_metrics(monkeypatch, tmp_path):
    monkeypatch.setattr(features_mod, "STEPS", 15)
    data = _small(labels=False)
    ev = Evaluator(data, cache_dir=tmp_path, n_real=200)
    assert ev.feature_info["kind"] == "autoencoder" and ev.feature_info["held_out_mse"] > 0
    out = ev.evaluate(data.images[:100])
    assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= set(out)
    assert "modes_hit" not in out and "mode_kl" not in out
    assert 0.0 <= ev.quality(out) <= 1.0


def test_real_images_score_far_better_than_noise_and_an_untrained_generator(evaluator):
    ref = evaluator.reference()
    expected = {"fid", "kid", "precision", "recall", "density", "coverage", "modes_hit", "mode_kl"}
    assert expected <= set(ref)
    noise = evaluator.evaluate(
        torch.rand(1000, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    G = ganarch.dcgan_spec(16, 1, width=16).build()[0]
    untrained = evaluator.evaluate_generator(G, n=1000)
    for bad in (noise, untrained):
        assert ref["fid"] * 20 < bad["fid"]
        assert ref["kid"] < bad["kid"]
        assert ref["precision"] > bad["precision"] + 0.5
        assert ref["recall"] > bad["recall"] + 0.5
        assert ref["coverage"] > bad["coverage"] + 0.4
        assert evaluator.quality(ref) > evaluator.quality(bad) + 0.5
    assert ref["modes_hit"] == ref["modes_total"] == 10 and ref["mode_kl"] < 0.05
    assert evaluator.quality(ref) > 0.85
    assert 0.0 <= evaluator.quality(untrained) < 0.3


def test_one_image_for_every_noise_vector_covers_about_one_mode(evaluator, digits16):
    out = evaluator.evaluate(digits16.images[:1].repeat(500, 1, 1, 1))
    assert out["modes_hit"] <= 2 and out["mode_kl"] > 1.5
    assert out["recall"] < 0.05 and out["coverage"] < 0.05
    assert evaluator.quality(out) < evaluator.quality(evaluator.reference()) - 0.4


def test_evaluate_generator_is_seeded_and_restores_training_mode(evaluator):
    G = ganarch.dcgan_spec(16, 1, width=16).build()[0]
    G.train()
    a = evaluator.evaluate_generator(G, n=200, seed=3)
    assert G.training
    G.eval()
    b = evaluator.evaluate_generator(G, n=200, seed=3)
    assert not G.training
    assert a == b
    assert evaluator.evaluate_generator(G, n=200, seed=4)["fid"] != a["fid"]


def test_evaluator_kid_reuses_its_real_side_and_matches_a_fresh_computation(evaluator):
    fakes = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    first, second = evaluator.evaluate(fakes), evaluator.evaluate(fakes)
    assert (first["kid"], first["kid_std"]) == (second["kid"], second["kid_std"])
    assert any(k[0] == "kid" for k in evaluator._memo["kid.real"])
    feats, _ = evaluator.net.embed(fakes)
    mean, std = kid(evaluator.real_features, feats, seed=evaluator.seed)  # no cache
    assert (float(mean), float(std)) == (first["kid"], first["kid_std"])


def test_quality_formula(evaluator):
    perfect = {"fid": 0.0, "precision": 1, "recall": 1, "density": 1.3, "coverage": 1,
               "modes_hit": 10, "modes_total": 10, "mode_kl": 0.0,
               "spectral_distance": 0.0, "copy_fraction": 0.0}  # fmt: skip
    assert evaluator.quality(perfect) == pytest.approx(1.0)
    # By hand: t_fid = exp(−ln 2) = 0.5, precision 0.8, min(density, 1) = 1,
    # t_modes = 8/10 · exp(−ln 1.25) = 0.64, t_spectrum = exp(−ln 4) = 0.25,
    # diversity = min(1, 0.3 + 0.4) = 0.7, novelty = 1 − 0.2 = 0.8:
    # quality = 0.7 · 0.8 · (0.5·0.5 + 0.1·0.8 + 0.1·1 + 0.2·0.64 + 0.1·0.25) / 1.0 = 0.56 · 0.583.
    m = {"fid": evaluator.fid_scale * math.log(2), "precision": 0.8, "recall": 0.3,
         "density": 1.5, "coverage": 0.4, "modes_hit": 8, "modes_total": 10,
         "mode_kl": math.log(1.25), "spectral_distance": evaluator.spectral_scale * math.log(4),
         "copy_fraction": 0.2}  # fmt: skip
    assert evaluator.quality(m) == pytest.approx(0.56 * 0.583, rel=1e-12)
    terms = evaluator.quality_components(m)
    assert terms == pytest.approx(
        {
            "fid": 0.5,
            "precision": 0.8,
            "density": 1.0,
            "modes": 0.64,
            "spectrum": 0.25,
            "diversity": 0.7,
            "novelty": 0.8,
        }
    )
    # Recall + coverage above 1 is full diversity; a collapsed set (both 0) scores 0, and so
    # does a set of copies of training images.
    no_copies = dict(m, copy_fraction=0.0)
    assert evaluator.quality(dict(no_copies, recall=0.7, coverage=0.6)) == pytest.approx(0.583)
    assert evaluator.quality(dict(perfect, recall=0.0, coverage=0.0)) == 0.0
    assert evaluator.quality(dict(perfect, copy_fraction=1.0)) == 0.0
    assert evaluator.quality({"fid": float("nan")}) == 0.0
    # Missing terms are left out and the weights renormalised: FID and precision only.
    assert evaluator.quality({"fid": evaluator.fid_scale * math.log(2), "precision": 0.8}) == (
        pytest.approx((0.5 * 0.5 + 0.1 * 0.8) / 0.6)
    )
    no_modes = {k: v for k, v in perfect.items() if "mode" not in k}
    assert evaluator.quality(no_modes) == pytest.approx(1.0)  # weights renormalised


def test_evaluate_rejects_images_of_the_wrong_shape(evaluator):
    with pytest.raises(GanarchError, match="1×16×16"):
        evaluator.evaluate(torch.zeros(100, 3, 16, 16))


def test_nonfinite_images_are_scored_not_crashed(evaluator):
    x = torch.zeros(100, 1, 16, 16)
    x[:10] = float("nan")
    out = evaluator.evaluate(x)
    assert out["nonfinite_fraction"] == pytest.approx(0.1) and math.isfinite(out["fid"])


# --- Inception FID from a local TorchScript file -------------------------------------------------


class _TinyInception(torch.nn.Module):
    """Stands in for Inception: (N, 3, 299, 299) in [0, 255] -> (N, 12) features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 299, 299)
        pooled = torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 4)
        return self.proj(pooled.flatten(1))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_inception_fid_from_a_local_torchscript_file(tmp_path, digits16, cache, monkeypatch):
    path = tmp_path / "tiny-inception.pt"
    torch.manual_seed(0)
    torch.jit.script(_TinyInception()).save(str(path))
    ev = Evaluator(digits16, cache_dir=cache, inception_weights=path, n_real=100)
    real = ev.evaluate(ev.held_out_images[:100])
    noise = ev.evaluate(noise_images(100))
    assert 0 <= real["inception_fid"] < noise["inception_fid"]
    # Without a file the metric records nothing; the environment variable also works.
    monkeypatch.delenv("GANARCH_INCEPTION_WEIGHTS", raising=False)
    assert "inception_fid" not in Evaluator(digits16, cache_dir=cache, n_real=300).evaluate(
        noise_images(300)
    )
    monkeypatch.setenv("GANARCH_INCEPTION_WEIGHTS", str(path))
    assert "inception_fid" in Evaluator(digits16, cache_dir=cache, n_real=300).evaluate(
        noise_images(300)
    )


class _ReturnFeatures(torch.nn.Module):
    """Like the StyleGAN2-ADA TorchScript: features only with ``return_features=True``."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        feats = x.mean(dim=(2, 3))
        return feats if return_features else feats[:, :1]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_inception_file_with_a_return_features_argument(tmp_path):
    path = tmp_path / "rf.pt"
    torch.jit.script(_ReturnFeatures()).save(str(path))
    net = InceptionFeatures(path)
    out = net(torch.zeros(5, 1, 8, 8))
    assert out.shape == (5, 3) and torch.allclose(out, torch.full((5, 3), 128.0))


def noise_images(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(n)) * 2 - 1


def test_missing_or_invalid_inception_file_is_a_clear_error(tmp_path, digits16, cache):
    missing = tmp_path / "nope.pt"
    with pytest.raises(GanarchError, match=re.escape(str(missing))):
        Evaluator(digits16, cache_dir=cache, inception_weights=missing)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript file")
    with pytest.raises(GanarchError, match=re.escape(str(bad))):
        Evaluator(digits16, cache_dir=cache, inception_weights=bad)


# --- a study records which score its values are ------------------------------------------------


def test_a_study_scored_otherwise_is_not_resumed(tmp_path):
    import optuna

    from ganarch.score import FEATURE_NET_VERSION, SCORE_VERSION
    from ganarch.search import SearchConfig, TrialSettings, load_space
    from ganarch.search.storage import open_storage
    from ganarch.search.study import SETTINGS_ATTR, _settings_record, prepare_study

    assert FEATURE_NET_VERSION in SCORE_VERSION
    cfg = SearchConfig(
        space=load_space("quick"),
        settings=TrialSettings(data="digits", steps=2, device="cpu", out=str(tmp_path / "r")),
        study_name="s",
        storage=str(tmp_path / "s.journal"),
    )
    study = prepare_study(cfg)
    assert study.user_attrs[SETTINGS_ATTR]["score"] == SCORE_VERSION
    prepare_study(cfg)  # the same score: resumes
    for name, old_score in [("older", None), ("other", "featnet-v1/quality-1")]:
        record = _settings_record(cfg)
        if old_score is None:
            del record["score"]  # a study of a version before scores were recorded
        else:
            record["score"] = old_score
        optuna.create_study(
            study_name=name, storage=open_storage(cfg.storage), direction="maximize"
        ).set_user_attr(SETTINGS_ATTR, record)
        other = dataclasses.replace(cfg, study_name=name)  # (__dict__ holds cached geometry)
        with pytest.raises(GanarchError, match=r"other settings: score.*now 'featnet") as err:
            prepare_study(other)
        assert "\n" not in str(err.value)


def test_prdc_in_one_pass_equals_the_separate_metrics():
    from ganarch.score.quality import prdc

    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 8, generator=gen), torch.randn(200, 8, generator=gen) + 0.3
    together = [float(v) for v in prdc(real, fake, batch=64)]
    apart = [float(v) for v in (*precision_recall(real, fake, 3), *density_coverage(real, fake, 5))]
    assert together == apart
    assert 0 < together[0] < 1 and 0 < together[3] < 1
