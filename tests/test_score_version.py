"""What a recorded score means: the built-in quality pinned to the last bit and tied to
SCORE_VERSION, a plugin's quality terms described the same way in every session, worker
processes that would score without a code-registered term refused, and a plugin metric that
fails a trial without scoring the architecture."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
import textwrap

import optuna
import pytest
import torch

import ganarch
from ganarch.errors import GanarchError, PluginError
from ganarch.score import SCORE_VERSION, Evaluator, MetricRegistrar, QualityTerm, metrics
from ganarch.score.registry import MetricFailure, quality_terms, terms_digest
from ganarch.search.storage import open_storage

#: The digest of the built-in quality terms (term, metric, value, weight, goodness).
BUILTIN_TERMS_DIGEST = "963bd3b36330"


def test_the_builtin_terms_are_tied_to_the_score_version():
    assert SCORE_VERSION == "featnet-v2/quality-2" and terms_digest(quality_terms()) == (
        BUILTIN_TERMS_DIGEST
    ), "changing a built-in weight changes every score: bump SCORE_VERSION and update this digest"


def test_builtin_quality_is_pinned_to_the_last_bit():
    # Scales fixed by hand (FID baseline 80, spectral baseline 3), so only the formula counts:
    # terms fid e^-0.25, precision 0.7, density min(1.2, 1) = 1, modes 0.9·e^-0.1, spectrum
    # e^-0.5 (weights 0.5, 0.1, 0.1, 0.2, 0.1); diversity 0.35 + 0.45; novelty 1 - 0.05.
    ev = Evaluator.__new__(Evaluator)
    ev._baselines = {
        ("builtin", "fid"): {"fid": 80.0},
        ("builtin", "spectrum"): {"spectral_distance": 3.0},
    }
    m = {
        "fid": 20.0,
        "precision": 0.7,
        "recall": 0.35,
        "density": 1.2,
        "coverage": 0.45,
        "modes_hit": 9,
        "modes_total": 10,
        "mode_kl": 0.1,
        "spectral_distance": 1.5,
        "copy_fraction": 0.05,
    }
    by_hand = (
        0.8
        * 0.95
        * (
            0.5 * math.exp(-0.25)
            + 0.1 * 0.7
            + 0.1 * 1.0
            + 0.2 * 0.9 * math.exp(-0.1)
            + 0.1 * math.exp(-0.5)
        )
        / 1.0
    )
    assert ev.quality(m) == pytest.approx(by_hand, rel=1e-15)
    # "changing the order of the sum or a weight changes every score: bump SCORE_VERSION"
    assert ev.quality(m) == 0.5950223864926133


_PLUGIN = textwrap.dedent(
    """
    import functools
    import ganarch
    from ganarch.score import QualityTerm, score_version

    def good(value, values):
        return value

    def scaled(value, values, scale=1.0):
        return value * scale

    class Terms:
        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar):
            registrar.add("sharp", fn=lambda ctx: {"sharp": 0.4, "soft": 0.2},
                          higher_is_better=True,
                          quality={"sharp": QualityTerm(0.3, goodness=good),
                                   "soft": QualityTerm(0.2, goodness=functools.partial(
                                       scaled, scale=0.5))})

    ganarch.register_plugin(Terms())  # no name=: pluggy names it by the object's id
    print(score_version())
    """
)


def test_the_score_version_is_the_same_in_every_session():
    def version() -> str:
        out = subprocess.run(
            [sys.executable, "-c", _PLUGIN], capture_output=True, text=True, check=True
        )
        return out.stdout.strip().splitlines()[-1]

    first, second = version(), version()
    assert first.startswith(SCORE_VERSION + "+terms-") and first == second


class _Callable:
    def __call__(self, value, values):
        return value


def _good(value, values, scale=1.0):
    return value * scale


@pytest.mark.parametrize(
    "goodness",
    [_Callable(), functools.partial(_good, scale=torch.tensor(0.5)), _Callable().__call__],
)
def test_a_goodness_without_a_stable_name_is_refused(goodness):
    registrar = MetricRegistrar(dict(metrics()), "mine")
    with pytest.raises(PluginError, match="pass a named function") as err:
        registrar.add(
            "s",
            fn=lambda ctx: {"s": 1.0},
            higher_is_better=True,
            quality={"s": QualityTerm(0.1, goodness=goodness)},
        )
    assert "plugin 'mine'" in str(err.value) and "\n" not in str(err.value)


def test_a_partial_of_plain_data_is_described_by_its_function_and_arguments():
    registrar = MetricRegistrar({}, "mine")
    g = functools.partial(_good, scale=0.5)
    registrar.add("s", fn=lambda ctx: {"s": 1.0}, higher_is_better=True, quality={"s": 0.1})
    registrar.add(
        "t",
        fn=lambda ctx: {"t": 1.0},
        higher_is_better=True,
        quality={"t": QualityTerm(1, None, g)},
    )
    registrar.commit()
    described = registrar._table["t"].quality["t"].describe()
    assert described == "partial(tests.test_score_version._good, args=(), scale=0.5)" or (
        described == "partial(test_score_version._good, args=(), scale=0.5)"
    )


# -- searches ----------------------------------------------------------------------------------

SPACE = """
template = "dcgan"
image_size = 8
width = 8
latent_dim = 8

[fixed]
batch_size = 32

[choices]
d_norm = ["batchnorm", "none"]
lr = { low = 1e-4, high = 1e-3, log = true }
"""


@pytest.fixture
def search_config(tmp_path, tmp_path_factory, monkeypatch):
    from ganarch.search import SearchConfig, TrialSettings, load_space

    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    space = tmp_path / "tiny.toml"
    space.write_text(SPACE)

    def make(**kw) -> SearchConfig:
        settings = TrialSettings(
            data="digits", steps=4, device="cpu", out=str(tmp_path / "runs"), eval_every=4,
            n_eval=64,
        )  # fmt: skip
        return SearchConfig(
            space=load_space(space),
            settings=settings,
            study_name="s",
            storage=str(tmp_path / "s.journal"),
            sampler="random",
            pruner="none",
            **kw,
        )

    return make


class Sharp:
    """A weighted metric registered in code (no entry point)."""

    @ganarch.hookimpl
    def ganarch_register_metrics(self, registrar):
        registrar.add(
            "sharp", fn=lambda ctx: {"sharp": 0.4}, higher_is_better=True, quality={"sharp": 0.3}
        )


def test_workers_that_would_score_without_a_code_registered_term_refuse(
    plugin_state, search_config, capfd
):
    from ganarch.search import run_search

    plugin_state(Sharp(), name="sharp")
    cfg = search_config(trials=2, workers=2)
    with pytest.raises(GanarchError, match="rejected the input"):
        run_search(cfg)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "scores with" in line]
    assert len(lines) == 2, err  # each worker: one line, exit 2, before any trial
    assert f"scores with {SCORE_VERSION!r} but the study records" in lines[0]
    assert "not seen by --workers processes" in lines[0] and "entry point" in lines[0]
    study = optuna.load_study(study_name="s", storage=open_storage(cfg.storage))
    assert study.trials == []


def _flaky(fail: set[int]):
    calls = {"n": 0}

    def fn(ctx):
        calls["n"] += 1
        if calls["n"] in fail:
            raise ValueError("metric server unreachable")
        return {"sharp": 0.4}

    class Flaky:
        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar):
            registrar.add("sharp", fn=fn, higher_is_better=True, quality={"sharp": 0.3})

    return Flaky()


def test_a_failing_weighted_metric_fails_the_trial_without_a_score(plugin_state, search_config):
    from ganarch.search import run_search
    from ganarch.search.objective import FAILED_CONSTRAINT

    plugin_state(_flaky({1}), name="flaky")  # the first evaluation fails, the rest work
    cfg = search_config(trials=2)
    summary = run_search(cfg)
    study = optuna.load_study(study_name="s", storage=open_storage(cfg.storage))
    first, *rest = study.trials
    assert first.state == optuna.trial.TrialState.FAIL and first.values is None
    assert first.constraints[FAILED_CONSTRAINT] > 0  # infeasible, and no penalty value
    assert "quality" not in first.user_attrs and "objective" not in first.user_attrs
    assert first.user_attrs["failure"].startswith(
        "plugin metric: metric 'sharp' of plugin 'flaky' failed: ValueError: metric server"
    )
    # the study went on: the configuration ran again (queued first), then a new one
    assert [t.state.name for t in rest] == ["COMPLETE", "COMPLETE"]
    assert rest[0].params == first.params and rest[0].user_attrs["retry_of"] == first.number
    assert summary.trial_counts["complete"] == 2 and summary.trial_counts["interrupted"] == 1


def test_a_metric_that_fails_every_trial_stops_the_search(plugin_state, search_config):
    from ganarch.search import run_search
    from ganarch.search.objective import METRIC_FAILURES_IN_A_ROW

    plugin_state(_flaky(set(range(1, 100))), name="flaky")
    cfg = search_config(trials=5)
    with pytest.raises(MetricFailure, match="failed in 3 trials in a row") as err:
        run_search(cfg)
    assert "\n" not in str(err.value)
    study = optuna.load_study(study_name="s", storage=open_storage(cfg.storage))
    # the last one is queued to run again once the plugin is fixed
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL"] * METRIC_FAILURES_IN_A_ROW + ["WAITING"]
