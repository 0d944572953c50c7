"""The first CLI commands: blocks, plugins, validate, inspect, spec; exit codes and streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import ganarch
from ganarch.builder import plan
from ganarch.cli import app

runner = CliRunner()


def _ok(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def _bad(*args: str, code: int = 2):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def _one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


def test_version_and_help() -> None:
    assert _ok("--version").stdout.strip() == f"ganarch {ganarch.__version__}"
    help_text = _ok("--help").stdout
    for command in ("blocks", "plugins", "validate", "inspect", "spec"):
        assert command in help_text


def test_blocks_json_lists_every_block() -> None:
    rows = json.loads(_ok("blocks", "--json").stdout)
    assert {r["name"] for r in rows} == set(ganarch.blocks())
    tconv = next(r for r in rows if r["name"] == "tconv")
    assert tconv["kind"] == "upsample" and tconv["plugin"] == "builtin"
    assert tconv["params"]["out_channels"] == {"required": True, "type": "int"}
    assert tconv["params"]["bias"] == {"required": False, "default": False, "type": "bool"}
    assert tconv["description"].startswith("Fractional-strided")


def test_blocks_kind_filter_and_table() -> None:
    rows = json.loads(_ok("blocks", "--kind", "norm", "--json").stdout)
    assert {r["kind"] for r in rows} == {"norm"}
    assert {"batchnorm", "none"} <= {r["name"] for r in rows}
    table = _ok("blocks", "--kind", "downsample").stdout
    assert "strided_conv" in table and "tconv" not in table


def test_blocks_bad_kind_exits_2_with_closest() -> None:
    line = _one_line_error(_bad("blocks", "--kind", "norms"))
    assert "unknown block kind 'norms'" in line and "'norm'" in line


def test_usage_errors_exit_2_with_one_line() -> None:
    line = _one_line_error(_bad("blocks", "--no-such-option"))
    assert "--no-such-option" in line and "'ganarch blocks --help'" in line
    line = _one_line_error(_bad("blokcs"))
    assert "'blokcs'" in line and "blocks" in line
    line = _one_line_error(_bad("inspect"))
    assert "Missing argument 'spec' (see" in line


def test_bare_command_prints_the_help_only() -> None:
    result = _bad()
    assert "Usage" in result.stdout and result.stderr == ""


def test_template_refs_mean_the_same_everywhere() -> None:
    assert json.loads(_ok("spec", "dcgan:32").stdout)["image_size"] == 32
    line = _one_line_error(_bad("spec", "dcgan:32", "--image-size", "16"))
    assert "disagree" in line
    from ganarch.cli._common import template_spec

    paper = template_spec("dcgan")
    assert (paper.image_size, paper.channels, paper.meta["width"]) == (64, 3, 64)
    bare = json.loads(_ok("inspect", "dcgan", "--json").stdout)
    sized = json.loads(_ok("inspect", "dcgan:64", "--json").stdout)
    assert {**bare, "spec": "dcgan:64"} == sized
    grey = template_spec("dcgan:32", data="digits", width=16)
    assert (grey.image_size, grey.channels, grey.meta["width"]) == (32, 1, 16)
    assert template_spec("dcgan:32", data="shapes").channels == 3


def test_the_command_line_starts_without_torch_or_optuna() -> None:
    code = "import sys, ganarch.cli; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_plugins_json() -> None:
    rows = json.loads(_ok("plugins", "--json").stdout)
    builtin = next(r for r in rows if r["name"] == "builtin")
    assert builtin["source"] == "builtin" and builtin["error"] is None
    assert "tconv" in builtin["blocks"]
    assert "builtin" in _ok("plugins").stdout


def test_plugins_shows_a_failed_plugin(plugin_state) -> None:
    class Broken:
        @ganarch.hookimpl
        def ganarch_register_blocks(self, registrar):
            raise ImportError("needs a library that is not installed")

    plugin_state(Broken(), name="broken")
    with pytest.warns(UserWarning):
        result = _bad("plugins", "--json", code=1)  # a set-up check must not pass
    broken = next(r for r in json.loads(result.stdout) if r["name"] == "broken")
    assert "ImportError: needs a library" in broken["error"]
    result = _bad("plugins", code=1)
    assert "broken" in result.stdout and "ImportError: needs a library" in result.stdout
    assert "error: 1 plugin failed to load ('broken')" in result.stderr
    assert "GANARCH_DISABLE_PLUGINS=1" in result.stderr


def test_validate_ok_and_bad(tmp_path) -> None:
    spec = ganarch.dcgan_spec(32, channels=1, width=8)
    path = spec.save(tmp_path / "spec.json")
    p = plan(spec)
    out = _ok("validate", str(path)).stdout.strip()
    assert out == (
        f"ok: {path} — G {p.generator.n_params:,} params, D {p.discriminator.n_params:,} params"
    )

    d = spec.to_dict()
    d["generator"]["layers"][3]["block"] = "tconvv"
    (tmp_path / "bad.json").write_text(json.dumps(d))
    line = _one_line_error(_bad("validate", str(tmp_path / "bad.json")))
    assert "generator.layers[3].block" in line and "'tconv'" in line

    (tmp_path / "broken.yaml").write_text("image_size: [\n")
    line = _one_line_error(_bad("validate", str(tmp_path / "broken.yaml")))
    assert "cannot parse YAML" in line

    line = _one_line_error(_bad("validate", str(tmp_path / "missing.json")))
    assert "no such file" in line


def test_inspect_table_totals_match_plan(tmp_path) -> None:
    spec = ganarch.dcgan_spec(32, channels=1, width=8, d_norm="none", d_wrap="spectral_norm")
    path = spec.save(tmp_path / "spec.yaml")
    p = plan(spec)
    text = _ok("inspect", str(path)).stdout
    assert f"{p.generator.n_params:,} parameters" in text
    assert f"{p.discriminator.n_params:,} parameters" in text
    assert f"{p.generator.n_params + p.discriminator.n_params:,} parameters" in text
    assert "spectral_norm" in text and "project_tconv" in text

    data = json.loads(_ok("inspect", str(path), "--json").stdout)
    assert data["generator"]["parameters"] == p.generator.n_params
    assert data["parameters"] == p.generator.n_params + p.discriminator.n_params
    layers = data["discriminator"]["layers"]
    assert [layer["block"] for layer in layers] == [x.block for x in spec.discriminator]
    assert layers[0]["wrap"] == ["spectral_norm"]
    assert layers[0]["in_shape"] == [1, 32, 32] and layers[0]["out_shape"] == [8, 16, 16]
    assert sum(layer["parameters"] for layer in layers) == p.discriminator.n_params


def test_inspect_builtin_template() -> None:
    data = json.loads(_ok("inspect", "dcgan:32", "--json").stdout)
    p = plan(ganarch.dcgan_spec(32, channels=3))
    assert data["generator"]["parameters"] == p.generator.n_params
    assert data["image_size"] == 32
    assert json.loads(_ok("inspect", "dcgan", "--json").stdout)["image_size"] == 64
    line = _one_line_error(_bad("inspect", "dcgan:48"))
    assert "power of two" in line


def test_spec_writes_refuses_overwrite_and_parses_choices(tmp_path) -> None:
    out = tmp_path / "spec.json"
    args = ["spec", "dcgan", "--image-size", "32", "--channels", "1", "--width", "16"]
    choices = ["--choice", "d_norm=none", "--choice", "g_dense_layers=1"]
    choices += ["--choice", "beta1=0.9", "--choice", "g_output_norm=true"]
    choices += ["--choice", 'd_activation_params={"slope": 0.1}']
    _ok(*args, *choices, "-o", str(out))
    spec = ganarch.load_spec(out)
    expected = ganarch.dcgan_spec(
        32,
        channels=1,
        width=16,
        d_norm="none",
        g_dense_layers=1,
        beta1=0.9,
        g_output_norm=True,
        d_activation_params={"slope": 0.1},
    )
    assert spec == expected

    before = out.read_text()
    line = _one_line_error(_bad(*args, "-o", str(out)))
    assert "already exists" in line and "--force" in line
    assert out.read_text() == before
    _ok(*args, "-o", str(out), "--force")
    assert ganarch.load_spec(out) == ganarch.dcgan_spec(32, channels=1, width=16)

    assert json.loads(_ok("spec", "--image-size", "16").stdout)["image_size"] == 16
    line = _one_line_error(_bad("spec", "--choice", "g_upsample=tconvv"))
    assert "g_upsample" in line and "'tconv'" in line
    _one_line_error(_bad("spec", "--choice", "no-equals-sign"))
    _one_line_error(_bad("spec", "gan2000"))
    _one_line_error(_bad("spec", "-o", str(tmp_path / "spec.toml")))


def test_real_subprocess_exit_codes(tmp_path) -> None:
    """The installed entry point, not the test runner: exit 2, one line, no traceback."""
    bad = tmp_path / "bad.json"
    d = ganarch.dcgan_spec(16, width=8).to_dict()
    d["discriminator"]["layers"][0]["params"]["out_channels"] = 0
    bad.write_text(json.dumps(d))
    env = {**os.environ, "GANARCH_DEBUG": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "ganarch", "validate", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: discriminator.layers[0].params")
    assert "Traceback" not in proc.stderr


def test_unexpected_errors_exit_1(monkeypatch, capsys) -> None:
    from ganarch.cli import blocks as blocks_module

    def explode(ref):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(blocks_module, "template_spec", explode)
    monkeypatch.delenv("GANARCH_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        ganarch.cli.main(["validate", "dcgan"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: ZeroDivisionError: a bug (set GANARCH_DEBUG=1 for the traceback)"
    ]

    monkeypatch.setenv("GANARCH_DEBUG", "1")
    with pytest.raises(SystemExit) as exc:
        ganarch.cli.main(["validate", "dcgan"])
    assert exc.value.code == 1
    assert "Traceback" in capsys.readouterr().err
