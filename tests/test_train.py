"""The trainer: run directory, determinism, refusals, on_eval, divergence; stability and
objective formulas; the ``train`` command."""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import ganarch.cli
from ganarch import dcgan_spec, hookimpl
from ganarch.builder import load_spec
from ganarch.cli import train as train_cli
from ganarch.data import load_dataset
from ganarch.errors import GanarchError
from ganarch.run import default_eval_every, train, train_seeds
from ganarch.score import stability as st
from ganarch.score.objective import objective

SIZE = 16
TINY = {"batch_size": 32}
ARTIFACTS = (
    "spec.json",
    "metrics.json",
    "samples.png",
    "curves.png",
    "generator.pt",
    "discriminator.pt",
)


def _spec(**choices):
    return dcgan_spec(SIZE, channels=1, width=8, **choices)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", SIZE, 1)


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    """One feature-net cache per test session, shared by the modules that score digits."""
    return tmp_path_factory.getbasetemp() / "feature-cache"


@pytest.fixture(scope="module")
def evaluator(data, feature_cache):
    from ganarch.score import Evaluator

    return Evaluator(data, device="cpu", cache_dir=feature_cache)


def _train(data, evaluator, steps=20, **kw):
    kw.setdefault("training", TINY)
    kw.setdefault("device", "cpu")
    kw.setdefault("n_eval", 200)
    kw.setdefault("progress", False)
    return train(_spec(), data, steps, evaluator=evaluator, **kw)


# --- the run directory ----------------------------------------------------------------------


def test_run_dir_has_every_artifact(tmp_path, data, evaluator, capsys):
    out = tmp_path / "run"
    result = _train(data, evaluator, steps=20, eval_every=10, seed=3, out_dir=out, progress=True)
    assert "20/20" in capsys.readouterr().err  # the progress bar, on stderr
    for name in (*ARTIFACTS, "samples_step10.png", "samples_step20.png"):
        assert (out / name).is_file(), name

    m = json.loads((out / "metrics.json").read_text())
    assert m["finished"] is True and m["seed"] == 3 and m["steps"] == 20
    assert m["device"] == "cpu" and m["versions"]["torch"] == torch.__version__
    assert [h["step"] for h in m["history"]] == [10, 20]
    assert m["objective"] == pytest.approx(result.objective)
    assert 0 <= m["quality"] <= 1 and 0 <= m["stability"] <= 1
    assert m["metrics"] and m["seconds"] > 0
    assert m["training"]["batch_size"] == 32

    # The saved spec carries the training settings actually used (the override).
    spec = load_spec(out / "spec.json")
    assert spec.training.batch_size == 32 and spec == result.spec
    G, D = spec.build(init=False)
    G.load_state_dict(torch.load(out / "generator.pt", weights_only=True))
    D.load_state_dict(torch.load(out / "discriminator.pt", weights_only=True))
    z = torch.randn(4, spec.latent_dim)
    G.eval(), result.generator.eval()
    assert torch.equal(G(z), result.generator(z))

    with Image.open(out / "samples.png") as img:
        assert img.width >= 512 and img.mode == "L"


def test_refuses_a_non_empty_run_dir(tmp_path, data, evaluator):
    out = tmp_path / "run"
    out.mkdir()  # an empty folder is fine (the ablation makes its folders first)
    _train(data, evaluator, steps=2, out_dir=out)
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(GanarchError, match="not empty"):
        _train(data, evaluator, steps=2, out_dir=out, seed=1)
    assert (out / "metrics.json").read_bytes() == before
    (out / "notes.txt").write_text("mine")
    _train(data, evaluator, steps=4, eval_every=2, out_dir=out, seed=1, overwrite=True)
    m = json.loads((out / "metrics.json").read_text())
    assert m["seed"] == 1 and (out / "notes.txt").read_text() == "mine"
    assert not (out / "samples_step1.png").exists()


def test_bad_arguments_are_errors(data, evaluator):
    for kw in ({"steps": 0}, {"steps": 2, "eval_every": 0}, {"steps": 2, "device": "tpu"}):
        with pytest.raises(GanarchError):
            _train(data, evaluator, **kw)
    with pytest.raises(GanarchError, match="16×16"):
        train(dcgan_spec(8, 1, width=8), data, 2, device="cpu", evaluator=evaluator)


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_same_result_other_seed_differs(data, evaluator):
    a = _train(data, evaluator, steps=12, eval_every=6, seed=5)
    b = _train(data, evaluator, steps=12, eval_every=6, seed=5)
    c = _train(data, evaluator, steps=12, eval_every=6, seed=6)

    def losses(r):
        return [(h["loss_d"], h["loss_g"], h["quality"]) for h in r.history]

    assert losses(a) == losses(b)
    sa, sb, sc = (r.generator.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert losses(a) != losses(c)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# --- evaluation callbacks --------------------------------------------------------------------


def test_on_eval_gets_increasing_steps_and_its_errors_propagate(data, evaluator):
    seen = []
    result = _train(
        data, evaluator, steps=12, eval_every=5, on_eval=lambda s, r: seen.append((s, r))
    )
    assert [s for s, _ in seen] == [5, 10, 12]
    for step, rec in seen:
        assert rec["step"] == step
        for key in ("quality", "stability", "objective", "loss_d", "loss_g", "d_real", "d_fake"):
            assert math.isfinite(rec[key]), key
        assert isinstance(rec["metrics"], dict)
    assert seen[-1][1]["quality"] == pytest.approx(result.quality)
    assert default_eval_every(1000) == 200 and default_eval_every(3) == 1

    class Stop(Exception):
        pass

    def stop(step, rec):
        raise Stop(step)

    with pytest.raises(Stop):
        _train(data, evaluator, steps=10, eval_every=5, on_eval=stop)


# --- divergence -----------------------------------------------------------------------------


def test_huge_learning_rate_diverges_without_raising(tmp_path, data, evaluator):
    result = _train(
        data,
        evaluator,
        steps=30,
        training={"batch_size": 32, "lr_g": 50.0, "lr_d": 50.0},
        eval_every=5,
        out_dir=tmp_path / "run",
    )
    assert result.diverged and result.failure in ("nan", "exploding loss")
    assert result.stability == 0 and result.objective == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["diverged"] is True and m["objective"] == 0


class NaNPlugin:
    @hookimpl
    def ganarch_register_blocks(self, registrar):
        class MakeNaN(nn.Module):
            def forward(self, x):
                return x * float("nan")

        registrar.add("make_nan", kind="activation", factory=lambda in_shape: MakeNaN())


def test_a_block_producing_nan_is_reported_as_diverged(plugin_state, data, evaluator):
    plugin_state(NaNPlugin(), name="nan")
    spec = dcgan_spec(SIZE, channels=1, width=8, d_activation="make_nan")
    result = train(spec, data, 6, device="cpu", evaluator=evaluator, training=TINY, progress=False)
    assert result.diverged and result.failure == "nan"
    assert result.steps_done == default_eval_every(6)  # stopped at the first evaluation
    assert result.stability == 0 and result.objective == 0


# --- several seeds --------------------------------------------------------------------------


def test_train_seeds_adds_the_spread(tmp_path, data, evaluator):
    res = train_seeds(
        _spec(),
        data,
        6,
        seeds=[0, 1],
        device="cpu",
        evaluator=evaluator,
        training=TINY,
        out_dir=tmp_path / "seeds",
        progress=False,
    )
    assert [r.seed for r in res.results] == [0, 1]
    assert res.quality == pytest.approx(sum(r.quality for r in res.results) / 2)
    assert res.stability_components["seed_spread"] is not None
    assert res.objective == pytest.approx(objective(res.quality, res.stability))
    for s in (0, 1):
        assert (tmp_path / "seeds" / f"seed-{s}" / "samples.png").is_file()
    assert json.loads((tmp_path / "seeds" / "metrics.json").read_text())["seeds"] == [0, 1]


# --- stability and objective formulas (pure) -------------------------------------------------


def _rec(step, q, d_real=0.6, d_fake=0.4, loss_d=1.2, loss_g=0.9):
    return {
        "step": step,
        "quality": q,
        "d_real": d_real,
        "d_fake": d_fake,
        "loss_d": loss_d,
        "loss_g": loss_g,
    }


def test_stability_components():
    steady = [_rec(i, 0.2 + 0.1 * i) for i in range(6)]
    s = st.stability(steady)
    assert s["stability"] == pytest.approx(1.0) and s["oscillation"] == pytest.approx(0.0)
    assert s["gap"] == 0 and s["saturation"] == 0 and not s["diverged"]

    zigzag = [_rec(i, q) for i, q in enumerate([0.5, 0.6, 0.4, 0.6, 0.4, 0.6])]
    assert st.oscillation(zigzag) > 0.5

    fell = [_rec(0, 0.8), _rec(1, 0.4)]
    assert st.quality_gap(fell)["gap"] == pytest.approx(0.5)

    saturated = [_rec(i, 0.3, d_real=0.99, d_fake=0.01) for i in range(4)]
    sat = st.saturation([_rec(0, 0.3), *saturated])
    assert sat["saturation"] == pytest.approx(0.8) and sat["saturated_longest"] == 4
    # One saturated evaluation in the middle is not a sustained stretch.
    blip = st.saturation([_rec(0, 0.3), _rec(1, 0.3, loss_d=0.001), _rec(2, 0.3)])
    assert blip["saturation"] == 0 and blip["saturated_fraction"] == pytest.approx(1 / 3)
    assert st.stability(saturated)["stability"] == pytest.approx(1 - 0.4 / 0.8)

    assert st.divergence([_rec(0, 0.3, loss_d=float("nan"))]) == "nan"
    assert st.divergence([_rec(0, 0.3, loss_g=1e4)]) == "exploding loss"
    assert st.stability([_rec(0, 0.3, loss_g=float("inf"))])["stability"] == 0

    assert st.seed_spread([0.5])["seed_spread"] is None
    assert st.seed_spread([0.5, 0.5])["seed_spread"] == 0
    agg = st.aggregate_seeds(
        [
            {**st.stability(steady), "quality": 0.6},
            {"diverged": True, "quality": 0.7, "stability": 0.0},
        ]
    )
    assert agg["quality"] == pytest.approx(0.3) and agg["diverged_seeds"] == 1
    assert 0 < agg["stability"] <= 0.5


def test_objective_formula():
    assert objective(0.8, 1.0) == pytest.approx(0.8)
    assert objective(0.8, 0.0) == pytest.approx(0.4)
    assert objective(0.8, 0.5) == pytest.approx(0.6)
    assert objective(0.8, 1.0, diverged=True) == 0
    assert objective(float("nan"), 1.0) == 0 and objective(None, None) == 0


# --- the command ----------------------------------------------------------------------------


def _app() -> typer.Typer:
    """The real app once the command is wired in; until then a fresh one with the same
    error handling."""
    if any(getattr(c, "name", None) == "train" for c in ganarch.cli.app.registered_commands):
        return ganarch.cli.app
    app = typer.Typer(cls=ganarch.cli._Group)
    app.callback()(lambda: None)
    train_cli.register(app)
    return app


def test_cli_trains_and_refuses_an_existing_run(tmp_path, evaluator, feature_cache, monkeypatch):
    # The command builds its own evaluator: point it at the feature net cached above.
    monkeypatch.setenv("GANARCH_CACHE", str(feature_cache))
    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "train",
        "dcgan:16",
        "--data",
        "digits",
        "--steps",
        "4",
        "--width",
        "8",
        "--set",
        "batch_size=16",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
    ]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 0, (res.output, res.exception)
    for name in ARTIFACTS:
        assert (out / name).is_file(), name
    assert "objective" in res.stdout
    assert load_spec(out / "spec.json").training.batch_size == 16

    again = runner.invoke(_app(), args)
    assert again.exit_code == 2 and "not empty" in again.stderr
    as_json = runner.invoke(_app(), [*args, "--overwrite", "--json", "--seed", "1"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["seed"] == 1

    for bad in (
        ["train", "nope.json"],
        ["train", "dcgan:16", "--set", "lr_x=1"],
        ["train", "dcgan:16", "--steps", "0"],
        ["train", "dcgan:12"],
        ["train", "dcgan:16", "--data", "nope"],
        # one past the last GPU: invalid on any machine (cuda:7 exists on an 8-GPU one)
        ["train", "dcgan:16", "--device", f"cuda:{torch.cuda.device_count()}"],
    ):
        res = runner.invoke(_app(), [*bad, "--out", str(tmp_path / "x"), "--quiet"])
        assert res.exit_code == 2, (bad, res.output)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not (tmp_path / "x").exists()  # bad input leaves no run directory behind
