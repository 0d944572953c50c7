"""The metrics measure what they claim (issue 3): on 16×16 digits, held-out real images score
far better than an untrained generator, the paper's DCGAN after a short training scores
strictly between the two, and a generator that ignores its noise is flagged as collapsed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganarch import dcgan_spec
from ganarch.data import load_dataset
from ganarch.run import train

SIZE = 16
N = 1000  # generated images per evaluation


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", SIZE, 1)


@pytest.fixture(scope="module")
def evaluator(data, tmp_path_factory):
    from ganarch.score import Evaluator

    # The same session-wide cache as test_train.py: the feature net is trained once.
    return Evaluator(data, device="cpu", cache_dir=tmp_path_factory.getbasetemp() / "feature-cache")


@pytest.fixture(scope="module")
def real(evaluator):
    return evaluator.reference()  # held-out real images against the reference set


@pytest.fixture(scope="module")
def untrained(evaluator):
    torch.manual_seed(0)
    G, _ = dcgan_spec(SIZE, 1, width=16).build()
    return evaluator.evaluate_generator(G, n=N)


class SameImage(nn.Module):
    """A "generator" that returns one fixed real image whatever the noise."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("image", image)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.image.expand(z.shape[0], *self.image.shape)


def test_held_out_real_images_score_far_better_than_an_untrained_generator(
    evaluator, real, untrained
):
    assert real["fid"] * 20 < untrained["fid"]
    assert evaluator.quality(real) > 0.8 > 0.1 > evaluator.quality(untrained)
    for key in ("precision", "recall", "coverage"):
        assert real[key] > untrained[key] + 0.5, key
    assert real["modes_hit"] == 10


@pytest.mark.slow
def test_a_short_dcgan_training_scores_between(data, evaluator, real, untrained):
    spec = dcgan_spec(SIZE, 1, width=16)
    result = train(
        spec,
        data,
        800,
        seed=0,
        device="cpu",
        evaluator=evaluator,
        eval_every=400,
        training={"batch_size": 64},
        n_eval=N,
        progress=False,
    )
    assert not result.diverged
    trained = result.metrics
    assert real["fid"] < trained["fid"] < untrained["fid"]
    q_real, q_untrained = evaluator.quality(real), evaluator.quality(untrained)
    assert q_real > result.quality > q_untrained
    assert result.quality == pytest.approx(evaluator.quality(trained))
    # Not a marginal win: it has learnt digits of several classes.
    assert trained["fid"] < untrained["fid"] / 3
    assert trained["modes_hit"] >= 5


def test_a_generator_ignoring_its_noise_is_flagged_as_collapsed(evaluator, real):
    G = SameImage(evaluator.held_out_images[0])
    m = evaluator.evaluate_generator(G, n=N, latent_dim=100)
    assert m["modes_hit"] <= 2 and m["modes_total"] == 10
    assert m["mode_kl"] > 1.5  # one class of ten balanced ones: about log 10 = 2.3
    assert m["recall"] < 0.05 and m["coverage"] < 0.05
    assert evaluator.quality(m) < evaluator.quality(real) / 2
