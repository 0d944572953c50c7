"""Search-space files: loading, validation errors, suggestion with conditional choices, grids."""

from __future__ import annotations

import optuna
import pytest
from torch import nn

import ganarch
from ganarch import SpecError
from ganarch.registry import blocks
from ganarch.search.space import available_spaces, load_space, parse_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write(tmp_path, text: str, name: str = "space.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def suggest_many(space, n: int = 30, seed: int = 0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((space.suggest(trial), dict(trial.params)))
        study.tell(trial, 0.0)
    return out


# -- shipped spaces ---------------------------------------------------------------------------


def test_shipped_spaces_are_found_by_name():
    spaces = available_spaces()
    assert {"dcgan", "quick"} <= set(spaces)
    dcgan = load_space("dcgan")
    choices = {c.name: c for c in dcgan.choices}
    # every registered upsample/downsample block, and norm including "none"
    assert set(choices["g_upsample"].values) == set(blocks("upsample"))
    assert set(choices["d_downsample"].values) == set(blocks("downsample"))
    assert "none" in choices["g_norm"].values and "batchnorm" in choices["d_norm"].values
    assert choices["beta1"].values == (0.5, 0.9)  # so the rules table can compare the two
    assert choices["lr"].log and choices["lr"].low == pytest.approx(5e-5)
    assert set(choices["d_wrap"].values) == {"none", "spectral_norm"}
    quick = load_space("quick")
    assert quick.is_finite and quick.image_size == 16 and quick.width == 16


@pytest.mark.parametrize("name", ["dcgan", "quick"])
def test_every_suggestion_of_a_shipped_space_builds(name):
    space = load_space(name)
    for choices, _ in suggest_many(space, n=12):
        spec = space.spec(choices, channels=1, image_size=16)
        assert spec.image_size == 16


def test_a_plugin_block_enters_the_search_by_itself(plugin_state):
    def wide_up(in_shape, out_channels: int):
        """A test upsample block."""
        return nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(in_shape.channels, out_channels, 1)
        )

    class Plugin:
        @ganarch.hookimpl
        def ganarch_register_blocks(self, registrar):
            registrar.add("wide_up_test", kind="upsample", factory=wide_up)

    name = plugin_state(Plugin(), name="space-test-plugin")
    up = next(c for c in load_space("dcgan").choices if c.name == "g_upsample")
    assert "wide_up_test" in up.values
    ganarch.unregister_plugin(name)
    up = next(c for c in load_space("dcgan").choices if c.name == "g_upsample")
    assert "wide_up_test" not in up.values


# -- suggestion -------------------------------------------------------------------------------


def test_conditional_choices_get_a_parameter_name_per_branch(tmp_path):
    path = write(
        tmp_path,
        """
template = "dcgan"
image_size = 16
width = 8
[choices]
d_activation = ["leaky_relu", "relu", "elu"]
"d_activation_params.slope" = { low = 0.05, high = 0.3 }
"d_activation_params.alpha" = [0.5, 1.0]
g_dense_layers = [0, 1]
dense_features = [16, 32]
lr = { low = 1e-4, high = 1e-3, log = true }
beta1 = { values = [0.5, 0.9], when = { d_activation = "relu" } }
""",
    )
    space = load_space(path)
    seen = set()
    for choices, params in suggest_many(space, n=40):
        act = choices["d_activation"]
        seen.add(act)
        if act == "leaky_relu":
            assert "d_activation_params.slope|leaky_relu" in params
            assert (
                choices["d_activation_params"]["slope"]
                == params["d_activation_params.slope|leaky_relu"]
            )
        elif act == "elu":
            assert choices["d_activation_params"] == {
                "alpha": params["d_activation_params.alpha|elu"]
            }
        else:
            assert "d_activation_params" not in choices
            assert params["beta1|relu"] == choices["beta1"]
        assert ("dense_features" in params) == (choices["g_dense_layers"] == 1)
        assert choices["lr_g"] == choices["lr_d"] == params["lr"]
        assert "lr" not in choices
        space.spec(choices, channels=1)
    assert seen == {"leaky_relu", "relu", "elu"}


def test_fixed_settings_and_geometry(tmp_path):
    path = write(
        tmp_path,
        """
template = "dcgan"
image_size = 16
width = 8
latent_dim = 12
[fixed]
batch_size = 32
d_activation_params = { slope = 0.1 }
[choices]
g_upsample = ["tconv", "nearest_conv"]
""",
    )
    space = load_space(path)
    (choices, params), *_ = suggest_many(space, n=1)
    assert choices["batch_size"] == 32 and choices["d_activation_params"] == {"slope": 0.1}
    assert set(params) == {"g_upsample"}
    spec = space.spec(choices, channels=3)
    assert (spec.image_size, spec.latent_dim, spec.channels) == (16, 12, 3)
    assert spec.training.batch_size == 32
    assert space.spec(choices, channels=1, image_size=32, width=4).image_size == 32


def test_yaml_space(tmp_path):
    path = write(
        tmp_path,
        "template: dcgan\nimage_size: 16\nchoices:\n  d_norm: {blocks: norm, exclude: [groupnorm]}\n"
        "  d_wrap: {blocks: wrap, include_none: true}\n",
        name="s.yaml",
    )
    space = load_space(path)
    d_norm = next(c for c in space.choices if c.name == "d_norm")
    assert "groupnorm" not in d_norm.values and "none" in d_norm.values
    d_wrap = next(c for c in space.choices if c.name == "d_wrap")
    assert set(d_wrap.values) == {"spectral_norm", "none"}


def test_grid_of_a_finite_space_has_every_branch(tmp_path):
    path = write(
        tmp_path,
        """
image_size = 16
width = 8
[choices]
d_activation = ["leaky_relu", "relu"]
"d_activation_params.slope" = [0.1, 0.2]
g_dense_layers = { low = 0, high = 1, int = true }
""",
    )
    space = load_space(path)
    grid = space.grid()
    assert grid == {
        "d_activation": ["leaky_relu", "relu"],
        "d_activation_params.slope|leaky_relu": [0.1, 0.2],
        "g_dense_layers": [0, 1],
    }
    assert space.grid_size() == 6  # (2 slopes + relu) × 2
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    configs = set()

    def objective(trial):
        configs.add(repr(sorted(space.suggest(trial).items())))
        return 0.0

    study.optimize(objective, n_trials=20)  # the grid sampler stops the study when exhausted
    assert len(study.trials) == 8  # the grid has 2 × 2 × 2 points; relu ignores the slope
    assert len(configs) == 6


def test_grid_needs_a_finite_space():
    space = load_space("dcgan")
    assert not space.is_finite
    with pytest.raises(
        SpecError, match=r"dcgan\.toml: choices\.lr: the grid sampler needs a finite"
    ):
        space.grid()


# -- validation errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[choices]\ng_norm = { blocks = "nrom" }',
            r"choices\.g_norm\.blocks: 'nrom' is not a block kind; did you mean 'norm'\?",
        ),
        (
            "[choices]\ng_upsampel = ['tconv']",
            r"choices\.g_upsampel: unknown choice 'g_upsampel'; did you mean 'g_upsample'",
        ),
        (
            "[choices]\ng_upsample = ['tconv', 'nearest_cnv']",
            r"choices\.g_upsample\[1\]: 'nearest_cnv' is not a registered upsample block; did you mean 'nearest_conv'",
        ),
        (
            "[choices]\ng_upsample = ['strided_conv']",
            r"choices\.g_upsample\[0\]: block 'strided_conv' is a 'downsample' block, expected 'upsample'",
        ),
        (
            '[choices]\ng_norm = { blocks = "upsample" }',
            r"choices\.g_norm\.blocks: choice 'g_norm' takes 'norm' blocks, not 'upsample'",
        ),
        (
            "[choices]\nlr = { low = 1e-3, high = 1e-4 }",
            r"choices\.lr: low \(0\.001\) must be below high",
        ),
        (
            "[choices]\nlr = { low = 0, high = 1e-3, log = true }",
            r"choices\.lr\.low: a log range needs low > 0",
        ),
        (
            "[choices]\nlr = { low = 1e-4, hgh = 1e-3 }",
            r"choices\.lr\.hgh: unknown key; did you mean 'high'",
        ),
        ("[choices]\nbeta1 = 0.5", r"choices\.beta1: must be a list of values, a range table"),
        (
            "[choices]\ng_dense_layers = { low = 0, high = 2 }",
            r"choices\.g_dense_layers: 'g_dense_layers' is an integer; add int = true",
        ),
        (
            "[choices]\n'd_activation_params.slop' = [0.1]",
            r"choices\.d_activation_params\.slop: no d_activation block in \{leaky_relu\} takes a parameter 'slop'; did you mean 'slope'",
        ),
        (
            "[choices]\nbeta1 = { values = [0.5], when = { d_activaton = 'relu' } }",
            r"choices\.beta1\.when\.d_activaton: unknown choice",
        ),
        (
            "[choices]\nd_activation = ['relu']\nbeta1 = { values = [0.5], when = { d_activation = 'elu' } }",
            r"'elu' is not among the values of 'd_activation'",
        ),
        ("[choices]\nlr = [1e-4]\nlr_g = [1e-4]", r"choices\.lr_g: 'lr' already sets 'lr_g'"),
        ("[choices]\n", r"choices: a search space needs at least one choice"),
        (
            "templat = 'dcgan'\n[choices]\nbeta1 = [0.5]",
            r"templat: unknown key; did you mean 'template'",
        ),
        (
            "template = 'stylegan'\n[choices]\nbeta1 = [0.5]",
            r"template: unknown template 'stylegan'",
        ),
        (
            "[fixed]\nbeta1 = 0.5\n[choices]\nbeta1 = [0.5, 0.9]",
            r"choices\.beta1: 'beta1' is also fixed",
        ),
        (
            "[choices]\nbeta1 = [0.5, 1.5]",
            r"choices\.beta1\[1\]: the template rejects 1\.5: must be in \[0, 1\)",
        ),
        ("[choices]\nd_input_norm = [0, 1]", r"choices\.d_input_norm\[0\]: must be true or false"),
        (
            "[choices]\ng_project = ['project_dense']\nd_head = ['head_dense']\n[fixed]\ng_output_activation = 'relux'",
            r"fixed\.g_output_activation\[0\]: 'relux' is not a registered activation block; did you mean 'relu'",
        ),
    ],
)
def test_space_errors_name_the_file_and_the_place(tmp_path, body, message):
    path = write(tmp_path, "image_size = 16\n" + body if not body.startswith("templat") else body)
    with pytest.raises(SpecError, match=message) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: ")


def test_unknown_space_name_and_parse_errors(tmp_path):
    with pytest.raises(SpecError, match=r"no search space named 'qiuck'; did you mean 'quick'"):
        load_space("qiuck")
    with pytest.raises(SpecError, match="no such search-space file"):
        load_space(tmp_path / "missing.toml")
    bad = write(tmp_path, "choices = [", name="bad.toml")
    with pytest.raises(SpecError, match="cannot parse TOML"):
        load_space(bad)
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_space([1, 2], source="x")
