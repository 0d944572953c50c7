"""The spec as data: round trips, hand-written files, and validation errors that say where."""

from __future__ import annotations

import copy
import re
import textwrap

import pytest
import torch

import ganarch
from ganarch import GANSpec, SpecError, dcgan_spec, load_spec


@pytest.fixture(scope="module")
def varied() -> GANSpec:
    """A spec that uses wraps, block params, dense layers and non-default training values."""
    return dcgan_spec(
        16,
        channels=1,
        latent_dim=16,
        width=8,
        d_norm="none",
        d_wrap="spectral_norm",
        d_activation_params={"slope": 0.1},
        g_dense_layers=1,
        dense_features=32,
        lr_g=1e-5,
        beta1=0.9,
        batch_size=64,
    )


def _base() -> dict:
    return dcgan_spec(32, width=8).to_dict()


def test_dict_round_trip(varied: GANSpec) -> None:
    d = varied.to_dict()
    again = GANSpec.from_dict(copy.deepcopy(d))
    assert again == varied
    assert again.to_dict() == d


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_file_round_trip(varied: GANSpec, tmp_path, suffix: str) -> None:
    path = varied.save(tmp_path / f"spec{suffix}")
    loaded = load_spec(path)
    assert loaded == varied
    assert loaded.to_dict() == varied.to_dict()
    assert loaded.training.lr_g == 1e-5 and isinstance(loaded.training.batch_size, int)
    assert not list(tmp_path.glob("*.tmp"))


def test_save_refuses_unknown_suffix(varied: GANSpec, tmp_path) -> None:
    with pytest.raises(SpecError, match=r"use \.json or \.yaml"):
        varied.save(tmp_path / "spec.txt")


_TOML = """
image_size = 8
channels = 1
latent_dim = 4

[training]
beta1 = 0.5

[[generator.layers]]
block = "project_dense"
params = { out_channels = 8 }

[[generator.layers]]
block = "relu"

[[generator.layers]]
block = "nearest_conv"
params = { out_channels = 1, kernel_size = 5 }

[[generator.layers]]
block = "tanh"

[[discriminator.layers]]
block = "conv_avgpool"
params = { out_channels = 8 }
wrap = ["spectral_norm"]

[[discriminator.layers]]
block = "leaky_relu"
params = { slope = 0.1 }

[[discriminator.layers]]
block = "head_dense"
"""

_YAML = """
image_size: 8
channels: 1
latent_dim: 4
generator:
  layers:
    - {block: project_dense, params: {out_channels: 8}}
    - relu                       # a bare block name is shorthand for {block: relu}
    - {block: nearest_conv, params: {out_channels: 1, kernel_size: 5}}
    - tanh
discriminator:
  layers:
    - {block: conv_avgpool, params: {out_channels: 8}, wrap: spectral_norm}
    - {block: leaky_relu, params: {slope: 0.1}}
    - head_dense
training: {beta1: 0.5}
"""


def test_hand_written_toml_and_yaml_agree(tmp_path) -> None:
    (tmp_path / "a.toml").write_text(_TOML)
    (tmp_path / "b.yaml").write_text(_YAML)
    a, b = load_spec(tmp_path / "a.toml"), load_spec(tmp_path / "b.yaml")
    assert a == b
    assert a.discriminator[0].wrap == ("spectral_norm",)
    G, D = a.build()
    assert G(torch.randn(3, 4)).shape == (3, 1, 8, 8)
    assert D(torch.randn(3, 1, 8, 8)).shape == (3,)


def test_build_accepts_both_noise_shapes() -> None:
    spec = dcgan_spec(16, channels=3, latent_dim=12, width=8)
    G, D = spec.build()
    torch.manual_seed(0)
    z = torch.randn(5, 12)
    G.eval()
    flat, square = G(z), G(z[:, :, None, None])
    assert flat.shape == (5, 3, 16, 16)
    assert torch.equal(flat, square)
    assert isinstance(G, torch.nn.Module) and isinstance(D, torch.nn.Module)
    assert D(flat).shape == (5,)


# --- validation errors -----------------------------------------------------------------------


def _error(d: dict) -> str:
    with pytest.raises(SpecError) as info:
        GANSpec.from_dict(d)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_block_names_place_and_closest() -> None:
    d = _base()
    d["generator"]["layers"][3]["block"] = "tconvv"
    message = _error(d)
    assert message.startswith("generator.layers[3].block:")
    assert "'tconvv' is not a registered block" in message and "'tconv'" in message


def test_bad_param_value_names_the_param() -> None:
    d = _base()
    d["generator"]["layers"][3]["params"]["out_channels"] = -1
    assert _error(d).startswith("generator.layers[3].params.out_channels:")
    d["generator"]["layers"][3]["params"]["out_channels"] = "many"
    assert _error(d).startswith("generator.layers[3].params.out_channels:")


def test_missing_param_is_named() -> None:
    d = _base()
    del d["discriminator"]["layers"][0]["params"]
    message = _error(d)
    assert message.startswith("discriminator.layers[0].params.out_channels:")
    assert "needs parameter" in message


def test_unknown_param_suggests_the_closest() -> None:
    d = _base()
    d["generator"]["layers"][3]["params"]["out_chanels"] = 4
    message = _error(d)
    assert message.startswith("generator.layers[3].params.out_chanels:")
    assert "no parameter 'out_chanels'" in message and "'out_channels'" in message


def test_param_the_factory_rejects() -> None:
    d = _base()
    d["generator"]["layers"][3] = {"block": "conv", "params": {"out_channels": 8, "kernel_size": 4}}
    assert re.match(r"generator\.layers\[3\]\.params: .*odd", _error(d))


def test_non_scalar_param_is_rejected() -> None:
    d = _base()
    d["generator"]["layers"][3]["params"]["out_channels"] = [1, 2]
    assert _error(d).startswith("generator.layers[3].params.out_channels: must be a number")


def test_shape_mismatches() -> None:
    d = _base()
    d["generator"]["layers"][-2]["params"]["out_channels"] = 1  # G ends at 1 channel, images 3
    message = _error(d)
    assert message.startswith(f"generator.layers[{len(d['generator']['layers']) - 1}]:")
    assert "1×32×32" in message and "3×32×32" in message

    d = _base()
    d["generator"]["layers"][3] = {"block": "project_tconv", "params": {"out_channels": 8}}
    message = _error(d)
    assert message.startswith("generator.layers[3]:") and "cannot take input" in message

    d = _base()  # one halving too many: 4×4 -> 2×2 -> 1×1 -> cannot halve
    extra = {"block": "strided_conv", "params": {"out_channels": 8}}
    d["discriminator"]["layers"][-2:-2] = [extra, extra, extra]
    assert "cannot halve" in _error(d)


def test_discriminator_must_end_in_a_score() -> None:
    d = _base()
    d["discriminator"]["layers"] = d["discriminator"]["layers"][:-2]  # drop head and sigmoid
    n = len(d["discriminator"]["layers"])
    message = _error(d)
    assert message.startswith(f"discriminator.layers[{n - 1}]:")
    assert "one score per image" in message


def test_wrap_blocks_only_in_wrap_lists() -> None:
    d = _base()
    d["discriminator"]["layers"][1] = {"block": "spectral_norm"}
    assert _error(d).startswith("discriminator.layers[1].block:")
    d = _base()
    d["discriminator"]["layers"][0]["wrap"] = ["batchnorm"]
    message = _error(d)
    assert message.startswith("discriminator.layers[0].wrap[0]:") and "expected 'wrap'" in message


def test_structural_errors() -> None:
    d = _base()
    d["generatr"] = d.pop("generator")
    assert _error(d).startswith("generatr: unknown key; did you mean 'generator'")
    d = _base()
    d["image_size"] = True
    assert _error(d).startswith("image_size: must be a positive integer")
    d = _base()
    d["training"]["beta3"] = 0.5
    assert _error(d).startswith("training.beta3: unknown training setting")
    d = _base()
    d["generator"]["layers"][0]["blok"] = "x"
    assert _error(d).startswith("generator.layers[0].blok: unknown key")


def test_template_errors() -> None:
    with pytest.raises(SpecError, match=r"^g_upsample: .*'tconv'"):
        dcgan_spec(32, g_upsample="tconvv")
    with pytest.raises(SpecError, match=r"^d_norm: .*expected 'norm'"):
        dcgan_spec(32, d_norm="relu")
    with pytest.raises(SpecError, match=r"^image_size: must be a power of two"):
        dcgan_spec(48)
    with pytest.raises(SpecError, match=r"^g_upsampel: not a dcgan_spec choice"):
        dcgan_spec(32, g_upsampel="tconv")


# --- a spec file is data only ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "image_size: !!python/object/apply:os.system ['echo pwned']\n",
        "image_size: !!python/name:os.system\n",
        "x: !!python/object:collections.OrderedDict {}\n",
    ],
)
def test_yaml_cannot_execute_code(tmp_path, text: str) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"evil\.yaml: cannot parse YAML"):
        load_spec(path)


def test_a_spec_cannot_name_an_import_path() -> None:
    d = _base()
    d["generator"]["layers"][0]["block"] = "torch.nn.ConvTranspose2d"
    assert "is not a registered block" in _error(d)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SpecError, match=r"bad\.json: cannot parse JSON"):
        load_spec(tmp_path / "bad.json")
    (tmp_path / "spec.txt").write_text("{}")
    with pytest.raises(SpecError, match="unknown file type"):
        load_spec(tmp_path / "spec.txt")
    (tmp_path / "list.yaml").write_text(textwrap.dedent("- 1\n- 2\n"))
    with pytest.raises(SpecError, match="a spec must be a mapping"):
        load_spec(tmp_path / "list.yaml")


def test_public_api_is_exported() -> None:
    for name in ganarch.__all__:
        assert hasattr(ganarch, name), name


def test_the_spec_is_data_and_the_builder_checks_its_layers() -> None:
    """``ganarch.spec`` parses without knowing blocks; the public ``GANSpec`` (the builder's)
    validates, and importing the builder loads no torch until a spec is planned or built."""
    import subprocess
    import sys

    from ganarch.builder import GANSpec as BuilderSpec
    from ganarch.spec import SpecData

    assert GANSpec is BuilderSpec and issubclass(GANSpec, SpecData)
    d = dcgan_spec(16, channels=1).to_dict()
    d["generator"]["layers"][0]["block"] = "no_such_block"
    data = SpecData.from_dict(d)  # structure and sizes only
    assert not hasattr(data, "build") and data.generator[0].block == "no_such_block"
    with pytest.raises(SpecError, match=r"generator\.layers\[0\]\.block"):
        GANSpec.from_dict(d)
    assert type(GANSpec.from_dict(d, validate=False).replace(latent_dim=8)) is GANSpec
    code = "import sys, ganarch.builder; print(sorted({'torch'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
