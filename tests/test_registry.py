"""The block registry: one contract test over every registered block, and the registrar's checks."""

from __future__ import annotations

import importlib.metadata
import textwrap
import warnings

import pytest
import torch
from torch import nn

import ganarch
import ganarch.plugin.manager
from ganarch.registry import BLOCK_KINDS, BlockRegistrar, Shape

# A tiny input per kind, and the params a kind's shape rule needs.
_INPUT = {"project": Shape(8, 1, 1)}
_DEFAULT_INPUT = Shape(4, 8, 8)
_KIND_PARAMS = {"out_channels": 6, "features": 10}


def _params_for(info: ganarch.BlockInfo) -> dict[str, int]:
    accepted = info.parameters()
    return {k: v for k, v in _KIND_PARAMS.items() if k in accepted}


def _run_train_step(module: nn.Module, in_shape: Shape) -> torch.Tensor:
    module.train()
    leaf = torch.randn(3, *in_shape, requires_grad=True)
    y = module(leaf.clone())  # clone: in-place activations must not touch a leaf
    (y * torch.randn_like(y)).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    for name, p in module.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"no gradient reached {name}"
    return y


@pytest.mark.parametrize("name", sorted(ganarch.blocks()))
def test_block_contract(name: str) -> None:
    """Every registered block builds, runs forward and backward, and keeps its shape rule."""
    info = ganarch.blocks()[name]
    torch.manual_seed(0)
    if info.kind == "wrap":
        conv = nn.Conv2d(4, 6, 3, padding=1)
        wrapped = info.factory(conv)
        assert isinstance(wrapped, nn.Module)
        y = _run_train_step(wrapped, _DEFAULT_INPUT)
        assert Shape(*y.shape[1:]) == info.out_shape(Shape(6, 8, 8), {})
        return
    in_shape = _INPUT.get(info.kind, _DEFAULT_INPUT)
    params = _params_for(info)
    module = info.factory(in_shape, **params)
    assert isinstance(module, nn.Module)
    y = _run_train_step(module, in_shape)
    assert tuple(y.shape) == (3, *info.out_shape(in_shape, params))


def test_every_kind_has_a_builtin_block() -> None:
    builtin = {b.kind for b in ganarch.blocks().values() if b.plugin == "builtin"}
    assert builtin == set(BLOCK_KINDS)


# --- the registrar ---------------------------------------------------------------------------


def _relu(in_shape):
    return nn.ReLU()


def test_registrar_rejects_unknown_kind() -> None:
    with pytest.raises(ganarch.PluginError, match=r"unknown kind 'convolution'.*'conv'"):
        BlockRegistrar({}, "mine").add("x", kind="convolution", factory=_relu)


def test_registrar_rejects_non_callable_factory() -> None:
    with pytest.raises(ganarch.PluginError, match=r"plugin 'mine'.*factory of block 'x'"):
        BlockRegistrar({}, "mine").add("x", kind="activation", factory="nn.ReLU")
    with pytest.raises(ganarch.PluginError, match="shape rule"):
        BlockRegistrar({}, "mine").add("x", kind="activation", factory=_relu, shape=42)


def test_registrar_rejects_bad_names() -> None:
    with pytest.raises(ganarch.PluginError, match="identifier"):
        BlockRegistrar({}, "mine").add("my block", kind="activation", factory=_relu)


class _Blocks:
    """A code plugin that registers the given block names as ReLU activations."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @ganarch.hookimpl
    def ganarch_register_blocks(self, registrar) -> None:
        for name in self.names:
            registrar.add(name, kind="activation", factory=_relu)


def _info(name: str) -> ganarch.plugin.manager.PluginInfo:
    return next(i for i in ganarch.plugin.manager.plugins() if i.name == name)


def test_code_plugin_registers_blocks(plugin_state) -> None:
    plugin_state(_Blocks("my_act"), name="mine")
    assert ganarch.blocks()["my_act"].plugin == "mine"
    assert _info("mine").source == "code"
    spec = ganarch.dcgan_spec(16, width=8, g_activation="my_act")
    assert spec.generator[2].block == "my_act"
    ganarch.unregister_plugin("mine")
    assert "my_act" not in ganarch.blocks()


def test_duplicate_block_names_both_plugins(plugin_state) -> None:
    plugin_state(_Blocks("twin"), name="first")
    plugin_state(_Blocks("relu", "extra"), name="clash_builtin")
    plugin_state(_Blocks("twin", "other"), name="second")
    with pytest.warns(UserWarning, match="registered twice"):
        found = ganarch.blocks()
    # the later plugin is the one reported, with both names; its blocks are dropped
    assert "by plugin 'first' and plugin 'second'" in (_info("second").error or "")
    assert "by plugin 'builtin' and plugin 'clash_builtin'" in (_info("clash_builtin").error or "")
    assert _info("first").error is None and _info("builtin").error is None
    assert found["twin"].plugin == "first" and found["relu"].plugin == "builtin"
    assert "other" not in found and "extra" not in found
    G, D = ganarch.dcgan_spec(16, width=8, g_activation="twin").build()  # the rest still work
    assert D(G(torch.randn(2, 100))).shape == (2,)


def _fake_entry_points(monkeypatch, *extra: importlib.metadata.EntryPoint) -> None:
    """Make ``ganarch.plugins`` see the built-ins plus ``extra`` in the ``ganarch`` group."""
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):
        found = [ep for ep in real(**kwargs) if ep.value.startswith("ganarch_plugins")]
        if kwargs.get("group") == ganarch.plugin.manager.ENTRY_POINT_GROUP:
            found += list(extra)
        return found

    monkeypatch.setattr(ganarch.plugin.manager.importlib.metadata, "entry_points", entry_points)
    ganarch.plugin.manager.reset()


def _write_module(tmp_path, monkeypatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_plugin_that_fails_to_import_is_reported(plugin_state, monkeypatch, tmp_path) -> None:
    _write_module(tmp_path, monkeypatch, "ganarch_test_broken", "raise RuntimeError('boom')\n")
    _fake_entry_points(
        monkeypatch,
        importlib.metadata.EntryPoint("broken", "ganarch_test_broken", "ganarch"),
        importlib.metadata.EntryPoint("missing", "ganarch_test_no_such_module", "ganarch"),
    )
    with pytest.warns(UserWarning, match="failed to load"):
        infos = {i.name: i for i in ganarch.plugin.manager.plugins()}
    assert infos["broken"].error == "RuntimeError: boom"
    assert "ModuleNotFoundError" in (infos["missing"].error or "")
    assert infos["builtin"].error is None
    assert "tconv" in ganarch.blocks()  # the rest keep working
    ganarch.dcgan_spec(16, width=8).build()


_GOOD_PLUGIN = """
    from torch import nn
    import ganarch

    @ganarch.hookimpl
    def ganarch_register_blocks(registrar):
        registrar.add("ep_block", kind="activation", factory=lambda in_shape: nn.Tanh(),
                      description="from an entry point")
"""


def test_entry_point_plugin_and_disable_env(plugin_state, monkeypatch, tmp_path) -> None:
    _write_module(tmp_path, monkeypatch, "ganarch_test_good", _GOOD_PLUGIN)
    ep = importlib.metadata.EntryPoint("good", "ganarch_test_good", "ganarch")
    monkeypatch.delenv(ganarch.plugin.manager.DISABLE_ENV, raising=False)
    _fake_entry_points(monkeypatch, ep)
    assert ganarch.blocks()["ep_block"].plugin == "good"
    assert _info("good").source == "entry point"

    monkeypatch.setenv(ganarch.plugin.manager.DISABLE_ENV, "1")
    ganarch.plugin.manager.reset()
    assert "ep_block" not in ganarch.blocks()
    assert [i.name for i in ganarch.plugin.manager.plugins()] == ["builtin"]
    assert "tconv" in ganarch.blocks()


def test_builtins_load_without_entry_points(plugin_state, monkeypatch) -> None:
    """From a source tree with no install, the built-ins are registered directly."""
    monkeypatch.setattr(ganarch.plugin.manager.importlib.metadata, "entry_points", lambda **kw: [])
    ganarch.plugin.manager.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "tconv" in ganarch.blocks()
    assert [(i.name, i.source) for i in ganarch.plugin.manager.plugins()] == [
        ("builtin", "builtin")
    ]
