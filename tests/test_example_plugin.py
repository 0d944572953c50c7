"""The worked third-party plugin in examples/: pip-installed, discovered, usable in a spec.

It is installed with ``pip install --target`` into a temporary folder that only the
subprocesses below put on their path, so the shared environment is never changed (other
test runs may be using it at the same time) and nothing is left behind if the run dies.
Discovery is the real one: pip writes the ``ganarch`` entry point into the dist-info there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ganarch.plugin.manager

pytestmark = pytest.mark.slow  # a pip install and four fresh interpreters (~20-40 s)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ganarch-example-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the installed example plugin."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert (target / "ganarch_example_plugin" / "__init__.py").is_file()
    return target


def _run(site: Path, *args: str, disable: bool = False) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop(ganarch.plugin.manager.DISABLE_ENV, None)
    if disable:
        env[ganarch.plugin.manager.DISABLE_ENV] = "1"
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_example_blocks_are_listed(site: Path) -> None:
    proc = _run(site, "-m", "ganarch", "blocks", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["reflect_conv_up"]["plugin"] == "example"
    assert rows["reflect_conv_up"]["kind"] == "upsample"
    assert rows["mish"]["plugin"] == "example" and rows["mish"]["kind"] == "activation"
    assert rows["tconv"]["plugin"] == "builtin"
    assert "warning" not in proc.stderr


_BUILD = textwrap.dedent(
    """
    import json, torch, ganarch
    spec = ganarch.dcgan_spec(32, channels=1, latent_dim=16, width=8,
                              g_upsample="reflect_conv_up", g_activation="mish",
                              d_activation="mish")
    G, D = spec.build()
    images = G(torch.randn(4, 16))
    scores = D(images)
    scores.sum().backward()
    plugins = {p.name: p.source for p in ganarch.plugin.manager.plugins()}
    print(json.dumps({
        "image": list(images.shape), "scores": list(scores.shape), "plugins": plugins,
        "blocks": sorted({layer.block for layer in spec.generator}),
        "grads": all(p.grad is not None for p in G.parameters()),
    }))
    """
)


def test_example_blocks_build_in_a_spec(site: Path) -> None:
    result = json.loads(_run(site, "-c", _BUILD).stdout)
    assert result["image"] == [4, 1, 32, 32] and result["scores"] == [4]
    assert result["plugins"]["example"] == "entry point"
    assert {"reflect_conv_up", "mish"} <= set(result["blocks"])
    assert result["grads"]


def test_disable_env_hides_the_example(site: Path) -> None:
    proc = _run(site, "-m", "ganarch", "plugins", "--json", disable=True)
    assert [r["name"] for r in json.loads(proc.stdout)] == ["builtin"]


def test_example_blocks_pass_the_contract_test(site: Path) -> None:
    """The repository's contract test, collected where the plugin is installed, covers it."""
    tests = Path(__file__).resolve().parent
    proc = _run(
        site, "-m", "pytest", str(tests / "test_registry.py"), "-q", "-p", "no:cacheprovider",
        "-k", "test_block_contract and (mish or reflect_conv_up)",
    )  # fmt: skip
    assert "2 passed" in proc.stdout, proc.stdout
