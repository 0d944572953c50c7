"""Plugin code that fails in a sampler, a pruner or a template is the plugin's failure, not a
bug in ganarch: one line naming the plugin, what it was asked for and the exception, exit 2 on
the command line, and nothing written. A factory that returns no Optuna object is refused
rather than silently replaced by Optuna's defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from typer.testing import CliRunner

import ganarch
from ganarch.cli import app
from ganarch.dcgan import dcgan_spec
from ganarch.errors import GanarchError, PluginError, SpecError
from ganarch.search import TrialSettings, load_space
from ganarch.search.study import make_pruner, make_sampler
from ganarch.templates import get_template

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
d_norm = ["batchnorm", "none"]
"""


@pytest.fixture
def tiny(tmp_path, tmp_path_factory, monkeypatch) -> Path:
    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path / "tiny.toml"
    path.write_text(SPACE)
    yield path
    torch.set_num_threads(threads)


def _missing_package(ctx):
    import cmaes_not_installed  # noqa: F401  (the docs' CMA-ES example without `cmaes`)

    raise AssertionError("unreachable")


def _space_too_big(space):
    raise ValueError("needs\nat most 3 factors")  # a multi-line message still prints as one


def _refuses_on_purpose(space):
    raise GanarchError("--sampler picky: this space has a continuous choice")


class Strategies:
    """Samplers and pruners whose plugin code is broken in each way a user may meet."""

    @ganarch.hookimpl
    def ganarch_register_samplers(self, registrar) -> None:
        registrar.add("nothing", factory=lambda ctx: None)
        registrar.add("wrong", factory=lambda ctx: optuna.pruners.NopPruner())
        registrar.add("cmaes", factory=_missing_package)
        random = lambda ctx: optuna.samplers.RandomSampler(seed=ctx.seed)  # noqa: E731
        registrar.add("design", factory=random, design_runs=_space_too_big)
        registrar.add("checked", factory=random, check=_space_too_big)
        registrar.add("picky", factory=random, check=_refuses_on_purpose)

    @ganarch.hookimpl
    def ganarch_register_pruners(self, registrar) -> None:
        registrar.add("nothing", factory=lambda ctx: None)
        registrar.add("text", factory=lambda ctx: "median")
        registrar.add("flaky", factory=lambda ctx: {}["patience"])


def _settings() -> TrialSettings:
    return TrialSettings(data="digits", steps=8, device="cpu")


# -- a factory that returns no Optuna object (it would become TPE / the median pruner) ---------


@pytest.mark.parametrize(("name", "got"), [("nothing", "NoneType"), ("wrong", "NopPruner")])
def test_a_sampler_factory_that_returns_no_sampler_is_refused(plugin_state, name, got) -> None:
    plugin_state(Strategies(), name="mine")
    space = load_space("quick")
    with pytest.raises(PluginError) as refused:
        make_sampler(name, space, seed=1, trials=4, settings=_settings())
    assert str(refused.value) == (
        f"--sampler {name}: the factory of plugin 'mine' returned {got}, not an Optuna "
        "sampler (optuna.samplers._base.BaseSampler)"
    )


@pytest.mark.parametrize(("name", "got"), [("nothing", "NoneType"), ("text", "str")])
def test_a_pruner_factory_that_returns_no_pruner_is_refused(plugin_state, name, got) -> None:
    plugin_state(Strategies(), name="mine")
    with pytest.raises(PluginError) as refused:
        make_pruner(name, _settings(), multi=False)
    assert str(refused.value) == (
        f"--pruner {name}: the factory of plugin 'mine' returned {got}, not an Optuna "
        "pruner (optuna.pruners._base.BasePruner)"
    )


def test_search_with_a_factory_returning_nothing_exits_2_and_writes_nothing(
    tiny, tmp_path, plugin_state
) -> None:
    plugin_state(Strategies(), name="mine")
    result = runner.invoke(
        app,
        ["search", "--space", str(tiny), "--trials", "2", "--steps", "8", "--sampler", "nothing",
         "--device", "cpu", "--storage", "s.journal", "--out", "runs", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [
        "error: --sampler nothing: the factory of plugin 'mine' returned NoneType, not an "
        "Optuna sampler (optuna.samplers._base.BaseSampler)"
    ]
    assert not (tmp_path / "s.journal").exists()  # no study was created under its name
    assert not (tmp_path / "runs").exists()


# -- a factory, design_runs or check that raises ------------------------------------------------


def test_a_sampler_factory_missing_its_package_is_one_line_exit_2(
    tiny, tmp_path, plugin_state
) -> None:
    plugin_state(Strategies(), name="mine")
    result = runner.invoke(
        app,
        ["search", "--space", str(tiny), "--trials", "2", "--steps", "8", "--sampler", "cmaes",
         "--device", "cpu", "--storage", "s.journal", "--out", "runs", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: --sampler cmaes: the factory of plugin 'mine' failed: ModuleNotFoundError: "
        "No module named 'cmaes_not_installed'"
    ]
    assert not (tmp_path / "s.journal").exists()


def test_design_runs_that_raise_is_one_line_exit_2(tiny, plugin_state) -> None:
    plugin_state(Strategies(), name="mine")
    result = runner.invoke(
        app,
        ["search", "--space", str(tiny), "--sampler", "design", "--device", "cpu",
         "--storage", "s.journal", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: --sampler design: the design_runs of plugin 'mine' failed: ValueError: "
        "needs at most 3 factors"
    ]


def test_a_check_that_raises_is_a_plugin_error_from_python(tiny, tmp_path, plugin_state) -> None:
    plugin_state(Strategies(), name="mine")
    with pytest.raises(PluginError, match=r"^--sampler checked: the check of plugin 'mine' fa"):
        ganarch.search(tiny, data="digits", trials=2, steps=8, sampler="checked",
                       device="cpu", storage=tmp_path / "s.journal", quiet=True)  # fmt: skip
    # a GanarchError the check raises on purpose is the plugin's own message, as it is
    with pytest.raises(GanarchError) as refused:
        ganarch.search(tiny, data="digits", trials=2, steps=8, sampler="picky",
                       device="cpu", storage=tmp_path / "s.journal", quiet=True)  # fmt: skip
    assert type(refused.value) is GanarchError
    assert str(refused.value) == "--sampler picky: this space has a continuous choice"
    assert not (tmp_path / "s.journal").exists()


def test_a_pruner_factory_that_raises_is_a_plugin_error(plugin_state) -> None:
    plugin_state(Strategies(), name="mine")
    with pytest.raises(PluginError) as refused:
        make_pruner("flaky", _settings(), multi=False)
    assert str(refused.value) == (
        "--pruner flaky: the factory of plugin 'mine' failed: KeyError: 'patience'"
    )
    assert isinstance(refused.value.__cause__, KeyError)  # the original, for a debugger


# -- a template whose build raises -------------------------------------------------------------


def broken_spec(image_size: int, channels: int = 3, latent_dim: int = 8, width: int = 8,
                **choices: Any):  # fmt: skip
    """DCGAN, except where the plugin is broken (``wiring``) or refuses on purpose."""
    mode = choices.pop("mode", "broken")  # the template's default
    if mode == "broken":
        return {"generator": []}["discriminator"]  # a plugin bug: KeyError
    if mode == "refused":
        raise SpecError("mode", "this template refuses 'refused' on purpose")
    return dcgan_spec(image_size, channels, latent_dim, width, **choices)


class BrokenTemplate:
    @ganarch.hookimpl
    def ganarch_register_templates(self, registrar) -> None:
        registrar.add("brk", build=broken_spec, defaults={"mode": "broken"})


def test_a_template_build_that_raises_is_a_plugin_error(plugin_state) -> None:
    plugin_state(BrokenTemplate(), name="brk-plugin")
    info = get_template("brk")
    with pytest.raises(PluginError) as refused:
        info.spec(16)
    assert str(refused.value) == (
        "template 'brk': the build of plugin 'brk-plugin' failed: KeyError: 'discriminator'"
    )
    with pytest.raises(SpecError, match=r"^mode: this template refuses 'refused' on purpose$"):
        info.spec(16, mode="refused")  # said on purpose: the plugin's own message
    assert isinstance(info.spec(16, mode="fine"), ganarch.GANSpec)  # the rest builds


def test_inspect_of_a_broken_template_is_one_line_exit_2(plugin_state) -> None:
    plugin_state(BrokenTemplate(), name="brk-plugin")
    result = runner.invoke(app, ["inspect", "brk:16"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: template 'brk': the build of plugin 'brk-plugin' failed: KeyError: 'discriminator'"
    ]
    assert runner.invoke(app, ["inspect", "dcgan:16"]).exit_code == 0


def test_a_builtin_failure_stays_a_bug_in_ganarch() -> None:
    """The built-in plugin's code is ganarch's: its failure is not blamed on a plugin."""
    info = get_template("dcgan")
    assert info.plugin == "builtin"

    def bug(**_: Any):
        raise ZeroDivisionError("a bug of ours")

    with pytest.raises(ZeroDivisionError):
        dataclasses.replace(info, build=bug).spec(16)
