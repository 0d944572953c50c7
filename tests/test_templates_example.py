"""The second template family in examples/ (the vanilla MLP GAN): pip-installed, searched and
analysed end to end with nothing in ganarch knowing it.

Installed with ``pip install --target`` into a temporary folder that only the subprocesses
below put on their path (as tests/test_example_plugin.py does), so the shared environment is
never changed. The search is tiny (CPU, 10 trials of 30 steps on 16×16 digits) but real: it
trains every trial and scores it, and the analysis commands read the study it wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ganarch.plugin.manager

pytestmark = pytest.mark.slow  # a pip install, a 10-trial search and six fresh interpreters

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ganarch-mlp-template"
STUDY = "mlp-digits"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the installed template plugin."""
    work = tmp_path_factory.mktemp("mlp-template")
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
    assert (target / "ganarch_mlp_template" / "mlp.toml").is_file()  # the space ships with it
    return target


def _run(site: Path, cwd: Path, *args: str, code: int = 0, disable: bool = False):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",
    }
    env.pop(ganarch.plugin.manager.DISABLE_ENV, None)
    if disable:
        env[ganarch.plugin.manager.DISABLE_ENV] = "1"
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )
    assert proc.returncode == code, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


@pytest.fixture(scope="module")
def study(site: Path, tmp_path_factory) -> Path:
    """A folder holding a finished 10-trial search of the MLP space on digits."""
    work = tmp_path_factory.mktemp("mlp-study")
    space = site / "ganarch_mlp_template" / "mlp.toml"
    _run(
        site, work, "-m", "ganarch", "search", "--space", str(space), "--data", "digits",
        "--trials", "10", "--steps", "30", "--sampler", "random", "--pruner", "none",
        "--device", "cpu", "--storage", "s.journal", "--out", "runs", "--quiet",
    )  # fmt: skip
    return work


def test_the_template_is_found_through_its_entry_point(site: Path, tmp_path: Path) -> None:
    rows = json.loads(_run(site, tmp_path, "-m", "ganarch", "templates", "--json").stdout)
    assert {r["name"]: r["plugin"] for r in rows} == {"dcgan": "builtin", "mlp": "mlp"}
    shown = json.loads(_run(site, tmp_path, "-m", "ganarch", "templates", "mlp", "--json").stdout)
    notes = {c["name"]: c["notes"] for c in shown["choices"]}
    assert notes["g_norm"] == ["only when g_layers is set"]
    inspected = json.loads(
        _run(site, tmp_path, "-m", "ganarch", "inspect", "mlp:16", "--json").stdout
    )
    assert [layer["block"] for layer in inspected["generator"]["layers"]][-2:] == [
        "project_dense",
        "tanh",
    ]
    assert inspected["generator"]["out_shape"] == [3, 16, 16]
    off = _run(site, tmp_path, "-m", "ganarch", "inspect", "mlp:16", code=2, disable=True)
    line = off.stderr.strip()
    assert "\n" not in line and "unknown template 'mlp'" in line
    assert "third-party plugins are off" in line


def test_the_search_trains_and_scores_every_trial(site: Path, study: Path) -> None:
    proc = _run(site, study, "-m", "ganarch", "trials", STUDY, "--storage", "s.journal", "--json")
    rows = json.loads(proc.stdout)
    assert len(rows) == 10 and all(r["state"] == "COMPLETE" for r in rows)
    assert not any(r.get("failure") for r in rows), [r.get("failure") for r in rows]
    assert {"g_layers", "d_layers", "d_wrap"} <= set().union(*(r["params"] for r in rows))
    spec = json.loads((study / "runs" / "trial-0" / "spec.json").read_text())
    assert spec["meta"]["template"] == "mlp"
    assert spec["discriminator"]["layers"][-2]["block"] == "head_dense"


def test_rules_say_the_papers_claims_do_not_apply(site: Path, study: Path) -> None:
    proc = _run(site, study, "-m", "ganarch", "rules", STUDY, "--storage", "s.journal", "--json")
    table = json.loads(proc.stdout)
    assert table["rules"] == []  # no verdict on look-alike choices (g_activation, beta1)
    assert "this study searched template 'mlp', so none of them applies" in table["notes"][0]
    importances = table["param_importances"]  # the study's own parameters are still ranked
    assert importances and set(importances) <= {
        "g_layers", "d_layers", "g_norm", "g_activation", "d_activation",
        "d_activation_params.slope|leaky_relu", "d_wrap", "beta1", "lr",
    }  # fmt: skip
    assert abs(sum(importances.values()) - 1) < 1e-6
    shown = _run(site, study, "-m", "ganarch", "rules", STUDY, "--storage", "s.journal")
    assert "none of them applies" in shown.stderr


def test_best_spec_and_report_work_for_the_template(site: Path, study: Path) -> None:
    proc = _run(
        site, study, "-m", "ganarch", "best", STUDY, "--storage", "s.journal", "-o", "best.json"
    )
    assert "differs from the 'mlp' template's defaults" in proc.stdout
    build = (
        "import json, torch, ganarch\n"
        "spec = ganarch.load_spec('best.json')\n"
        "G, D = spec.build()\n"
        "x = G(torch.randn(2, spec.latent_dim))\n"
        "print(json.dumps([list(x.shape), list(D(x).shape), spec.meta['template']]))\n"
    )
    shapes = json.loads(_run(site, study, "-c", build).stdout)
    assert shapes == [[2, 1, 16, 16], [2], "mlp"]
    _run(site, study, "-m", "ganarch", "report", STUDY, "--storage", "s.journal", "-o", "rep")
    page = (study / "rep" / "report.html").read_text()
    assert "none of them applies" in page and "<img" in page
