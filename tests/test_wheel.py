"""The built wheel, not only the editable install: it ships the built-in plugins, the search
spaces and py.typed, and finds them at run time from wherever it is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_ships_plugins_and_search_spaces(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("ganarch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "ganarch/py.typed",
        "ganarch_plugins/blocks.py",
        "ganarch_search_spaces/quick.toml",
        "ganarch_search_spaces/dcgan.toml",
    } <= names
    packages = {  # every package of the source tree, so a new one cannot be left out
        f"{p.relative_to(ROOT).parent.as_posix()}/__init__.py"
        for p in (ROOT / "ganarch").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert packages <= names, sorted(packages - names)

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True,
    )  # fmt: skip
    code = (
        "import ganarch, ganarch_plugins, ganarch_search_spaces\n"
        "from ganarch.search.space import load_space\n"
        f"root = {str(target)!r}\n"
        "import ganarch.plugin\n"
        "for m in (ganarch, ganarch.plugin, ganarch_plugins, ganarch_search_spaces):\n"
        "    assert m.__file__.startswith(root), m.__file__\n"
        "assert 'tconv' in ganarch.blocks('upsample')\n"
        "space = load_space('quick')\n"
        "assert space.image_size == 16, space\n"
        "G, D = ganarch.dcgan_spec(16, 1, width=8).build()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
