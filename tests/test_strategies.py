"""Samplers and pruners as plugins (``ganarch_register_samplers``, ``ganarch_register_pruners``):
the built-ins keep their settings, a plugin's sampler or pruner runs a real (tiny) study from
Python and from the command line, the registrars check what they are given, and the analysis
layer reads studies through ``ganarch.search.results`` only.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path
from typing import ClassVar

import optuna
import pytest
import torch
from typer.testing import CliRunner

import ganarch
from ganarch.cli import app
from ganarch.errors import GanarchError
from ganarch.plugin import manager
from ganarch.search import TrialSettings, load_space
from ganarch.search.strategies import (
    StrategyContext,
    get_pruner,
    get_sampler,
    pruners,
    samplers,
)
from ganarch.search.study import make_pruner, make_sampler

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

SPACE = """
template = "dcgan"
image_size = 8
width = 8
latent_dim = 8

[fixed]
batch_size = 32

[choices]
g_upsample = ["tconv", "nearest_conv"]
lr = { low = 1e-4, high = 1e-3, log = true }
"""


@pytest.fixture
def tiny(tmp_path, tmp_path_factory, monkeypatch) -> Path:
    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path / "tiny.toml"
    path.write_text(SPACE)
    yield path
    torch.set_num_threads(threads)


def _settings(**kw) -> TrialSettings:
    return TrialSettings(**{"data": "digits", "steps": 12, "device": "cpu", **kw})


# -- the built-ins -------------------------------------------------------------------------------


def test_the_built_in_samplers_and_pruners_are_registered_by_the_built_in_plugin() -> None:
    assert set(samplers()) == {
        "tpe",
        "random",
        "grid",
        "qmc",
        "nsga2",
        "fractional",
        "fractional32",
        "factorial",
    }
    assert set(pruners()) == {"hyperband", "median", "none"}
    assert {i.plugin for i in [*samplers().values(), *pruners().values()]} == {"builtin"}
    designs = {n for n, i in samplers().items() if i.is_design}
    assert designs == {"fractional", "fractional32", "factorial"}
    assert all(i.description for i in [*samplers().values(), *pruners().values()])
    assert set(ganarch.search.SAMPLERS) == set(samplers())  # the public tuples, computed
    assert set(ganarch.search.PRUNERS) == set(pruners())


def test_the_built_ins_keep_their_seeds_and_settings() -> None:
    """What ``make_sampler``/``make_pruner`` made before they moved into a plugin."""
    space = load_space("quick")
    s = _settings(steps=1000, seeds=2, eval_every=100)

    def sampler(name: str, trials: int = 30):
        return make_sampler(name, space, seed=7, trials=trials, settings=s)

    tpe = sampler("tpe")
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 10
    assert sampler("tpe", trials=6)._n_startup_trials == 3
    nsga2 = sampler("nsga2", trials=30)
    assert isinstance(nsga2, optuna.samplers.NSGAIISampler) and nsga2._population_size == 10
    assert isinstance(sampler("random"), optuna.samplers.RandomSampler)
    assert isinstance(sampler("qmc"), optuna.samplers.QMCSampler)
    # the same seed proposes the same values as Optuna's sampler made directly
    ours = optuna.create_study(sampler=sampler("random"))
    theirs = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    assert [ours.ask().suggest_float("x", 0, 1) for _ in range(3)] == [
        theirs.ask().suggest_float("x", 0, 1) for _ in range(3)
    ]
    # pruners: seed-steps (steps × seeds = 2000), nothing pruned before half of them
    hb = make_pruner("hyperband", s, multi=False)
    assert isinstance(hb, optuna.pruners.HyperbandPruner)
    assert (hb._min_resource, hb._max_resource, hb._reduction_factor) == (1000, 2000, 3)
    med = make_pruner("median", s, multi=False)
    assert isinstance(med, optuna.pruners.MedianPruner)
    assert (med._n_startup_trials, med._n_warmup_steps) == (4, 999)
    assert isinstance(make_pruner("none", s, multi=False), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("hyperband", s, multi=True), optuna.pruners.NopPruner)


def test_the_command_line_help_loads_neither_optuna_nor_torch() -> None:
    code = (
        "import sys\nfrom ganarch.cli import main\nsys.argv = ['ganarch', 'search', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted({'torch', 'optuna', 'ganarch_plugins'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--sampler" in proc.stdout and "LOADED []" in proc.stdout


# -- unknown names ---------------------------------------------------------------------------------


def test_an_unknown_name_is_one_line_naming_the_closest() -> None:
    with pytest.raises(GanarchError) as refused:
        get_sampler("tpee")
    assert str(refused.value) == (
        "--sampler: 'tpee' is not one of the registered samplers; did you mean 'tpe'?"
    )
    with pytest.raises(GanarchError, match=r"--pruner: 'medain' .* did you mean 'median'"):
        get_pruner("medain")
    result = runner.invoke(app, ["search", "--sampler", "nsga", "--trials", "1"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean 'nsga2'" in lines[0]


def test_a_sampler_of_a_plugin_that_failed_is_named_with_its_plugin(plugin_state) -> None:
    class Broken:
        @ganarch.hookimpl
        def ganarch_register_samplers(self, registrar):
            registrar.add("cmaes", factory=lambda ctx: None)
            raise RuntimeError("no cma package")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plugin_state(Broken(), name="broken")
        assert "cmaes" not in samplers()
        with pytest.raises(GanarchError) as refused:
            get_sampler("cmaes")
    text = str(refused.value)
    assert text.startswith("--sampler: 'cmaes' is not available: plugin 'broken'")
    assert "no cma package" in text


# -- registrar checks ------------------------------------------------------------------------------


def _registering(hook: str, *calls):
    class Plugin:
        pass

    def impl(self, registrar):
        for args, kwargs in calls:
            registrar.add(*args, **kwargs)

    impl.__name__ = hook
    setattr(Plugin, hook, ganarch.hookimpl(impl))
    return Plugin()


def _error_of(plugin_state, plugin) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plugin_state(plugin, name="mine")
        samplers(), pruners()
    return next(i.error for i in manager.plugins() if i.name == "mine") or ""


def _ok(ctx):
    return optuna.samplers.RandomSampler(seed=ctx.seed)


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        (("Mine",), {"factory": _ok}, "sampler name must be a lower-case word"),
        (("my sampler",), {"factory": _ok}, "sampler name must be a lower-case word"),
        ((3,), {"factory": _ok}, "sampler name must be"),
        (("mine",), {"factory": "tpe"}, "factory of sampler 'mine' is not callable"),
        (("mine",), {"factory": _ok, "design_runs": 16}, "design_runs of sampler 'mine'"),
        (("mine",), {"factory": _ok, "check": True}, "check of sampler 'mine' is not callable"),
        (("mine",), {"factory": _ok, "description": 5}, "description of 'mine' must be text"),
    ],
)
def test_the_sampler_registrar_checks_what_it_is_given(plugin_state, args, kwargs, says) -> None:
    error = _error_of(plugin_state, _registering("ganarch_register_samplers", (args, kwargs)))
    assert says in error
    assert "mine" not in samplers() and "tpe" in samplers()  # the rest keep working


def test_the_pruner_registrar_checks_its_factory(plugin_state) -> None:
    bad = _registering("ganarch_register_pruners", (("stop",), {"factory": None}))
    assert "factory of pruner 'stop' is not callable" in _error_of(plugin_state, bad)
    assert "stop" not in pruners() and "median" in pruners()


def test_a_duplicate_name_is_refused_naming_both_plugins(plugin_state) -> None:
    twice = _registering(
        "ganarch_register_samplers",
        (("tpe",), {"factory": _ok}),  # the built-in's name
        (("mine",), {"factory": _ok}),
    )
    error = _error_of(plugin_state, twice)
    assert "sampler 'tpe' is registered twice: by plugin 'builtin' and plugin 'mine'" in error
    assert "mine" not in samplers()  # nothing of the failed plugin is added
    assert samplers()["tpe"].plugin == "builtin"


def test_a_name_registered_twice_by_one_plugin_is_refused(plugin_state) -> None:
    twice = _registering(
        "ganarch_register_pruners",
        (("stop",), {"factory": lambda ctx: None}),
        (("stop",), {"factory": lambda ctx: None}),
    )
    assert "pruner 'stop' is registered twice" in _error_of(plugin_state, twice)
    assert "stop" not in pruners()


# -- a plugin's sampler and pruner, end to end -----------------------------------------------------


class Recording(optuna.samplers.RandomSampler):
    """A random sampler that counts what it sampled (proof that the study used it)."""

    calls = 0

    def sample_independent(self, study, trial, param_name, param_distribution):
        Recording.calls += 1
        return super().sample_independent(study, trial, param_name, param_distribution)


class MyStrategies:
    contexts: ClassVar[list[StrategyContext]] = []

    @ganarch.hookimpl
    def ganarch_register_samplers(self, registrar):
        def recording(ctx: StrategyContext):
            """Random draws, counted."""
            MyStrategies.contexts.append(ctx)
            return Recording(seed=ctx.seed)

        registrar.add("recording", factory=recording)

    @ganarch.hookimpl
    def ganarch_register_pruners(self, registrar):
        def at_once(ctx: StrategyContext):
            """Prune every trial at its first report."""
            MyStrategies.contexts.append(ctx)
            return optuna.pruners.ThresholdPruner(lower=float("inf"))

        registrar.add("at-once", factory=at_once)


def test_a_plugins_sampler_runs_a_study_from_python(tiny, tmp_path, plugin_state) -> None:
    plugin_state(MyStrategies(), name="my-strategies")
    MyStrategies.contexts.clear()
    Recording.calls = 0
    study = ganarch.search(
        tiny,
        data="digits",
        trials=2,
        steps=8,
        eval_every=8,
        sampler="recording",
        pruner="none",
        device="cpu",
        storage=tmp_path / "s.journal",
        out=tmp_path / "runs",
        quiet=True,
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.user_attrs["sampler"] == "recording"
    assert Recording.calls >= 2  # lr at least, once per trial
    ctx = MyStrategies.contexts[0]
    assert (ctx.name, ctx.trials, ctx.space.name, ctx.multi) == ("recording", 2, "tiny", False)
    assert isinstance(ctx.seed, int) and ctx.settings.steps == 8


def test_a_plugins_pruner_prunes_a_study_from_the_command_line(tiny, tmp_path, plugin_state):
    plugin_state(MyStrategies(), name="my-strategies")
    MyStrategies.contexts.clear()
    storage = tmp_path / "s.journal"
    result = runner.invoke(
        app,
        [
            "search",
            "--space",
            str(tiny),
            "--trials",
            "2",
            "--steps",
            "8",
            "--eval-every",
            "4",
            "--sampler",
            "random",
            "--pruner",
            "at-once",
            "--device",
            "cpu",
            "--storage",
            str(storage),
            "--out",
            str(tmp_path / "runs"),
            "--quiet",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    study = ganarch.load_study("tiny-digits", storage)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert all(max(t.intermediate_values) == 4 for t in study.trials)  # at the first report
    assert study.user_attrs["pruner"] == "at-once"
    ctx = next(c for c in MyStrategies.contexts if c.name == "at-once")
    assert (ctx.budget, ctx.eval_every) == (8, 4)


# -- Optuna behind one boundary ------------------------------------------------------------------


def test_the_analysis_layer_imports_no_optuna() -> None:
    """Analysis reads studies through ``ganarch.search.results``, the search layer's door."""
    found = []
    for path in sorted((ROOT / "ganarch" / "analysis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            found += [
                f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "optuna"
            ]
    assert not found, found


def test_what_changed_is_measured_against_the_template_and_its_training_defaults() -> None:
    """``ganarch best`` and the report both show a trial as what differs from its template."""
    from ganarch.search.results import changed_choices
    from ganarch.spec import TrainingSpec
    from ganarch.templates import get_template

    paper = {**get_template("dcgan").defaults, **TrainingSpec().to_dict()}
    assert changed_choices(paper, "dcgan") == {}  # the paper's DCGAN, training included
    moved = {**paper, "d_norm": "none", "beta1": 0.9, "d_activation_params": {"slope": 0.1}}
    assert changed_choices(moved, "dcgan") == {
        "d_norm": "none",
        "beta1": 0.9,
        "d_activation_params": {"slope": 0.1},  # not a declared choice: always shown
    }
    assert changed_choices({"g_norm": "batchnorm"}, "uninstalled") == {"g_norm": "batchnorm"}
