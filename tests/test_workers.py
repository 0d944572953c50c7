"""``--workers auto`` (the default): 1 on a CPU; on CUDA as many trials at once as the GPU's free
memory holds, bounded by the CPU cores. The rule is a pure function, so it is tested here
without a GPU; the CUDA path itself (torch.cuda.mem_get_info) runs only on a GPU machine."""

from __future__ import annotations

import pickle

import pytest
import typer
from typer.testing import CliRunner

import ganarch
from ganarch.errors import GanarchError
from ganarch.search.api import DEFAULTS, make_config
from ganarch.search.workers import (
    MAX_AUTO_WORKERS,
    PROCESS_BYTES,
    choose_workers,
    parse_workers,
    worker_bytes,
)

GIB = 2**30


def test_the_default_is_auto_and_is_one_worker_on_a_cpu() -> None:
    assert DEFAULTS["workers"] == "auto"
    config = make_config(space="quick", data="digits", device="cpu")
    assert config.workers == "auto"
    assert config.worker_count == 1 and "cpu" in config.worker_choice.reason
    assert make_config(space="quick", data="digits", workers=3).worker_count == 3


def test_the_choice_is_made_once_and_travels_to_the_workers() -> None:
    config = make_config(space="quick", data="digits", device="cpu")
    choice = config.worker_choice
    again = pickle.loads(pickle.dumps(config))
    assert again.__dict__.get("worker_choice") == choice  # not decided again in a worker


def test_sqlite_storage_keeps_auto_at_one_writer(tmp_path) -> None:
    config = make_config(space="quick", data="digits", storage=f"sqlite:///{tmp_path}/s.db")
    assert config.worker_count == 1 and "SQLite" in config.worker_choice.reason


def test_on_cuda_the_free_memory_and_the_cores_bound_the_count() -> None:
    per = 2 * GIB
    assert choose_workers("cuda", 16, 130 * GIB, per).count == MAX_AUTO_WORKERS
    four = choose_workers("cuda", 4, 130 * GIB, per)
    assert four.count == 4 and "4 CPU cores" in four.reason
    tight = choose_workers("cuda", 16, 7 * GIB, per)  # 0.8 × 7 GiB holds two 2-GiB workers
    assert tight.count == 2 and "free memory" in tight.reason
    assert choose_workers("cuda", 16, 1 * GIB, per).count == 1  # never fewer than one
    assert choose_workers("cuda", 16, None, per).count == 1
    assert choose_workers("mps", 16, 130 * GIB, per).count == 1


def test_a_worker_costs_more_with_more_seeds_and_a_bigger_net() -> None:
    small = ganarch.dcgan_spec(32, 1, width=32)
    big = ganarch.dcgan_spec(64, 3, width=128)
    assert PROCESS_BYTES < worker_bytes(small, 1) < worker_bytes(small, 4)
    assert worker_bytes(small, 1) < worker_bytes(big, 1)
    # four seeds cost four times one seed's tensors, plus one process
    assert worker_bytes(small, 4) - PROCESS_BYTES == 4 * (worker_bytes(small, 1) - PROCESS_BYTES)


@pytest.mark.parametrize("bad", ["0", "x", 0, -2, True, 2.5, None])
def test_bad_workers_is_one_line_naming_the_option(bad) -> None:
    with pytest.raises(GanarchError, match=r"^--workers: "):
        parse_workers(bad)
    assert parse_workers(" AUTO ") == "auto" and parse_workers("3") == 3


def test_the_command_line_takes_auto_and_refuses_nonsense(tmp_path, monkeypatch) -> None:
    from ganarch.cli import _Group
    from ganarch.cli.search import register

    app = typer.Typer(cls=_Group)
    register(app)

    @app.callback()
    def _root() -> None:
        """ganarch (test app)."""

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["search", "--space", "quick", "--workers", "many"])
    assert r.exit_code == 2 and "--workers: expected a whole number or 'auto'" in r.output
    assert not (tmp_path / "ganarch.journal").exists()
