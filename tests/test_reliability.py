"""Nothing lost (issue 11): a journal damaged mid-write, failures of the machine, study names,
unusable storages, size limits, user errors as one line, markup, passwords, and workers that
die with their parent. Searches train real (tiny) GANs: 8×8 digits, width 8, a few steps.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from torch import nn
from typer.testing import CliRunner

import ganarch
from ganarch.builder import GANSpec
from ganarch.cli import app
from ganarch.errors import GanarchError, HostError, SpecError
from ganarch.search import SearchConfig, TrialSettings, journal, load_space, run_search
from ganarch.search import engine as engine_module
from ganarch.search import storage as storage_module
from ganarch.search.objective import FAILED_CONSTRAINT, PENALTY
from ganarch.search.storage import (
    STALE_REASON,
    WORKER_ATTR,
    fail_stale_trials,
    hide_password,
    open_storage,
)
from ganarch.search.study import check_study_name, default_study_name, summary_lines

optuna.logging.set_verbosity(optuna.logging.WARNING)

STEPS = 12
SPACE = """
template = "dcgan"
image_size = 8
width = 8
latent_dim = 8

[fixed]
batch_size = 32

[choices]
g_upsample = ["tconv", "nearest_conv"]
lr = { low = 1e-4, high = 1e-3, log = true }
"""


@pytest.fixture(autouse=True)
def _fast(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "ganarch-cache"
    monkeypatch.setenv("GANARCH_CACHE", str(cache))
    storage_module._cache.clear()  # every test opens its storages afresh, as a new process would
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    storage_module._cache.clear()


@pytest.fixture
def space_file(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPACE)
    return path


def config(tmp_path, space, *, trials=2, study="tiny", **kw) -> SearchConfig:
    settings = {
        "data": "digits",
        "steps": STEPS,
        "device": "cpu",
        "out": str(tmp_path / "runs"),
        "eval_every": STEPS,
        "n_eval": 100,
    }
    settings.update({k: kw.pop(k) for k in list(kw) if k in TrialSettings.__dataclass_fields__})
    return SearchConfig(
        space=load_space(space),
        settings=TrialSettings(**settings),
        study_name=study,
        storage=str(tmp_path / "s.journal"),
        trials=trials,
        sampler="random",
        pruner="none",
        **kw,
    )


def load(cfg) -> optuna.Study:
    storage_module._cache.pop(cfg.storage, None)
    return optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage))


def states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def cli(*args, cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


def one_error_line(result) -> str:
    """The output of a refused command: exactly one line, ``error: ...``, no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def quick_study(path: Path, name: str = "q", n: int = 3) -> None:
    """A journal holding ``n`` finished trials, made without training (Optuna only)."""
    storage = JournalStorage_(path)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)


def JournalStorage_(path: Path):
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


# -- 1. a journal that ends in a partial record -------------------------------------------------


def test_a_partial_last_record_is_set_aside_and_every_read_command_notes_it(tmp_path):
    path = tmp_path / "ganarch.journal"
    quick_study(path)
    whole = path.read_bytes()
    os.truncate(path, len(whole) - 7)  # a crash in the middle of the last append
    partial = whole[whole.rstrip(b"\n").rfind(b"\n") + 1 : -7]

    r = cli("studies", "--storage", path, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["n_trials"] == 3
    note = [line for line in r.stderr.splitlines() if "partial record" in line]
    assert len(note) == 1 and "set aside in" in note[0] and "last whole record" in note[0]
    side = sorted(tmp_path.glob("ganarch.journal.set-aside-*"))
    assert len(side) == 1 and side[0].read_bytes() == partial  # kept, byte for byte
    assert path.read_bytes() == whole[: len(whole) - len(partial) - 7]
    assert path.read_bytes().endswith(b"\n")

    # the study goes on from its last whole record, and stays readable after new appends
    storage_module._cache.clear()
    study = optuna.load_study(study_name="q", storage=open_storage(str(path)))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage_module._cache.clear()
    r = cli("trials", "q", "--storage", path, "--json")
    assert r.exit_code == 0 and "partial record" not in r.stderr
    assert [t["state"] for t in json.loads(r.stdout)].count("COMPLETE") >= 4
    assert len(list(tmp_path.glob("ganarch.journal.set-aside-*"))) == 1  # nothing new


def test_a_partial_record_an_older_version_appended_to_is_split_off(tmp_path):
    path = tmp_path / "ganarch.journal"
    quick_study(path, n=2)
    whole = path.read_bytes()
    lines = whole.splitlines(keepends=True)
    # what older versions made: a partial line, then the next append on the same line
    # and more appends after it
    damaged = b"".join(lines[:-2]) + lines[-2][:25] + b"".join(lines[-2:])
    path.write_bytes(damaged)
    with pytest.raises(ValueError):  # Optuna alone cannot read it any more
        list(JournalFileBackend(str(path)).read_logs(0))
    mended = journal.repair(path)
    assert mended is not None and not mended.trailing_only and mended.n_lines == 1
    assert mended.side_file.read_bytes() == lines[-2][:25]
    assert path.read_bytes() == whole
    assert journal.repair(path) is None  # whole: nothing more to do


def test_a_full_disk_mid_write_stops_the_search_and_the_same_command_resumes(
    tmp_path, space_file, monkeypatch, capsys
):
    real_append = JournalFileBackend.append_logs
    full = {"on": False, "trial": 0, "wrote": False}

    def append(self, logs):
        if not full["on"]:
            attrs = [log.get("user_attr", {}) for log in logs]
            if any("artifacts" in a for a in attrs):
                full["trial"] += 1
                full["on"] = full["trial"] == 2  # the disk fills during the second trial
        if full["on"]:  # half a record reaches the disk, then ENOSPC, and from then on
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            if not full["wrote"]:  # the partial record, once
                with open(self._file_path, "ab") as f:
                    f.write(text.encode()[: len(text) // 2])
                full["wrote"] = True
            raise OSError(errno.ENOSPC, "No space left on device", self._file_path)
        return real_append(self, logs)

    monkeypatch.setattr(JournalFileBackend, "append_logs", append)
    cfg = config(tmp_path, space_file, trials=3)
    with pytest.raises(HostError, match="No space left on device"):
        run_search(cfg)
    monkeypatch.setattr(JournalFileBackend, "append_logs", real_append)

    capsys.readouterr()
    study = load(cfg)
    assert "partial record" in capsys.readouterr().err
    # nothing was scored by the failure: one trial finished, the second never recorded one
    assert states(study) == {"COMPLETE": 1, "RUNNING": 1}
    assert all(t.user_attrs.get("failure") is None for t in study.trials)

    summary = run_search(cfg)  # the same search again, the disk freed
    study = load(cfg)
    assert summary.finished == 3 and states(study) == {"COMPLETE": 3, "FAIL": 1}
    abandoned = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert abandoned.user_attrs["failure"] == STALE_REASON
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == abandoned.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert len(list(tmp_path.glob("s.journal.set-aside-*"))) == 1


# -- 2. failures of the machine are not results -------------------------------------------------


def test_a_read_only_out_folder_mid_search_fails_the_trial_and_queues_it(
    tmp_path, space_file, monkeypatch
):
    real_train = engine_module.Engine.train
    calls = {"n": 0}

    def read_only(self, spec, *, out_dir, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # --out turned read-only while the search runs
            raise OSError(errno.EROFS, "Read-only file system", str(out_dir / "spec.json"))
        return real_train(self, spec, out_dir=out_dir, **kw)

    monkeypatch.setattr(engine_module.Engine, "train", read_only)
    cfg = config(tmp_path, space_file, trials=3)
    with pytest.raises(HostError, match=r"Read-only file system writing .*spec\.json"):
        run_search(cfg)
    study = load(cfg)
    assert states(study) == {"COMPLETE": 1, "FAIL": 1, "WAITING": 1}  # no score for it
    failed = study.trials[1]
    assert failed.user_attrs["failure"].startswith("environment: Read-only file system")
    assert failed.values is None and FAILED_CONSTRAINT not in failed.constraints
    queued = study.trials[2]
    assert (
        queued.user_attrs["retry_of"] == 1 and queued.system_attrs["fixed_params"] == failed.params
    )

    summary = run_search(cfg)  # the folder writable again: the same command resumes
    study = load(cfg)
    assert summary.finished == 3 and states(study) == {"COMPLETE": 3, "FAIL": 1}
    assert all(t.user_attrs.get("failure") is None for t in study.trials if t.number != 1)


def test_a_failure_of_the_machine_is_one_line_and_exit_75_on_the_command_line(
    tmp_path, space_file, monkeypatch
):
    """75 (EX_TEMPFAIL): scripts tell a machine to fix from a bug (1) and bad input (2)."""

    def disk_full(self, spec, *, out_dir, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "samples.png"))

    monkeypatch.setattr(engine_module.Engine, "train", disk_full)
    monkeypatch.setenv("GANARCH_CACHE", os.environ["GANARCH_CACHE"])
    r = cli(
        *("search", "--space", space_file, "--steps", STEPS, "--trials", 3, "--device", "cpu"),
        *("--storage", tmp_path / "s.journal", "-q", "--sampler", "random", "--pruner", "none"),
        cwd=tmp_path,
    )
    assert r.exit_code == 75
    line = one_error_line(r)
    assert "the search stopped: No space left on device" in line and "run the same command" in line
    assert "finished" not in r.output and "GANARCH_DEBUG" not in line
    assert "75 the machine failed" in " ".join(cli("--help").output.split())


@pytest.mark.parametrize(
    ("error", "where", "code", "says"),
    [
        (errno.ENOSPC, "out", 75, "training stopped: No space left on device writing"),
        (errno.EACCES, "data", 2, "cannot read"),
        (errno.ENOENT, "data", 2, "cannot read"),
    ],
)
def test_train_tells_a_failing_machine_from_an_input_it_cannot_read(
    tmp_path, monkeypatch, error, where, code, says
):
    import ganarch.run

    out = tmp_path / "run"
    name = out / "samples.png" if where == "out" else tmp_path / "data" / "0.png"

    def failing(*args, **kw):
        raise OSError(error, os.strerror(error), str(name))

    monkeypatch.setattr(ganarch.run, "train", failing)
    r = cli("train", "dcgan:8", "--data", "digits", "--steps", 2, "--out", out, cwd=tmp_path)
    assert r.exit_code == code and says in one_error_line(r)


class OutOfMemoryBlock(nn.Module):
    """Passes the builder's shape probe, then runs out of CUDA memory on real data."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, out_channels, 4, 2, 1)

    def forward(self, x):
        if not x.is_meta:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return self.conv(x)


class OutOfMemoryBlocks:
    @ganarch.hookimpl
    def ganarch_register_blocks(self, registrar):
        registrar.add(
            "oom_up",
            kind="upsample",
            factory=lambda s, out_channels: OutOfMemoryBlock(s.channels, out_channels),
        )


def test_cuda_out_of_memory_is_the_configurations_failure_and_frees_memory(
    tmp_path, plugin_state, monkeypatch
):
    plugin_state(OutOfMemoryBlocks(), name="oom-blocks")
    freed = {"n": 0}
    real_free = engine_module.free_device_memory

    def counting_free():
        freed["n"] += 1
        real_free()

    monkeypatch.setattr(engine_module, "free_device_memory", counting_free)
    path = tmp_path / "oom.toml"
    path.write_text(SPACE.replace('["tconv", "nearest_conv"]', '["oom_up"]'))
    cfg = config(tmp_path, path, trials=2)
    summary = run_search(cfg)  # the study goes on: a configuration that does not fit scores 0
    study = load(cfg)
    assert states(study) == {"COMPLETE": 2}
    for t in study.trials:
        assert t.user_attrs["failure"] == "out of memory (CUDA)"
        assert t.value == PENALTY and t.constraints == {FAILED_CONSTRAINT: 1.0}
    assert freed["n"] == 2  # the memory of each failed trial was handed back
    assert summary.failures == {"out of memory (CUDA)": 2}


def test_host_memory_exhaustion_is_the_configurations_failure_not_a_requeue_loop(
    tmp_path, space_file, monkeypatch
):
    def too_big(self, spec, *, out_dir, **kw):
        raise MemoryError  # a configuration too big for this host's RAM, every time

    monkeypatch.setattr(engine_module.Engine, "train", too_big)
    cfg = config(tmp_path, space_file, trials=2)
    summary = run_search(cfg)  # before: HostError on every run, the same trial queued forever
    study = load(cfg)
    assert states(study) == {"COMPLETE": 2}
    for t in study.trials:
        assert t.user_attrs["failure"] == "out of memory (host)" and "retry_of" not in t.user_attrs
        assert t.value == PENALTY and t.constraints == {FAILED_CONSTRAINT: 1.0}
    assert summary.failures == {"out of memory (host)": 2}


class MissingWeights(nn.Module):
    def __init__(self, channels: int, out_channels: int, how: str) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, out_channels, 4, 2, 1)
        self.how = how

    def forward(self, x):
        if x.is_meta:
            return self.conv(x)
        if self.how == "wrapped":
            try:
                open("/nonexistent/weights.pt")  # noqa: SIM115
            except FileNotFoundError:
                raise RuntimeError("pretrained weights missing") from None
        raise FileNotFoundError(2, "No such file or directory", "/nonexistent/weights.pt")


@pytest.mark.parametrize("how", ["raw", "wrapped"])
def test_an_os_error_from_a_blocks_own_code_is_the_configurations_failure(
    tmp_path, plugin_state, how
):
    class Blocks:
        @ganarch.hookimpl
        def ganarch_register_blocks(self, registrar):
            registrar.add(
                "weights_up",
                kind="upsample",
                factory=lambda s, out_channels: MissingWeights(s.channels, out_channels, how),
            )

    plugin_state(Blocks(), name="weights-blocks")
    path = tmp_path / "w.toml"
    path.write_text(SPACE.replace('["tconv", "nearest_conv"]', '["weights_up"]'))
    cfg = config(tmp_path, path, trials=2)
    run_search(cfg)  # no HostError: a block that cannot find its file fails its configuration
    study = load(cfg)
    assert states(study) == {"COMPLETE": 2}
    kind = "FileNotFoundError" if how == "raw" else "RuntimeError"
    for t in study.trials:
        assert t.user_attrs["failure"].startswith(f"error: {kind}")
        assert t.constraints == {FAILED_CONSTRAINT: 1.0}


def test_a_retry_that_fails_on_the_machine_the_same_way_is_penalised_not_queued_again(
    tmp_path, space_file, monkeypatch
):
    real_train = engine_module.Engine.train
    calls = {"n": 0}

    def refused(self, spec, *, out_dir, **kw):
        calls["n"] += 1
        if calls["n"] <= 2:  # the trial and its retry: EACCES writing its artifacts
            raise PermissionError(errno.EACCES, "Permission denied", str(out_dir / "spec.json"))
        return real_train(self, spec, out_dir=out_dir, **kw)

    monkeypatch.setattr(engine_module.Engine, "train", refused)
    cfg = config(tmp_path, space_file, trials=2)
    with pytest.raises(HostError, match="Permission denied"):
        run_search(cfg)
    summary = run_search(cfg)  # the retry fails alike: scored, and the search goes on
    study = load(cfg)
    assert summary.finished == 2 and states(study) == {"FAIL": 1, "COMPLETE": 2}
    retry = study.trials[1]
    assert retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["failure"].startswith("environment failure again on retry")
    assert retry.value == PENALTY and retry.constraints == {FAILED_CONSTRAINT: 1.0}
    assert study.trials[2].user_attrs.get("failure") is None


def test_a_dropped_database_connection_is_a_failure_of_the_machine_never_a_score(
    tmp_path, space_file, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    real = optuna.storages.RDBStorage.set_trial_intermediate_value
    dropped = {"n": 0}

    def drop_once(self, *args, **kw):
        dropped["n"] += 1
        if dropped["n"] == 1:
            raise OperationalError("UPDATE ...", {}, Exception("server closed the connection"))
        return real(self, *args, **kw)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_intermediate_value", drop_once)
    cfg = dataclasses.replace(
        config(tmp_path, space_file, trials=2), storage=f"sqlite:///{tmp_path}/s.db"
    )
    with pytest.raises(HostError, match=r"the database failed .*server closed the connection"):
        run_search(cfg)
    study = load(cfg)
    assert states(study) == {"FAIL": 1, "WAITING": 1}  # nothing scored, the trial queued
    assert study.trials[0].user_attrs["failure"].startswith("environment: the database failed")
    summary = run_search(cfg)  # the server back: the same command resumes
    assert summary.finished == 2 and states(load(cfg)) == {"FAIL": 1, "COMPLETE": 2}


# -- 3. study names are names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../../victim", "/tmp/abs", ".", "..", "a/b", "a\\b", "x..y", "line\nbreak", "-rf", " "],
)
def test_a_study_name_that_is_not_a_name_is_refused_before_anything_is_written(tmp_path, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    r = cli("search", "--space", "quick", "--study", name, "--trials", 1, cwd=work)
    assert r.exit_code == 2
    assert "--study" in one_error_line(r)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]  # nothing written


def test_an_empty_study_name_is_refused_from_python():
    for name in ("", None, "x" * 201):
        with pytest.raises(GanarchError, match="--study"):
            check_study_name(name)


@pytest.mark.parametrize("stem", ["a..b", "-x", "..", "my space!", ".hidden"])
def test_a_default_study_name_is_always_a_name_the_user_never_has_to_fix(tmp_path, stem):
    path = tmp_path / f"{stem}.toml"
    path.write_text(SPACE)
    name = default_study_name(load_space(path), "folder:../../my data")
    assert check_study_name(name) == name and name.endswith("-folder")


def test_ordinary_study_names_pass():
    for name in ("dcgan-digits", "k9", "run_2.1", ":smile:x", "[red]x", "é"):
        assert check_study_name(name) == name


# -- 4. in-memory and unusable storages ---------------------------------------------------------


def test_the_writability_probe_never_creates_or_deletes_the_journal_itself(tmp_path, monkeypatch):
    """Another search may open the same new journal meanwhile: deleting it would lose its
    first records."""
    path = tmp_path / "new.journal"
    touched: list[str] = []
    real_open, real_unlink = os.open, os.unlink

    def spy_open(name, *args, **kw):
        touched.append(os.fspath(name))
        return real_open(name, *args, **kw)

    def spy_unlink(name, *args, **kw):
        touched.append(os.fspath(name))
        return real_unlink(name, *args, **kw)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "unlink", spy_unlink)
    storage_module.check_storage(str(path))
    monkeypatch.undo()
    assert touched and str(path) not in touched and list(tmp_path.iterdir()) == []


def test_journal_files_named_like_a_database_are_journals_and_a_postgresql_url_needs_no_database(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # --storage postgresql-runs.journal, as typed
    for name in ("postgresql-runs.journal", "mysql.journal", "sqlite-notes.journal"):
        url = storage_module.resolve_url(name)
        assert storage_module.is_journal(url) and url == str(tmp_path / name)
    for url in ("postgresql://u:pw@db.example", "postgresql+psycopg://u@h:5433"):
        storage_module.check_storage(url)  # libpq takes the user's name as the database
    with pytest.raises(GanarchError, match="as a database URL"):
        storage_module.check_storage("mysql://u@h")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_is_opened_with_psycopg_3_whatever_sqlalchemy_defaults_to(scheme):
    """SQLAlchemy 2.0 maps postgresql:// to psycopg2 and no version reads postgres://; the
    extras install psycopg 3, so ganarch names it: the storage reaches the server."""
    pytest.importorskip("psycopg", reason="pip install 'ganarch[postgres]'")
    from sqlalchemy.engine import make_url

    url = f"{scheme}://u:secret@127.0.0.1:1/db"
    assert make_url(storage_module.driver_url(url)).get_dialect().driver == "psycopg"
    with pytest.raises(GanarchError) as refused:  # nothing listens on port 1
        open_storage(url)
    message = str(refused.value)
    assert "port 1 failed" in message and "plugin" not in message and "driver" not in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("sqlite:///", "in-memory database"),
        ("sqlite:///:memory:", "in-memory database"),
        ("sqlite:garbage", "not a SQLite URL"),
        ("postgres:", "cannot read 'postgres:' as a database URL"),
        ("/proc/x.journal", "cannot create /proc/x.journal"),
        ("missing/x.db", "does not exist"),
    ],
)
def test_an_unusable_storage_is_refused_before_anything_starts(tmp_path, storage, says):
    r = cli("search", "--space", "quick", "--storage", storage, "--trials", 1, cwd=tmp_path)
    assert r.exit_code == 2 and says in one_error_line(r)
    assert list(tmp_path.iterdir()) == []  # no study, no artifacts folder claimed
    r = cli("studies", "--storage", storage, cwd=tmp_path)
    assert r.exit_code == 2 and one_error_line(r)


# -- 5. limits ----------------------------------------------------------------------------------


def _spec_dict() -> dict:
    return ganarch.dcgan_spec(image_size=8, channels=1, width=8, latent_dim=8).to_dict()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            lambda d: d["generator"]["layers"][0]["params"].update(out_channels=10**9),
            "generator.layers[0].params.out_channels: at most",
        ),
        (lambda d: d["training"].update(batch_size=10**12), "training.batch_size: at most"),
        (lambda d: d.update(image_size=65536), "image_size: at most"),
        (
            lambda d: d["discriminator"].update(layers=["leaky_relu"] * 10_000),
            "discriminator.layers: 10000 layers; at most",
        ),
        # fits every single limit, but not the memory of a training step
        (
            lambda d: (
                d["training"].update(batch_size=65536)
                or d.update(image_size=8)
                or d["generator"]["layers"][0]["params"].update(out_channels=65536)
            ),
            "one training step would hold about",
        ),
    ],
)
def test_sizes_no_machine_could_train_are_located_spec_errors(change, where):
    d = _spec_dict()
    change(d)
    with pytest.raises(SpecError, match=where.replace("[", r"\[").replace("]", r"\]")):
        GANSpec.from_dict(d)


def test_parameters_are_counted_before_any_allocation():
    d = ganarch.dcgan_spec(image_size=32, channels=1, width=8, latent_dim=8).to_dict()
    for layer in d["generator"]["layers"]:
        if "out_channels" in layer.get("params", {}) and layer["params"]["out_channels"] != 1:
            layer["params"]["out_channels"] = 60000
    with pytest.raises(SpecError, match="parameters in G and D; at most"):
        GANSpec.from_dict(d)  # ~10^10 weights: planned on the meta device, never allocated


def test_fused_seeds_that_together_exceed_the_activation_limit_train_one_at_a_time(monkeypatch):
    from ganarch import fused
    from ganarch import spec as spec_module
    from ganarch.stepper import StepOptions
    from ganarch.templates import dcgan_spec

    spec = dcgan_spec(8, width=8, channels=1, latent_dim=8)
    one = fused.planned_activation_bytes(spec)
    monkeypatch.setattr(spec_module, "MAX_ACTIVATION_BYTES", int(one * 2.5))  # 2 fit, 3 do not
    on = StepOptions(fused_seeds="on")
    reason = fused._why_sequential(spec, torch.device("cpu"), on, 3)
    assert reason is not None and reason.startswith("3 seeds fused would hold about")
    assert fused._why_sequential(spec, torch.device("cpu"), on, 2) is None  # fuses


def test_yaml_aliases_that_expand_exponentially_are_refused(tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    body = "\n".join("  " + line for line in levels)
    path.write_text(
        "image_size: 8\nchannels: 1\nlatent_dim: 8\ngenerator: [project_tconv]\n"
        f"discriminator: [head_dense]\nmeta:\n{body}\n"
    )
    r = cli("validate", path)
    assert r.exit_code == 2 and "expands to more than" in one_error_line(r)


# -- 7. every error a user can cause: one line, exit 2 -----------------------------------------


def _files(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text('{"image_size": ' + "9" * 5000 + "}")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "deep.yaml").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "afile").write_text("")
    from PIL import Image

    for i in range(3):
        (tmp_path / "three").mkdir(exist_ok=True)
        Image.new("L", (8, 8), 20 * i).save(tmp_path / "three" / f"{i}.png")
    for i in range(8):
        (tmp_path / "mixed" / "cats").mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 20 * i).save(tmp_path / "mixed" / "cats" / f"{i}.png")
    Image.new("L", (8, 8), 5).save(tmp_path / "mixed" / "stray.png")


USER_ERRORS = [
    (["train", "dcgan:abc"], "dcgan:abc: no such file"),
    (["spec", "dcgan:65536"], "image_size: at most 1024"),
    (["spec", "dcgan:16", "--choice", "latent_dim=16"], "set with --latent-dim"),
    (["spec", "dcgan:16", "--choice", "g_dense_layers=1000000000"], "g_dense_layers: at most"),
    (["train", "dcgan:8", "--data", "digits", "--out", "/proc/x"], "--out: cannot create /proc/x"),
    (["train", "dcgan:8", "--data", "digits", "--out", "afile/sub"], "afile is a file"),
    (["search", "--storage", "/proc/x.journal"], "cannot create /proc/x.journal"),
    (["studies", "--storage", "sqlite:garbage"], "not a SQLite URL"),
    (["studies", "--storage", "postgres:"], "as a database URL"),
    (["validate", "big.json"], "big.json: cannot parse JSON: Exceeds the limit"),
    (["validate", "deep.json"], "deep.json: nested too deeply"),
    (["validate", "deep.yaml"], "deep.yaml: nested too deeply"),
    (["search", "--data", "folder:three", "--storage", "s.journal"], "3 image(s)"),
    (["search", "--data", "folder:mixed", "--storage", "s.journal"], "stray.png) lie beside"),
]


@pytest.mark.parametrize(("args", "says"), USER_ERRORS, ids=[" ".join(a) for a, _ in USER_ERRORS])
def test_every_error_a_user_can_cause_is_one_line_and_exit_2(tmp_path, args, says):
    _files(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = cli(*args, cwd=tmp_path)
    assert r.exit_code == 2, r.output
    assert says in one_error_line(r)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no study, no run folder


def _two_activations_in_a_row() -> dict:
    d = _spec_dict()
    layers = d["discriminator"]["layers"]
    i = next(i for i, layer in enumerate(layers) if layer["block"] == "leaky_relu")
    layers.insert(i + 1, {"block": "relu"})  # LeakyReLU then ReLU, both in place
    return d


def test_a_spec_that_validates_trains_even_with_in_place_activations_in_a_row(monkeypatch):
    from ganarch import networks as builder

    spec = GANSpec.from_dict(_two_activations_in_a_row())
    x = torch.randn(4, 1, 8, 8)

    def step() -> None:
        _G, D = spec.build()
        D(torch.tanh(x) * 1.0).sum().backward()  # one backward pass through D

    step()  # trains
    monkeypatch.setattr(builder, "_guard_inplace", lambda module, previous: None)
    with pytest.raises(RuntimeError, match="inplace operation"):
        step()  # what the guard prevents: the second in-place layer breaks the gradient


def test_nested_in_place_layers_are_guarded_and_spectral_norm_keeps_in_place():
    from ganarch.builder import _guard_inplace
    from ganarch.templates import dcgan_spec

    act = nn.LeakyReLU(0.2)
    nested = nn.Sequential(nn.ReLU(inplace=True))  # a plugin block after an activation
    _guard_inplace(nested, act)
    assert nested[0].inplace is False
    x = torch.randn(4, 3, requires_grad=True)
    nested(act(x * 1.0)).sum().backward()  # trains (in place it raised "inplace operation")

    class Custom(nn.Module):  # its forward may run them in any order: no in-place inside
        def __init__(self):
            super().__init__()
            self.act, self.conv = nn.ReLU(inplace=True), nn.Conv2d(1, 1, 1)

    custom = Custom()
    _guard_inplace(custom, nn.Conv2d(1, 1, 1))
    assert custom.act.inplace is False
    after_conv = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU(inplace=True))
    _guard_inplace(after_conv, None)
    assert after_conv[1].inplace is True  # after a conv in a Sequential: safe, kept

    # spectral norm's parametrization is not a layer: the activation after the conv stays in place
    _G, D = dcgan_spec(32, d_wrap="spectral_norm").build()
    first = next(m for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert first.inplace is True


# -- 8, 9. markup and passwords in messages -----------------------------------------------------


def test_user_text_is_printed_as_typed_never_as_markup_or_emoji(tmp_path):
    path = tmp_path / "s.journal"
    for name in (":smile:x", "[red]x[/]"):
        quick_study(path, name=name, n=1)
    r = cli("studies", "--storage", path)
    assert r.exit_code == 0 and ":smile:x" in r.stdout and "[red]x[/]" in r.stdout
    assert "😄" not in r.output
    r = cli("trials", ":smile:x", "--storage", path)
    assert r.exit_code == 0 and ":smile:x" in r.stdout and "😄" not in r.output
    r = cli("train", "dcgan:abc")
    assert "error: dcgan:abc: no such file" in r.output and "🔤" not in r.output


def test_passwords_are_masked_in_every_printed_url(tmp_path):
    url = "postgresql://ganarch:s3cret-pw@127.0.0.1:1/db"
    r = cli("search", "--space", "quick", "--storage", url, "--trials", 1, cwd=tmp_path)
    assert r.exit_code == 2 and "cannot open postgresql://ganarch:***@127.0.0.1:1/db" in r.output
    assert "s3cret" not in r.output
    for raw, shown in [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:se@cr/et@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://h/db?password=secret&x=1", "postgresql://h/db?password=***&x=1"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("/data/a:b@c.journal", "/data/a:b@c.journal"),
    ]:
        assert hide_password(raw) == shown


def test_a_printed_resume_command_runs_as_printed_never_with_a_masked_password(
    tmp_path, space_file
):
    import shlex

    from ganarch.cli.search import _resume_command

    url = "postgresql://u:s3cret@h:5432/db?password=x&sslmode=require"
    cmd = _resume_command(config(tmp_path, space_file), "tiny.toml", url, None, None, None, True)
    args = shlex.split(cmd)
    assert args[args.index("--storage") + 1] == "postgresql://u@h:5432/db?sslmode=require"
    assert "***" not in cmd and "s3cret" not in cmd
    assert "PGPASSWORD" in storage_module.PASSWORD_HINT


# -- 11. the stale-trial check itself -----------------------------------------------------------


def test_only_this_hosts_dead_workers_are_taken_as_stale(tmp_path):
    storage = open_storage(str(tmp_path / "s.journal"))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    elsewhere = study.ask()
    elsewhere.set_user_attr(WORKER_ATTR, {"host": "another-machine", "pid": dead.pid})
    here = study.ask()
    here.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": dead.pid})
    alive = study.ask()
    alive.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getppid()})
    assert fail_stale_trials(study) == [here.number]
    got = {t.number: t.state for t in study.get_trials()}
    # another machine's worker cannot be judged from here: the RDB heartbeat does that
    assert got[elsewhere.number] == TrialState.RUNNING
    assert got[alive.number] == TrialState.RUNNING
    assert got[here.number] == TrialState.FAIL


def test_resume_never_waits_forever_for_a_trial_another_host_left_running(tmp_path, space_file):
    """A container restarted under a new host name: its killed trial stays RUNNING in the
    journal and nothing here can judge it, so the search ends and names it."""
    import threading

    cfg = config(tmp_path, space_file, trials=1)
    run_search(cfg)
    study = load(cfg)
    left = study.ask()
    left.set_user_attr(WORKER_ATTR, {"host": "container-7f3a", "boot": "x", "pid": 4242})
    storage_module._cache.clear()
    resumed = dataclasses.replace(cfg, trials=2)
    got: dict = {}
    runner = threading.Thread(target=lambda: got.update(s=run_search(resumed)), daemon=True)
    runner.start()
    runner.join(120)  # a trial takes seconds; before the fix this waited forever
    assert not runner.is_alive(), "the resumed search is still waiting for the other host"
    summary = got["s"]
    assert f"trial {left.number} by host container-7f3a pid 4242" in summary.unchecked
    assert "--state fail" in summary.unchecked
    assert summary.unchecked in summary_lines(summary)
    assert load(resumed).trials[left.number].state == TrialState.RUNNING  # never failed here


# -- 6. workers die with their parent; a worker killed mid-step is retried ----------------------


PARENT = """
import sys
from ganarch.search import SearchConfig, TrialSettings, load_space, run_search
settings = TrialSettings(data="digits", steps=400, device="cpu", out=sys.argv[2],
                         eval_every=400, n_eval=100)
run_search(SearchConfig(space=load_space(sys.argv[1]), settings=settings, study_name="tiny",
                        storage=sys.argv[3], trials=40, sampler="random", pruner="none",
                        workers=2))
"""


def _running(path: str) -> list:
    storage_module._cache.pop(path, None)
    try:
        study = optuna.load_study(study_name="tiny", storage=open_storage(path))
    except (KeyError, GanarchError):
        return []
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if WORKER_ATTR in t.user_attrs
    ]


#: Loaded by every worker process (PYTHONPATH): the first trial to train waits until another
#: worker's trial runs, then meets a full disk; every other trial trains for minutes.
FULL_DISK_IN_ONE_WORKER = """
import errno, os, time
import optuna
from ganarch.search import engine, storage

def train(self, spec, *, out_dir, **kw):
    try:
        os.close(os.open(os.environ["ONE_FAILS"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        for _ in range(3000):  # the other worker: interrupted when the search stops
            time.sleep(0.1)
        raise RuntimeError("never stopped")
    for _ in range(600):
        storage._cache.clear()
        study = optuna.load_study(study_name="tiny", storage=storage.open_storage(os.environ["JOURNAL"]))
        if len(study.get_trials(states=(optuna.trial.TrialState.RUNNING,))) >= 2:
            break
        time.sleep(0.1)
    raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "samples.png"))

engine.Engine.train = train
"""


def test_a_failure_of_the_machine_in_one_worker_stops_the_others_at_once(
    tmp_path, space_file, monkeypatch
):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FULL_DISK_IN_ONE_WORKER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("ONE_FAILS", str(tmp_path / "one-fails"))
    cfg = config(tmp_path, space_file, trials=4, workers=2)
    monkeypatch.setenv("JOURNAL", cfg.storage)
    with pytest.raises(HostError, match="a worker met a failure of the machine"):
        run_search(cfg)
    study = load(cfg)
    failures = sorted(t.user_attrs["failure"][:12] for t in study.trials if t.state.is_finished())
    # the other worker's trial was interrupted (recorded, queued again), not trained on
    assert states(study) == {"FAIL": 2, "WAITING": 2}, failures
    assert failures[0].startswith("environment") and failures[-1] == "interrupted"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0


@pytest.mark.slow
@pytest.mark.parametrize("parent_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_workers_die_with_their_killed_parent_and_a_killed_worker_is_retried(
    tmp_path, space_file, parent_signal
):
    journal_path = str(tmp_path / "s.journal")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(PARENT),
            str(space_file),
            str(tmp_path / "runs"),
            journal_path,
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while len({t.user_attrs[WORKER_ATTR]["pid"] for t in _running(journal_path)}) < 2:
            assert time.monotonic() < deadline and parent.poll() is None, "no two workers ran"
            time.sleep(0.5)
        running = _running(journal_path)
        killed, survivor = running[0], running[1]
        os.kill(killed.user_attrs[WORKER_ATTR]["pid"], signal.SIGKILL)  # mid-step, no goodbye
        # SIGKILL: the parent cannot stop its workers, they notice it is gone; SIGTERM: it
        # stops them as Ctrl-C would
        parent.send_signal(parent_signal)
        parent.wait(timeout=90)
        pid = survivor.user_attrs[WORKER_ATTR]["pid"]
        deadline = time.monotonic() + 60
        while not _gone(pid):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.5)
    finally:
        if parent.poll() is None:
            parent.kill()
    # no config.pickle or folder of ours left behind (torch may keep a cache folder there)
    assert not list(temp.rglob("*.pickle")) and not list(temp.glob("ganarch*"))

    storage_module._cache.clear()
    study = optuna.load_study(study_name="tiny", storage=open_storage(journal_path))
    by_number = {t.number: t for t in study.trials}
    assert by_number[survivor.number].state == TrialState.FAIL
    assert by_number[survivor.number].user_attrs["failure"] == "interrupted"
    assert by_number[killed.number].state == TrialState.RUNNING  # SIGKILL left it so

    done = states(study).get("COMPLETE", 0)
    cfg = config(tmp_path, space_file, trials=done + 2, steps=400, eval_every=400)
    summary = run_search(cfg)  # the same search: the killed worker's trial runs again
    study = load(cfg)
    assert summary.finished == done + 2
    assert study.trials[killed.number].user_attrs["failure"] == STALE_REASON
    retried = {t.user_attrs.get("retry_of") for t in study.trials if t.state == TrialState.COMPLETE}
    assert {killed.number, survivor.number} <= retried
