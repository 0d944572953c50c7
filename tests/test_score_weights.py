"""Metrics that count toward quality through a declared weight (ganarch_register_metrics with
``quality=``): the built-ins declare theirs the same way, a plugin's term moves quality by
exactly its weighted share, the recorded score version follows the terms, and bad
declarations are refused in one line naming the plugin."""

from __future__ import annotations

import math

import pytest

import ganarch
from ganarch.data import load_dataset
from ganarch.errors import GanarchError, PluginError
from ganarch.score import (
    SCORE_VERSION,
    Evaluator,
    MetricRegistrar,
    QualityTerm,
    get_metric,
    metrics,
    quality_weights,
    score_version,
)


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    return Evaluator(load_dataset("digits", 16, 1), cache_dir=tmp_path_factory.mktemp("cache"))


def hand_metrics(ev: Evaluator) -> dict[str, float]:
    """Built-in values whose quality is 0.56 · 0.583 (worked out in test_score's
    test_quality_formula): terms 0.5, 0.8, 1, 0.64, 0.25; diversity 0.7, novelty 0.8."""
    return {
        "fid": ev.fid_scale * math.log(2),
        "precision": 0.8,
        "recall": 0.3,
        "density": 1.5,
        "coverage": 0.4,
        "modes_hit": 8,
        "modes_total": 10,
        "mode_kl": math.log(1.25),
        "spectral_distance": ev.spectral_scale * math.log(4),
        "copy_fraction": 0.2,
    }


class Weighted:
    """Two metrics that count: one read as it is, one against the baseline images."""

    def __init__(self, weight: float = 0.5) -> None:
        self.weight = weight

    @ganarch.hookimpl
    def ganarch_register_metrics(self, registrar):
        registrar.add(
            "sharpness",
            fn=lambda ctx: {"sharpness": 0.4},
            higher_is_better=True,
            quality={"sharpness": QualityTerm(self.weight)},
        )
        # A lower-is-better value that is the batch size / 100: 10 for the 1,000 baseline images.
        registrar.add(
            "batch",
            fn=lambda ctx: {"batch_size": ctx.fake_images.shape[0] / 100},
            higher_is_better=False,
            quality={"batch": QualityTerm(0.25, value="batch_size", goodness="baseline")},
        )


class Unweighted:
    @ganarch.hookimpl
    def ganarch_register_metrics(self, registrar):
        registrar.add("sharpness", fn=lambda ctx: {"sharpness": 0.4}, higher_is_better=True)


def test_the_builtin_metrics_declare_todays_weights():
    assert quality_weights() == {
        "fid": 0.5,
        "precision": 0.1,
        "density": 0.1,
        "modes": 0.2,
        "spectrum": 0.1,
    }
    with pytest.warns(DeprecationWarning, match="QUALITY_WEIGHTS is deprecated"):
        old = ganarch.score.QUALITY_WEIGHTS
    assert quality_weights() == old  # the old name still reads them
    assert get_metric("spectrum").quality["spectrum"].value == "spectral_distance"
    assert score_version() == SCORE_VERSION  # studies scored before still resume


def test_a_weighted_plugin_metric_moves_quality_by_its_share(plugin_state, evaluator):
    m = hand_metrics(evaluator)
    assert evaluator.quality(m) == pytest.approx(0.56 * 0.583, rel=1e-12)
    plugin_state(Weighted(), name="weighted")
    # The batch term's scale is the metric on the 1,000 baseline images: 1000 / 100 = 10.
    assert evaluator.baseline(get_metric("batch")) == {"batch_size": 10.0}
    mine = dict(m, sharpness=0.4, batch_size=0.64)
    # By hand: (0.583 + 0.5 · 0.4 + 0.25 · exp(−0.64 / 10)) / (1 + 0.5 + 0.25), times 0.56.
    expected = 0.56 * (0.583 + 0.5 * 0.4 + 0.25 * math.exp(-0.064)) / 1.75
    assert evaluator.quality(mine) == pytest.approx(expected, rel=1e-12)
    terms = evaluator.quality_components(mine)
    assert terms["sharpness"] == 0.4 and terms["batch"] == pytest.approx(math.exp(-0.064))
    # Through a real evaluation (held-out images, as new samples): recorded and counted.
    out = evaluator.evaluate(evaluator.held_out_images[:64], copies_against="train_split")
    assert out["sharpness"] == 0.4 and out["batch_size"] == 0.64
    builtin = {k: v for k, v in out.items() if k not in ("sharpness", "batch_size")}
    parts = evaluator.quality_components(builtin)
    factor = parts.pop("diversity") * parts.pop("novelty")
    w = quality_weights()
    weighted = sum(w[k] * v for k, v in parts.items()) + 0.5 * 0.4 + 0.25 * math.exp(-0.064)
    assert evaluator.quality(out) == pytest.approx(factor * weighted / 1.75, rel=1e-12)
    assert evaluator.quality(out) != evaluator.quality(builtin)


def test_an_unweighted_plugin_metric_is_recorded_but_does_not_count(plugin_state, evaluator):
    plugin_state(Unweighted(), name="unweighted")
    m = hand_metrics(evaluator)
    assert evaluator.quality(dict(m, sharpness=0.0)) == evaluator.quality(m)
    assert evaluator.quality(m) == pytest.approx(0.56 * 0.583, rel=1e-12)
    assert score_version() == SCORE_VERSION


def test_the_score_version_names_the_plugin_terms(plugin_state):
    plugin_state(Weighted(0.5), name="weighted")
    version = score_version()
    assert version.startswith(SCORE_VERSION + "+terms-") and version != SCORE_VERSION
    ganarch.plugin.manager.reset()
    plugin_state(Weighted(0.3), name="weighted")
    assert score_version() not in (version, SCORE_VERSION)  # another weight, another score


def test_a_study_scored_with_a_plugin_term_is_not_resumed_without_it(plugin_state, tmp_path):
    from ganarch.search import SearchConfig, TrialSettings, load_space
    from ganarch.search.study import SETTINGS_ATTR, prepare_study

    cfg = SearchConfig(
        space=load_space("quick"),
        settings=TrialSettings(data="digits", steps=2, device="cpu", out=str(tmp_path / "r")),
        study_name="s",
        storage=str(tmp_path / "s.journal"),
    )
    plugin_state(Weighted(), name="weighted")
    study = prepare_study(cfg)
    assert study.user_attrs[SETTINGS_ATTR]["score"] == score_version() != SCORE_VERSION
    prepare_study(cfg)  # the same terms: resumes
    ganarch.plugin.manager.reset()  # the plugin is gone: its term no longer counts
    with pytest.raises(GanarchError, match=r"score=.*\+terms-.*mean something else") as err:
        prepare_study(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("quality", "message"),
    [
        ({"s": QualityTerm(0)}, "weight must be a positive finite number, got 0"),
        ({"s": QualityTerm(-0.1)}, "positive finite"),
        ({"s": QualityTerm(float("nan"))}, "positive finite"),
        ({"s": QualityTerm(float("inf"))}, "positive finite"),
        ({"s": QualityTerm(True)}, "positive finite"),
        ({"s": QualityTerm("0.5")}, "positive finite"),
        ({"s": QualityTerm(0.1, goodness="log")}, "goodness must be one of value, baseline"),
        ({"s": QualityTerm(0.1, goodness=3)}, "goodness must be a name or a function"),
        ({"s": QualityTerm(0.1, value="")}, "value must be a value name"),
        ({"s": QualityTerm(0.1, goodness="baseline")}, "needs a lower-is-better value"),
        ({"diversity": QualityTerm(0.1)}, "reserved"),
        ({"fid": QualityTerm(0.1)}, "term 'fid' is already declared by metric 'fid'"),
        ({"no good": 0.1}, "identifier"),
        ({"s": "heavy"}, "must be a QualityTerm"),
        ({}, "must map term names"),
    ],
)
def test_bad_quality_declarations_are_refused(quality, message):
    registrar = MetricRegistrar(dict(metrics()), "mine")
    with pytest.raises(PluginError, match=message) as err:
        registrar.add("s", fn=lambda ctx: {"s": 1.0}, higher_is_better=True, quality=quality)
    assert "plugin 'mine'" in str(err.value) and "\n" not in str(err.value)


def test_a_bare_weight_is_a_term_on_the_value_itself():
    registrar = MetricRegistrar({}, "mine")
    registrar.add("s", fn=lambda ctx: {"s": 1.0}, higher_is_better=True, quality={"s": 0.3})
    registrar.commit()
    assert registrar._table["s"].quality == {"s": QualityTerm(0.3, "s", "value")}


def test_a_term_on_a_value_the_metric_does_not_return_fails_the_evaluation(plugin_state, evaluator):
    class Typo:
        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar):
            registrar.add(
                "sharpness",
                fn=lambda ctx: {"sharp": 0.4},
                higher_is_better=True,
                quality={"sharpness": 0.2},
            )

    plugin_state(Typo(), name="typo")
    with pytest.raises(GanarchError, match=r"plugin 'typo': metric 'sharpness' declares quality "
                       r"terms on 'sharpness' but returned only 'sharp'"):  # fmt: skip
        evaluator.evaluate(evaluator.held_out_images[:64])


def test_a_failing_weighted_metric_fails_the_evaluation_not_silently(plugin_state, evaluator):
    def broken(ctx):
        raise ValueError("boom")

    class Broken:
        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar):
            registrar.add("broken", fn=broken, higher_is_better=True, quality={"broken": 0.2})

    plugin_state(Broken(), name="broken")
    # (An unweighted metric that fails is only warned about: quality does not depend on it.)
    with pytest.raises(
        GanarchError, match=r"metric 'broken' of plugin 'broken' failed: ValueError"
    ):
        evaluator.evaluate(evaluator.held_out_images[:64])


def test_a_goodness_function_reads_every_value_and_its_failure_names_the_plugin(
    plugin_state, evaluator
):
    def ratio(value, values):
        return value / values["denominator"]  # KeyError when the other value is missing

    class Ratio:
        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar):
            registrar.add(
                "ratio",
                fn=lambda ctx: {"numerator": 0.3, "denominator": 0.6},
                higher_is_better=True,
                quality={"ratio": QualityTerm(0.5, value="numerator", goodness=ratio)},
            )

    plugin_state(Ratio(), name="ratio")
    m = hand_metrics(evaluator)
    both = dict(m, numerator=0.3, denominator=0.6)
    assert evaluator.quality(both) == pytest.approx(0.56 * (0.583 + 0.5 * 0.5) / 1.5, rel=1e-12)
    with pytest.raises(GanarchError, match=r"plugin 'ratio': the goodness of quality term "
                       r"'ratio' \(metric 'ratio'\) failed: KeyError"):  # fmt: skip
        evaluator.quality(dict(m, numerator=0.3))
    assert evaluator.quality(m) == pytest.approx(0.56 * 0.583, rel=1e-12)  # value absent: left out
