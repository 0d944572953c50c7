"""Templates are plugins: ``dcgan`` is the built-in one, a second family is one plugin module.

A template registered in code here (``tiny``) is built, listed, inspected and searched
through the same doors as ``dcgan``, with no edit to ganarch; the registrar's checks and the
duplicate-name rule are tested one by one.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from typer.testing import CliRunner

import ganarch
from ganarch import LayerSpec, SpecError
from ganarch.cli import app
from ganarch.errors import PluginError
from ganarch.plugin import manager
from ganarch.search.design import factors_of
from ganarch.search.space import parse_space
from ganarch.templates import (
    PAPER_CHOICES,
    TemplateRegistrar,
    dcgan_spec,
    get_template,
    templates,
)

runner = CliRunner()

TINY_DEFAULTS: dict[str, Any] = {
    "up": "nearest_conv",
    "norm": "none",
    "act": "leaky_relu",
    "convs": 0,
    "conv_width": 4,
    "flag": False,
}


def tiny_spec(
    image_size: int, channels: int = 1, latent_dim: int = 8, width: int = 4, **choices: Any
) -> ganarch.GANSpec:
    """A tiny conv family: a projection to half size, optional convs, one upsampling."""
    params = dict(choices.pop("act_params", None) or {})
    c = {**TINY_DEFAULTS, **choices}
    g = [LayerSpec("project_dense", {"out_channels": width, "size": image_size // 2})]
    g += [] if c["norm"] == "none" else [LayerSpec(c["norm"])]
    g += [LayerSpec(c["act"], params)]
    g += [LayerSpec("conv", {"out_channels": c["conv_width"]}) for _ in range(c["convs"])]
    g += [LayerSpec(c["up"], {"out_channels": channels}), LayerSpec("tanh")]
    d = [LayerSpec("strided_conv", {"out_channels": width}), LayerSpec(c["act"], params)]
    d += [LayerSpec("identity")] if c["flag"] else []
    d += [LayerSpec("head_dense")]
    return ganarch.GANSpec(image_size, channels, latent_dim, tuple(g), tuple(d))


class Tiny:
    def __init__(self, name: str = "tiny", **overrides: Any) -> None:
        self.name, self.overrides = name, overrides

    @ganarch.hookimpl
    def ganarch_register_templates(self, registrar) -> None:
        registrar.add(self.name, **{**TINY_KWARGS, **self.overrides})


TINY_KWARGS: dict[str, Any] = {
    "build": tiny_spec,
    "defaults": TINY_DEFAULTS,
    "block_choices": {"up": "upsample", "norm": "norm", "act": "activation"},
    "optional": ("norm",),
    "param_choices": ("act",),
    "requires": {"conv_width": ("convs",)},
}

TINY_SPACE = {
    "template": "tiny",
    "image_size": 8,
    "width": 4,
    "latent_dim": 8,
    "choices": {
        "up": {"blocks": "upsample"},
        "norm": ["none", "batchnorm"],
        "act": ["relu", "leaky_relu"],
        "act_params.slope": [0.1, 0.3],  # only when act takes a slope
        "convs": [0, 1],
        "conv_width": [4, 8],  # only when convs is non-zero (the template's `requires`)
        "flag": [False, True],
        "beta1": [0.5, 0.9],
    },
}


# --- dcgan, the built-in template ---------------------------------------------------------------


def test_dcgan_is_the_builtin_template() -> None:
    info = get_template("dcgan")
    assert info.plugin == "builtin" and dict(info.defaults) == PAPER_CHOICES
    assert info.block_choices["g_upsample"] == "upsample"
    assert "d_norm" in info.optional and "g_project" not in info.optional
    assert info.param_names == ("g_activation_params", "d_activation_params")
    assert info.int_choices == {"g_dense_layers", "d_dense_layers", "dense_features"}
    assert info.bool_choices == {"g_output_norm", "d_input_norm"}
    assert info.requires == {"dense_features": ("g_dense_layers", "d_dense_layers")}
    assert info.claims[7] == ("beta1",)
    choices = {"d_norm": "none", "d_wrap": "spectral_norm", "beta1": 0.9}
    assert info.spec(16, channels=1, width=8, **choices) == dcgan_spec(16, 1, width=8, **choices)


def test_unknown_template_names_the_closest() -> None:
    with pytest.raises(
        SpecError, match=r"^template: unknown template 'dcgn'; did you mean 'dcgan'"
    ):
        get_template("dcgn")
    with pytest.raises(SpecError, match=r"unknown template 'stylegan'"):
        parse_space({"template": "stylegan", "choices": {"beta1": [0.5]}})


def test_a_choice_the_template_does_not_take_is_named() -> None:
    with pytest.raises(SpecError, match=r"^g_upsampel: not a choice of template 'dcgan'; did you"):
        get_template("dcgan").spec(16, g_upsampel="tconv")


# --- a second template, registered in code --------------------------------------------------------


def test_a_code_template_builds_real_trainable_nets(plugin_state) -> None:
    plugin_state(Tiny(), name="tiny-plugin")
    info = templates()["tiny"]
    assert info.plugin == "tiny-plugin" and info.description.startswith("A tiny conv family")
    spec = info.spec(8, channels=1, convs=1, norm="batchnorm", act_params={"slope": 0.1}, lr_g=1e-3)
    assert spec.meta["template"] == "tiny" and spec.meta["choices"]["convs"] == 1
    assert spec.training.lr_g == 1e-3  # a training setting goes to the spec's training
    G, D = spec.build()
    images = G(torch.randn(3, 8))
    assert images.shape == (3, 1, 8, 8)
    D(images).sum().backward()
    assert all(p.grad is not None for p in G.parameters())
    with pytest.raises(
        SpecError, match=r"^up: block 'batchnorm' is a 'norm' block, expected 'upsample'"
    ):
        info.spec(8, up="batchnorm")  # a block choice of the wrong kind is named
    with pytest.raises(SpecError, match=r"^generator\.layers\[2\]\.params\.out_channels"):
        info.spec(8, convs=1, conv_width=0)  # every layer is checked before it is returned


def test_a_code_template_is_searched_through_its_declaration(plugin_state) -> None:
    plugin_state(Tiny(), name="tiny-plugin")
    space = parse_space(TINY_SPACE, source="tiny.toml", name="tiny")
    assert space.template == "tiny"
    # up: 4 upsample blocks; norm 2; act: relu, or leaky_relu with 2 slopes = 3;
    # convs 0, or 1 with 2 conv widths = 3; flag 2; beta1 2
    assert space.grid_size() == 4 * 2 * 3 * 3 * 2 * 2
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(24):
        trial = study.ask()
        choices = space.suggest(trial)
        assert ("conv_width" in choices) == (choices["convs"] > 0)
        assert ("act_params" in choices) == (choices["act"] == "leaky_relu")
        if choices["act"] == "leaky_relu":
            assert f"act_params.slope{'|'}leaky_relu" in trial.params
        spec = space.spec(choices, channels=1)
        assert spec.meta["template"] == "tiny"
        resolved = space.resolve(choices)
        assert set(TINY_DEFAULTS) <= set(resolved) and "g_upsample" not in resolved
        seen.add((choices["convs"], choices["act"]))
        study.tell(trial, 0.0)
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"up": {"blocks": "norm"}}, "takes 'upsample' blocks, not 'norm'"),
        ({"act": ["relu", "none"]}, "block 'none' is a 'norm' block, expected 'activation'"),
        ({"norm": {"blocks": "norm", "exclude": ["groupnorm"], "include_none": True}}, None),
        ({"convs": {"low": 0, "high": 2}}, "'convs' is an integer; add int = true"),
        ({"convs": [0, -1]}, "must be a non-negative integer"),
        ({"g_upsample": ["tconv"]}, "unknown choice 'g_upsample'"),
        ({"up_params.kernel_size": [3]}, "unknown choice"),
    ],
)
def test_space_checks_follow_the_template(plugin_state, choices, message) -> None:
    plugin_state(Tiny(), name="tiny-plugin")
    data = {**TINY_SPACE, "choices": choices}
    if message is None:
        assert parse_space(data).choices[0].values[-1] == "none"
        return
    with pytest.raises(SpecError, match=message):
        parse_space(data)


def test_a_design_over_a_template_without_claims_has_plain_factors(plugin_state) -> None:
    plugin_state(Tiny(), name="tiny-plugin")
    space = parse_space(
        {
            **TINY_SPACE,
            "choices": {"flag": [False, True], "beta1": [0.5, 0.9], "act": ["relu", "elu"]},
        }
    )
    factors = factors_of(space)
    assert [(f.name, f.claim) for f in factors] == [("flag", None), ("beta1", None), ("act", None)]
    conditional = {**TINY_SPACE, "choices": {"convs": [0, 1], "conv_width": [4, 8]}}
    with pytest.raises(ganarch.GanarchError, match="cannot vary a conditional choice"):
        factors_of(parse_space(conditional))


def test_cli_names_any_registered_template(plugin_state) -> None:
    plugin_state(Tiny(), name="tiny-plugin")
    listed = json.loads(runner.invoke(app, ["templates", "--json"]).stdout)
    assert {r["name"]: r["plugin"] for r in listed} == {"dcgan": "builtin", "tiny": "tiny-plugin"}
    plugins = {r["name"]: r for r in json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)}
    assert plugins["tiny-plugin"]["templates"] == ["tiny"]
    shown = runner.invoke(app, ["templates", "tiny", "--json"])
    rows = {r["name"]: r for r in json.loads(shown.stdout)["choices"]}
    assert rows["conv_width"]["notes"] == ["only when convs is set"]
    assert rows["norm"]["takes"] == "norm block or none"
    result = runner.invoke(app, ["inspect", "tiny:16", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["generator"]["out_shape"] == [3, 16, 16]
    result = runner.invoke(app, ["spec", "tiny:8", "--channels", "1", "--choice", "convs=1"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["meta"]["choices"]["convs"] == 1
    for args in (["inspect", "tinny:16"], ["spec", "tinny"], ["templates", "tinny"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and result.stdout == ""
        line = result.stderr.strip()
        assert "\n" not in line and "unknown template 'tinny'; did you mean 'tiny'" in line


# --- the registrar's checks -------------------------------------------------------------------------


def _no_choices(image_size, channels, latent_dim=1, width=1):
    return None


def _no_width_default(image_size, channels, latent_dim=1, *, width, **choices):
    return None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"build": 3}, "build is not callable"),
        ({"build": _no_choices}, r"build must take the choices as \*\*choices"),
        ({"build": _no_width_default}, "build's 'width' needs a default"),
        ({"defaults": [("up", "tconv")]}, "defaults must be a non-empty mapping"),
        ({"defaults": {}}, "defaults must be a non-empty mapping"),
        ({"defaults": {**TINY_DEFAULTS, "bad-name": 1}}, "'bad-name' is not an identifier"),
        ({"defaults": {**TINY_DEFAULTS, "beta1": 0.5}}, "'beta1' is a geometry or training"),
        ({"defaults": {**TINY_DEFAULTS, "sizes": [1, 2]}}, "must be a string, number or bool"),
        (
            {"block_choices": {"up": "upsampl"}},
            "'upsampl' is not a block kind; did you mean 'upsample'",
        ),
        ({"block_choices": {"nope": "norm"}}, "'nope' is not a choice"),
        (
            {"block_choices": {"convs": "conv"}},
            "default of block choice 'convs' must be a block name",
        ),
        ({"optional": "norm"}, "optional must be a list of choice names"),
        ({"optional": ("convs",)}, "optional: 'convs' is not a block choice"),
        ({"optional": ()}, "'norm' defaults to 'none' but is not optional"),
        ({"param_choices": ("flag",)}, "param_choices: 'flag' is not a block choice"),
        ({"int_choices": ("up",)}, "default of 'up' must be a non-negative integer"),
        ({"bool_choices": ("convs",)}, "default of 'convs' must be true or false"),
        ({"requires": {"conv_width": ("conv_width",)}}, "must name other choices"),
        ({"requires": {"conv_width": ("nope",)}}, "'nope' is not a choice"),
        ({"claims": {"one": ("beta1",)}}, "'one' is not a claim number"),
        ({"claims": {1: ("nope",)}}, r"claims\[1\]: 'nope' is not a choice"),
        ({"description": 3}, "description must be a string"),
    ],
)
def test_registrar_checks_what_it_is_given(overrides, message) -> None:
    registrar = TemplateRegistrar({}, "mine")
    with pytest.raises(PluginError, match=message):
        registrar.add("tiny", **{**TINY_KWARGS, **overrides})
    assert registrar.names == ["tiny"]  # claimed, so a lookup can say which plugin failed


def test_registrar_infers_int_and_bool_choices_and_needs_an_identifier() -> None:
    table: dict[str, Any] = {}
    registrar = TemplateRegistrar(table, "mine")
    registrar.add("tiny", **TINY_KWARGS)
    registrar.commit()
    assert table["tiny"].int_choices == {"convs", "conv_width"}
    assert table["tiny"].bool_choices == {"flag"}
    with pytest.raises(PluginError, match="template name must be an identifier-like string"):
        TemplateRegistrar({}, "mine").add("my template", **TINY_KWARGS)


def test_a_duplicate_template_name_drops_the_plugin_and_names_both(plugin_state) -> None:
    class Twice:
        @ganarch.hookimpl
        def ganarch_register_templates(self, registrar) -> None:
            registrar.add("fine", **TINY_KWARGS)
            registrar.add("dcgan", **TINY_KWARGS)

    plugin_state(Twice(), name="twice")
    with pytest.warns(UserWarning, match="registered twice"):
        table = templates()
    assert table["dcgan"].plugin == "builtin" and "fine" not in table  # dropped whole
    error = next(i.error for i in manager.plugins() if i.name == "twice")
    assert "template 'dcgan' is registered twice: by plugin 'builtin' and plugin 'twice'" in error
    with pytest.raises(SpecError, match="plugin 'twice', which registers it, failed to load"):
        get_template("fine")
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 1  # a plugin failed: a script checking its set-up sees it
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["builtin"]["templates"] == ["dcgan"] and rows["twice"]["templates"] == []
    assert "registered twice" in rows["twice"]["error"]


def test_a_template_that_builds_no_spec_is_refused(plugin_state) -> None:
    def broken(image_size, channels, latent_dim=1, width=1, **choices):
        return {"generator": []}

    plugin_state(Tiny("broken", build=broken), name="broken-plugin")
    with pytest.raises(PluginError, match="built dict, not a GANSpec"):
        get_template("broken").spec(8)


# --- the search layer knows no template by name -----------------------------------------------------


def test_the_search_layer_names_no_dcgan_choice() -> None:
    """No string in ganarch/search/ (docstrings aside) is a choice of the dcgan template:
    everything the search needs comes from the template's declaration."""
    names = set(PAPER_CHOICES) | {f"{k}_params" for k in PAPER_CHOICES}
    found = []
    for path in sorted((Path(ganarch.__file__).parent / "search").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and id(node) not in docstrings
                and isinstance(node.value, str)
                and node.value in names
            ):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.ImportFrom) and node.module == "ganarch.dcgan":
                found.append(f"{path.name}:{node.lineno}: imports ganarch.dcgan")
    assert not found, found
