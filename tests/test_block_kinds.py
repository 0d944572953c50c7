"""Block kinds are plugins: one plugin module adds a kind, blocks of it, a template that uses
them and a dataset, and ganarch builds, trains, lists and searches them with no edit to ganarch.

The plugin (registered in code) adds the kind ``attention`` (keeps the shape), two blocks of
it (self-attention and a channel gate), a small template ``attn`` whose G and D may hold one,
and a dataset ``mirrored_digits`` (scikit-learn's digits, flipped left to right).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import ganarch
from ganarch import LayerSpec, PluginError, SpecError
from ganarch.cli import app
from ganarch.data import ImageDataset, load_dataset
from ganarch.data.digits import load_digits
from ganarch.plugin import manager
from ganarch.registry import BLOCK_KINDS, BlockKindRegistrar, BlockRegistrar, Shape, block_kinds
from ganarch.score import QualityTerm
from ganarch.templates import get_template

runner = CliRunner()

BUILTIN_KINDS = [
    "conv",
    "upsample",
    "downsample",
    "norm",
    "activation",
    "project",
    "head",
    "dense",
    "wrap",
]


def _keep(in_shape: Shape, params: Mapping[str, Any]) -> Shape:
    return in_shape


class SelfAttention(nn.Module):
    """Self-attention over all positions (SAGAN), scaled by a learned gate that starts at 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 2, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (n, hw, inner)
        k = self.key(x).flatten(2)  # (n, inner, hw)
        attn = torch.softmax(q @ k / q.shape[-1] ** 0.5, dim=-1)  # (n, hw, hw)
        v = self.value(x).flatten(2)  # (n, c, hw)
        out = (v @ attn.transpose(1, 2)).reshape(n, c, h, w)
        return x + self.gate * out


def self_attention(in_shape: Shape) -> nn.Module:
    """Self-attention over every position, added to the input through a learned gate."""
    return SelfAttention(in_shape.channels)


class ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, inner, 1),
            nn.ReLU(),
            nn.Conv2d(inner, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.net(x)


def channel_gate(in_shape: Shape, reduction: int = 2) -> nn.Module:
    """Squeeze-and-excitation: each channel scaled by a gate read from all channels."""
    return ChannelGate(in_shape.channels, reduction)


ATTN_DEFAULTS: dict[str, Any] = {"g_attention": "self_attention", "d_attention": "none"}


def attn_spec(
    image_size: int, channels: int = 1, latent_dim: int = 16, width: int = 8, **choices: Any
) -> ganarch.GANSpec:
    """A small conv GAN with an optional attention block in G and in D."""
    c = {**ATTN_DEFAULTS, **choices}
    g = [
        LayerSpec("project_dense", {"out_channels": width, "size": image_size // 2}),
        LayerSpec("relu"),
    ]
    g += [] if c["g_attention"] == "none" else [LayerSpec(c["g_attention"])]
    g += [LayerSpec("nearest_conv", {"out_channels": channels}), LayerSpec("tanh")]
    d = [LayerSpec("strided_conv", {"out_channels": width}), LayerSpec("leaky_relu")]
    d += [] if c["d_attention"] == "none" else [LayerSpec(c["d_attention"])]
    d += [LayerSpec("head_dense")]
    return ganarch.GANSpec(image_size, channels, latent_dim, tuple(g), tuple(d))


def mirrored_digits(arg, *, image_size: int, channels: int, seed: int = 0) -> ImageDataset:
    """scikit-learn's handwritten digits, flipped left to right."""
    digits = load_digits(arg, image_size=image_size, channels=channels)
    return ImageDataset(
        digits.images.flip(-1).contiguous(), digits.labels, digits.class_names, "mirrored_digits"
    )


def symmetry(ctx) -> dict[str, float]:
    """How left-right symmetric the fakes are: 1 - mean |x - mirror(x)| / 2, in [0, 1]."""
    x = ctx.fake_images
    return {"symmetry": float(1 - (x - x.flip(-1)).abs().mean() / 2)}


class AttentionPlugin:
    """One plugin module's worth of hooks: a kind, its blocks, a template, a dataset and a
    metric that counts toward quality."""

    @ganarch.hookimpl
    def ganarch_register_block_kinds(self, registrar) -> None:
        registrar.add("attention", shape=_keep, description="mixes positions; keeps the shape")

    @ganarch.hookimpl
    def ganarch_register_blocks(self, registrar) -> None:
        registrar.add("self_attention", kind="attention", factory=self_attention)
        registrar.add("channel_gate", kind="attention", factory=channel_gate)

    @ganarch.hookimpl
    def ganarch_register_templates(self, registrar) -> None:
        registrar.add(
            "attn",
            build=attn_spec,
            defaults=ATTN_DEFAULTS,
            block_choices={"g_attention": "attention", "d_attention": "attention"},
            optional=("g_attention", "d_attention"),
        )

    @ganarch.hookimpl
    def ganarch_register_datasets(self, registrar) -> None:
        registrar.add("mirrored_digits", loader=mirrored_digits)

    @ganarch.hookimpl
    def ganarch_register_metrics(self, registrar) -> None:
        registrar.add(
            "symmetry", fn=symmetry, higher_is_better=True, quality={"symmetry": QualityTerm(0.5)}
        )


@pytest.fixture
def attention(plugin_state, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    plugin_state(AttentionPlugin(), name="attn-plugin")
    yield
    torch.set_num_threads(threads)


# --- the built-in kinds, through the same hook ------------------------------------------------


def test_the_builtin_kinds_are_registered_by_the_builtin_plugin() -> None:
    kinds = block_kinds()
    assert list(kinds) == BUILTIN_KINDS  # the order listings have always shown
    assert {k.plugin for k in kinds.values()} == {"builtin"}
    # ganarch.BLOCK_KINDS reads as before: kind -> (shape rule, meaning), read-only
    assert list(BLOCK_KINDS) == BUILTIN_KINDS and len(BLOCK_KINDS) == 9
    rule, meaning = BLOCK_KINDS["upsample"]
    assert rule(Shape(4, 8, 8), {"out_channels": 6}) == Shape(6, 16, 16)
    assert meaning.startswith("doubles height and width")
    assert "attention" not in BLOCK_KINDS
    with pytest.raises(KeyError):
        BLOCK_KINDS["attention"]
    with pytest.raises(TypeError):
        BLOCK_KINDS["x"] = (_keep, "x")  # type: ignore[index]


# --- a plugin's kind, end to end ---------------------------------------------------------------


def test_a_plugin_kind_is_listed_and_its_blocks_build_and_train(attention) -> None:
    kinds = block_kinds()
    assert list(kinds) == [*BUILTIN_KINDS, "attention"]
    assert kinds["attention"].plugin == "attn-plugin"
    assert BLOCK_KINDS["attention"] == (_keep, "mixes positions; keeps the shape")
    assert set(ganarch.blocks("attention")) == {"channel_gate", "self_attention"}
    info = ganarch.blocks()["self_attention"]
    assert info.out_shape(Shape(8, 4, 4), {}) == Shape(8, 4, 4)

    spec = get_template("attn").spec(8, channels=1, d_attention="channel_gate")
    assert [layer.block for layer in spec.generator][2] == "self_attention"
    assert "channel_gate" in [layer.block for layer in spec.discriminator]
    G, D = spec.build()
    assert D(G(torch.randn(2, 16))).shape == (2,)
    assert any(isinstance(m, SelfAttention) for m in G.modules())

    data = load_dataset("mirrored_digits", 8, 1)
    digits = load_dataset("digits", 8, 1)
    assert torch.equal(data.images, digits.images.flip(-1)) and data.num_classes == 10
    result = ganarch.train(
        spec, data, steps=4, device="cpu", progress=False, training={"batch_size": 16}
    )
    assert result.steps_done == 4
    gate = next(m for m in result.generator.modules() if isinstance(m, SelfAttention)).gate
    assert gate.item() != 0.0  # the attention block was trained, not just built


def test_cli_lists_a_plugin_kind(attention) -> None:
    result = runner.invoke(app, ["blocks", "--kind", "attention", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {(r["name"], r["kind"], r["plugin"]) for r in rows} == {
        ("channel_gate", "attention", "attn-plugin"),
        ("self_attention", "attention", "attn-plugin"),
    }
    table = runner.invoke(app, ["blocks"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "kind: attention" in table.stdout and "mixes positions" in table.stdout
    assert table.stdout.index("kind: wrap") < table.stdout.index("kind: attention")
    bad = runner.invoke(app, ["blocks", "--kind", "atention"])
    assert bad.exit_code == 2 and "did you mean 'attention'" in bad.stderr
    listed = {r["name"]: r for r in json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)}
    assert listed["attn-plugin"]["block_kinds"] == ["attention"]
    assert listed["builtin"]["block_kinds"] == BUILTIN_KINDS
    spec = runner.invoke(app, ["inspect", "attn:8", "--json"])
    assert spec.exit_code == 0, spec.stderr
    kinds = [layer["kind"] for layer in json.loads(spec.stdout)["generator"]["layers"]]
    assert "attention" in kinds


def test_a_search_over_a_plugin_kind_on_a_plugin_dataset_with_a_plugin_metric(
    attention, tmp_path: Path
) -> None:
    space = tmp_path / "attn.toml"
    space.write_text(
        'template = "attn"\nimage_size = 8\nwidth = 8\nlatent_dim = 16\n\n'
        "[fixed]\nbatch_size = 32\n\n"
        "[choices]\n"
        'g_attention = { blocks = "attention", include_none = true }\n'
        'd_attention = ["none", "channel_gate"]\n'
    )
    study = ganarch.search(
        space,
        data="mirrored_digits",
        trials=2,
        steps=8,
        eval_every=8,
        sampler="random",
        pruner="none",
        device="cpu",
        storage=tmp_path / "s.journal",
        out=tmp_path / "runs",
        quiet=True,
    )
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert study.user_attrs["ganarch"]["data"] == "mirrored_digits"
    for t in trials:
        assert t.params["g_attention"] in {"self_attention", "channel_gate", "none"}
        meta = t.user_attrs["spec"]["meta"]
        assert meta["template"] == "attn"
        assert meta["choices"]["g_attention"] == t.params["g_attention"]
    assert all(v is not None for t in trials for v in t.values)
    # the plugin's weighted metric was computed at every trial and is part of the score
    assert "+terms-" in study.user_attrs["ganarch"]["score"]
    for t in trials:
        assert 0.0 <= t.user_attrs["metrics"]["symmetry"] <= 1.0


# --- the registrar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("my kind", {}, "block kind name must be an identifier"),
        ("k", {"shape": "keep"}, "block kind 'k': shape rule is not callable"),
        ("k", {"description": ""}, "block kind .k.: description must be a non-empty string"),
        ("k", {"description": 3}, "block kind .k.: description must be a non-empty"),
    ],
)
def test_registrar_checks(name, kwargs, message) -> None:
    args = {"shape": _keep, "description": "keeps the shape", **kwargs}
    with pytest.raises(PluginError, match=f"^plugin 'mine': {message}"):
        BlockKindRegistrar({}, "mine").add(name, **args)


def test_a_block_of_an_unregistered_kind_is_refused() -> None:
    with pytest.raises(PluginError, match=r"block 'x' has unknown kind 'attention'"):
        BlockRegistrar({}, "mine").add("x", kind="attention", factory=self_attention)


class _Kinds:
    def __init__(self, *names: str, fail: bool = False) -> None:
        self.names, self.fail = names, fail

    @ganarch.hookimpl
    def ganarch_register_block_kinds(self, registrar) -> None:
        for name in self.names:
            registrar.add(name, shape=_keep, description="keeps the shape")
        if self.fail:
            raise RuntimeError("kind hook broke")

    @ganarch.hookimpl
    def ganarch_register_blocks(self, registrar) -> None:
        for name in self.names:
            registrar.add(f"{name}_block", kind=name, factory=self_attention)


def test_duplicate_kind_names_name_both_plugins(plugin_state) -> None:
    plugin_state(_Kinds("gate"), name="first")
    plugin_state(_Kinds("gate"), name="second")
    plugin_state(_Kinds("norm"), name="clash-builtin")
    with pytest.warns(UserWarning, match="registered twice"):
        kinds = block_kinds()
    assert kinds["gate"].plugin == "first" and kinds["norm"].plugin == "builtin"
    errors = {i.name: i.error for i in manager.plugins()}
    assert "block kind 'gate' is registered twice: by plugin 'first' and plugin 'second'" in (
        errors["second"] or ""
    )
    assert "block kind 'norm' is registered twice: by plugin 'builtin'" in (
        errors["clash-builtin"] or ""
    )
    assert errors["first"] is None and errors["builtin"] is None
    with pytest.warns(UserWarning):
        table = ganarch.blocks()
    assert table["gate_block"].plugin == "first"  # second's same-named block clashes too


def test_a_block_whose_kinds_plugin_failed_says_so(plugin_state) -> None:
    plugin_state(_Kinds("gate", fail=True), name="broken")
    with pytest.warns(UserWarning, match="kind hook broke"):
        assert "gate" not in block_kinds()
    with pytest.warns(UserWarning):
        assert "gate_block" not in ganarch.blocks()
    with pytest.raises(SpecError, match=r"'gate_block' is not available: plugin 'broken'"):
        ganarch.registry.get_block("gate_block")
    with pytest.raises(SpecError, match=r"'gate' is not available: plugin 'broken', which"):
        ganarch.blocks("gate")
    # the kind's failure is what the blocks hook reports, not an unexplained unknown kind
    error = next(i.error for i in manager.plugins() if i.name == "broken")
    assert "kind 'gate' is not available: plugin 'broken'" in (error or "")
