"""Property-based fuzzing (hypothesis) of spec and search-space data: whatever a file holds,
ganarch accepts it or refuses it as bad input (``GanarchError``; exit 2 on the command
line), never a traceback or exit 1. Example counts stay modest for CI time."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ganarch
from ganarch.builder import GANSpec
from ganarch.cli import app
from ganarch.errors import GanarchError
from ganarch.search.space import parse_space

#: Values a hand-edited file may hold anywhere: scalars of every kind, big and odd ones too.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**9, 65536, 65537]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["relu", "tconv", "none", "batchnorm", "strided_conv", "", "../x", "[red]"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

BASE_SPEC = ganarch.dcgan_spec(image_size=8, channels=1, width=8, latent_dim=8).to_dict()
BASE_SPACE = {
    "template": "dcgan",
    "image_size": 8,
    "width": 8,
    "latent_dim": 8,
    "fixed": {"batch_size": 32},
    "choices": {
        "g_upsample": ["tconv", "nearest_conv"],
        "lr": {"low": 1e-4, "high": 1e-3, "log": True},
    },
}


def _paths(data, prefix=()):
    """Every path to a value inside nested dicts and lists."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _mutate(base: dict, draw) -> dict:
    """``base`` with a few values replaced by fuzz, keys dropped or added."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if not path:
            if action == "add" and isinstance(data, dict):
                data[draw(st.text(max_size=8))] = draw(VALUES)
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "drop" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(VALUES)
    return data


@st.composite
def fuzzed_specs(draw):
    return _mutate(BASE_SPEC, draw)


@st.composite
def fuzzed_spaces(draw):
    return _mutate(BASE_SPACE, draw)


FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FUZZ
@given(fuzzed_specs())
def test_a_fuzzed_spec_is_accepted_or_refused_as_bad_input(data):
    try:
        spec = GANSpec.from_dict(data)
    except GanarchError:
        return
    GANSpec.from_dict(json.loads(json.dumps(spec.to_dict())))  # what it accepts round-trips


@FUZZ
@given(fuzzed_spaces())
def test_a_fuzzed_space_is_accepted_or_refused_as_bad_input(data):
    try:
        space = parse_space(data, source="fuzz.toml", name="fuzz")
    except GanarchError:
        return
    space.describe()
    # what a trial of it builds: a spec, or bad input -- never a TypeError that a search
    # would record as a failed configuration instead of refusing the space
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    with contextlib.suppress(GanarchError):
        space.spec(space.suggest(trial), channels=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-files")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(fuzzed_specs())
def test_validate_on_a_fuzzed_spec_file_exits_0_or_2_with_one_line(folder, data):
    path = folder / "spec.json"
    path.write_text(json.dumps(data, allow_nan=True))
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code in (0, 2), r.output
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: ")
