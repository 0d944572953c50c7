"""One settings object for a run (``RunSettings``), one result type to the trial's record
(``Scored``), the exploding-loss rule owned by the stability scorer, and a search's geometry
resolved once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

import ganarch
import ganarch.run as run_module
from ganarch import dcgan_spec
from ganarch.data import load_dataset
from ganarch.errors import GanarchError
from ganarch.fused import fit_seeds
from ganarch.run import Scored, SeedsResult, TrainResult, train, train_seeds
from ganarch.score import stability
from ganarch.search import TrialSettings
from ganarch.search import engine as engine_module
from ganarch.search.geometry import Geometry
from ganarch.search.space import load_space
from ganarch.search.storage import open_storage
from ganarch.search.study import SETTINGS_ATTR, SearchConfig, run_search
from ganarch.settings import RunSettings
from ganarch.stepper import StepOptions
from ganarch.training import fit

SIZE = 16
TINY = {"batch_size": 32}


def _spec():
    return dcgan_spec(SIZE, channels=1, width=8)


@pytest.fixture(autouse=True)
def _one_thread(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", SIZE, 1)


@pytest.fixture(scope="module")
def evaluator(data, tmp_path_factory):
    from ganarch.score import Evaluator

    return Evaluator(data, device="cpu", cache_dir=tmp_path_factory.getbasetemp() / "features")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pairs = zip(a.state_dict().items(), b.state_dict().items(), strict=True)
    return all(ka == kb and torch.equal(x, y) for (ka, x), (kb, y) in pairs)


# --- the settings object -----------------------------------------------------------------------


def test_train_with_keyword_arguments_and_with_settings_is_the_same_run_bit_for_bit(
    tmp_path, data, evaluator
):
    kw = dict(device="cpu", eval_every=4, n_eval=64, training=TINY, progress=False)
    old = train(_spec(), data, 8, seed=5, evaluator=evaluator, out_dir=tmp_path / "a", **kw)
    settings = RunSettings(steps=8, seeds=(5,), **kw)
    new = train(_spec(), data, evaluator=evaluator, out_dir=tmp_path / "b", settings=settings)
    assert isinstance(new, TrainResult) and isinstance(new, Scored)
    assert _same_weights(old.generator, new.generator)
    assert _same_weights(old.discriminator, new.discriminator)
    assert old.history == new.history  # losses, D outputs and every metric, exactly
    assert (old.objective, old.quality, old.stability) == (
        new.objective,
        new.quality,
        new.stability,
    )
    assert new.spec.training.batch_size == 32 and new.seed == 5 and new.steps == 8


def test_train_seeds_with_settings_equals_the_keyword_form(data, evaluator):
    kw = dict(device="cpu", eval_every=3, n_eval=64, training=TINY, progress=False)
    old = train_seeds(_spec(), data, 6, seeds=(0, 1), evaluator=evaluator, **kw)
    settings = RunSettings(steps=6, seeds=(0, 1), **kw)
    new = train_seeds(_spec(), data, evaluator=evaluator, settings=settings)
    assert isinstance(new, SeedsResult) and isinstance(new, Scored)
    assert [r.seed for r in new.results] == [0, 1]
    for a, b in zip(old.results, new.results, strict=True):
        assert _same_weights(a.generator, b.generator) and a.history == b.history
    assert old.objective == new.objective and new.seed_objectives == old.seed_objectives


def test_fit_and_fit_seeds_take_the_same_settings(data):
    settings = RunSettings(
        steps=6, seeds=(2,), device="cpu", eval_every=3, n_eval=64, training=TINY, progress=False
    )
    alone = fit(_spec(), data, settings=settings)
    kw = fit(_spec(), data, 6, seed=2, device="cpu", eval_every=3, n_eval=64, training=TINY,
             progress=False)  # fmt: skip
    assert _same_weights(alone.generator, kw.generator) and alone.history == kw.history
    sequential = settings.replace(seeds=(2, 3), options=StepOptions(fused_seeds="off"))
    both = fit_seeds(_spec(), data, settings=sequential)
    assert [r.seed for r in both] == [2, 3]
    assert _same_weights(both[0].generator, alone.generator)  # seed 2 as trained alone


def test_settings_and_keyword_arguments_together_are_refused(data):
    settings = RunSettings(steps=4, device="cpu", progress=False)
    with pytest.raises(GanarchError, match=r"not both \(also given: n_eval\)"):
        train(_spec(), data, settings=settings, n_eval=64)
    with pytest.raises(GanarchError, match="steps"):
        fit(_spec(), data, 5, settings=settings)
    with pytest.raises(GanarchError, match="one seed"):
        fit(_spec(), data, settings=settings.replace(seeds=(0, 1)))
    # A keyword passed with its default value is still passed: refused, by the name typed.
    other = settings.replace(seeds=(5,))
    for call, keyword in (
        (lambda: fit(_spec(), data, seed=0, settings=other), "seed"),
        (lambda: train(_spec(), data, seed=0, settings=other), "seed"),
        (lambda: train(_spec(), data, 1000, settings=other), "steps"),
        (lambda: train(_spec(), data, progress=True, settings=other), "progress"),
        (lambda: train_seeds(_spec(), data, seeds=(0, 1, 2), settings=other), "seeds"),
        (lambda: fit_seeds(_spec(), data, n_eval=1000, settings=other), "n_eval"),
    ):
        with pytest.raises(GanarchError, match=rf"not both \(also given: {keyword}\)$"):
            call()


def test_settings_refuse_bad_values_with_one_line_naming_them():
    for bad, match in (
        (dict(steps=0), "steps must be a positive integer"),
        (dict(seeds=(1, 1)), "seeds must be distinct"),
        (dict(seeds=()), "at least one seed"),
        (dict(seeds=3), "sequence of integers"),
        (dict(seeds=("a",)), "seed must be an integer"),
        (dict(n_eval=5), "n_eval"),
        (dict(eval_every=0), "eval_every"),
        (dict(exploding_loss=-1.0), "exploding_loss"),
        (dict(options="bf16"), "StepOptions"),
    ):
        with pytest.raises(GanarchError, match=match):
            RunSettings(**bad)
    s = RunSettings(steps=1000, training={"lr_d": 1e-4})
    assert s.every == 200 and s.seed == 0 and s.for_seed(7).seeds == (7,)
    assert ganarch.RunSettings is RunSettings


# --- the exploding-loss rule -------------------------------------------------------------------


def test_the_trainer_stops_by_the_stability_scorers_threshold(data, evaluator, monkeypatch):
    import ganarch.training as training

    assert not hasattr(training, "EXPLODING_LOSS")  # the trainer has no rule of its own
    seen: list[RunSettings] = []
    real_fit = run_module.fit

    def spy(*args, settings, **kw):
        seen.append(settings)
        return real_fit(*args, settings=settings, **kw)

    monkeypatch.setattr(run_module, "fit", spy)
    train(_spec(), data, 2, device="cpu", n_eval=64, training=TINY, progress=False,
          evaluator=evaluator)  # fmt: skip
    assert seen[-1].exploding_loss == stability.EXPLODING_LOSS

    # the rule as the trainer applies it: a loss above the threshold stops the run there,
    # and the scorer reads that history as diverged by the same comparison
    low = RunSettings(steps=4, device="cpu", eval_every=2, n_eval=64, training=TINY,
                      progress=False, exploding_loss=0.01)  # fmt: skip
    r = fit(_spec(), data, settings=low)
    assert r.diverged and r.failure == "exploding loss" and r.steps_done == 2
    assert max(r.history[-1]["loss_d"], r.history[-1]["loss_g"]) > 0.01
    unset = fit(_spec(), data, settings=low.replace(exploding_loss=None))
    assert not unset.diverged  # the same losses: only the scorer's rule called them exploding

    # Through train: the stricter threshold moves only where the run stops; the scorer judges
    # the history by its own EXPLODING_LOSS, so the run is not diverged (nor scored 0 for it).
    strict = train(_spec(), data, settings=low, evaluator=evaluator)
    assert strict.steps_done == 2 and strict.history[-1]["failure"] == "exploding loss"
    assert not strict.diverged and strict.failure is None
    assert strict.stability_components["diverged"] is False


# --- one geometry for a search -----------------------------------------------------------------

SPACE = """
template = "dcgan"
image_size = 16
width = 8
latent_dim = 8

[fixed]
batch_size = 32

[choices]
beta1 = [0.5, 0.9]
"""


def test_a_search_resolves_its_geometry_once_and_every_part_uses_it(tmp_path, monkeypatch):
    space_file = tmp_path / "geo.toml"
    space_file.write_text(SPACE)
    calls: list[Geometry] = []
    real_resolve = Geometry.resolve.__func__

    def counted(cls, settings, space):
        calls.append(real_resolve(cls, settings, space))
        return calls[-1]

    monkeypatch.setattr(Geometry, "resolve", classmethod(counted))
    used: list[Geometry] = []
    real_train = engine_module.Engine.train

    def spy(self, spec, **kw):
        used.append(self.geometry)
        return real_train(self, spec, **kw)

    monkeypatch.setattr(engine_module.Engine, "train", spy)
    # the space says 16×16; the flag says 8×8; digits are grey: channels 1 (not given)
    settings = TrialSettings(data="digits", steps=2, device="cpu", out=str(tmp_path / "runs"),
                             n_eval=64, image_size=8)  # fmt: skip
    cfg = SearchConfig(
        space=load_space(space_file),
        settings=settings,
        study_name="geo",
        storage=str(tmp_path / "s.journal"),
        trials=1,
        sampler="random",
        pruner="none",
    )
    run_search(cfg)
    want = Geometry(image_size=8, channels=1, width=8, latent_dim=8)
    assert cfg.geometry == want and len(calls) == 1  # resolved once
    assert used and all(g is cfg.geometry for g in used)  # the engine's is the config's
    study = optuna.load_study(study_name="geo", storage=open_storage(cfg.storage))
    record = study.user_attrs[SETTINGS_ATTR]
    assert {k: record[k] for k in want.to_dict()} == want.to_dict()
    trial = study.trials[0]
    spec = trial.user_attrs["spec"]
    assert (spec["image_size"], spec["channels"], spec["latent_dim"]) == (8, 1, 8)
    assert trial.user_attrs["seed_objectives"] == [trial.user_attrs["objective"]]
    saved = ganarch.load_spec(Path(trial.user_attrs["artifacts"]) / "spec.json")
    assert (saved.image_size, saved.channels) == (8, 1)


def test_a_study_recorded_before_channels_were_resolved_still_resumes(tmp_path):
    import dataclasses

    space_file = tmp_path / "geo.toml"
    space_file.write_text(SPACE.replace("image_size = 16", "image_size = 8"))
    cfg = SearchConfig(
        space=load_space(space_file),
        settings=TrialSettings(
            data="digits", steps=2, device="cpu", out=str(tmp_path / "r"), n_eval=64
        ),
        study_name="old",
        storage=str(tmp_path / "s.journal"),
        trials=1,
        sampler="random",
        pruner="none",
    )
    run_search(cfg)
    study = optuna.load_study(study_name="old", storage=open_storage(cfg.storage))
    record = dict(study.user_attrs[SETTINGS_ATTR])
    assert record["channels"] == 1
    # how an earlier version recorded "the dataset's own": the study must still resume
    study.set_user_attr(SETTINGS_ATTR, {**record, "channels": None})
    summary = run_search(dataclasses.replace(cfg, trials=2))
    study = optuna.load_study(study_name="old", storage=open_storage(cfg.storage))
    assert summary.ran == 1 and [t.state.name for t in study.trials] == ["COMPLETE"] * 2
