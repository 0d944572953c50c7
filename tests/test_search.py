"""The search end to end on CPU: studies, resume, local workers, failed trials, results, CLI.

Every search here trains real (tiny) GANs: 8×8 digits, width 8, a few steps.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import socket
from pathlib import Path

import optuna
import pytest
import torch
import typer
from optuna.samplers._tpe.sampler import _split_trials  # how TPE uses constraints
from torch import nn
from typer.testing import CliRunner

import ganarch
from ganarch import GANSpec
from ganarch.errors import GanarchError
from ganarch.search import SearchConfig, TrialSettings, best_spec, load_space, run_search
from ganarch.search import engine as engine_module
from ganarch.search.objective import FAILED_CONSTRAINT, PENALTY
from ganarch.search.results import best_trial, list_studies, list_trials
from ganarch.search.storage import STALE_REASON, WORKER_ATTR, open_storage
from ganarch.templates import PAPER_CHOICES

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
d_norm = ["batchnorm", "none"]
beta1 = [0.5, 0.9]
lr = { low = 1e-4, high = 1e-3, log = true }  # continuous: no configuration repeats by chance
"""


@pytest.fixture(autouse=True)
def _fast(tmp_path_factory, monkeypatch):
    # one feature-network cache for the whole session (spawned workers inherit the variable)
    cache = tmp_path_factory.getbasetemp() / "ganarch-cache"
    monkeypatch.setenv("GANARCH_CACHE", str(cache))
    # tiny convolutions: one thread is faster, and avoids fighting other processes for cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def space_file(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPACE)
    return path


def config(tmp_path, space, *, trials=3, study="tiny", sampler="random", pruner="none", **kw):
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
        space=space if not isinstance(space, str | Path) else load_space(space),
        settings=TrialSettings(**settings),
        study_name=study,
        storage=str(tmp_path / "s.journal"),
        trials=trials,
        sampler=sampler,
        pruner=pruner,
        **kw,
    )


def load(cfg) -> optuna.Study:
    return optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage))


def states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# -- end to end ------------------------------------------------------------------------------


def test_search_records_every_trial_per_the_contract(tmp_path, space_file):
    cfg = config(tmp_path, space_file, trials=3, eval_every=6)
    summary = run_search(cfg)
    assert summary.counts == {"COMPLETE": 3} and summary.ran == 3 and not summary.interrupted
    study = load(cfg)
    assert study.metric_names == ["objective"]
    assert study.user_attrs["sampler"] == "random"
    assert study.user_attrs["ganarch"]["data"] == "digits"
    for t in study.trials:
        a = t.user_attrs
        assert (
            set(PAPER_CHOICES) <= set(a["choices"]) and a["choices"]["beta1"] == t.params["beta1"]
        )
        assert a["choices"]["batch_size"] == 32  # fixed settings are part of the choices
        spec = GANSpec.from_dict(a["spec"])
        assert (
            spec.image_size == 8 and spec.channels == 1 and spec.training.beta1 == t.params["beta1"]
        )
        for key in ("quality", "stability", "objective"):
            assert 0.0 <= a[key] <= 1.0
        assert t.value == pytest.approx(a["objective"])
        assert isinstance(a["metrics"], dict) and a["metrics"]
        assert "failure" not in a
        assert t.constraints == {FAILED_CONSTRAINT: 0.0}
        assert sorted(t.intermediate_values) == [6, 12]  # each evaluation was reported
        run = Path(a["artifacts"])
        assert run == tmp_path / "runs" / f"trial-{t.number}"
        assert {"spec.json", "metrics.json", "samples.png"} <= {p.name for p in run.iterdir()}
        assert a[WORKER_ATTR]["pid"] == os.getpid()

    spec = best_spec(cfg.study_name, cfg.storage)
    best = max(study.trials, key=lambda t: t.value)
    assert spec.meta["search"]["trial"] == best.number
    assert spec.to_dict()["generator"] == best.user_attrs["spec"]["generator"]
    G, D = spec.build()
    assert isinstance(G, nn.Module) and isinstance(D, nn.Module)
    assert best_spec(study).meta["search"]["trial"] == best.number  # a Study object works too
    with pytest.raises(GanarchError, match=r"no study named 'nope'.*studies: tiny"):
        best_spec("nope", cfg.storage)
    rows = list_trials(cfg.study_name, cfg.storage)
    assert [r["number"] for r in rows] == [0, 1, 2] and rows[0]["artifacts"]
    assert all(r["state"] == "COMPLETE" and r["failure"] is None for r in rows)


def test_multi_objective_search_and_pareto_pick(tmp_path, space_file):
    cfg = config(tmp_path, space_file, trials=2, objective="multi", pruner="hyperband")
    run_search(cfg)
    study = load(cfg)
    assert study.metric_names == ["quality", "stability"]
    assert study.user_attrs["pruner"] == "none"  # Optuna cannot prune multi-objective studies
    assert states(study) == {"COMPLETE": 2}
    for t in study.trials:
        assert t.values == pytest.approx([t.user_attrs["quality"], t.user_attrs["stability"]])
        assert not t.intermediate_values
    front = study.best_trials
    pick = best_trial(study)
    top = max(t.values[0] * t.values[1] for t in front)
    assert pick in front and pick.values[0] * pick.values[1] == pytest.approx(top)
    assert best_spec(study).meta["search"]["trial"] == pick.number


# -- resume ------------------------------------------------------------------------------------


def _dead_pid() -> int:
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=lambda: None)
    p.start()
    p.join()
    return p.pid


def test_resume_keeps_trials_and_retries_stale_ones(tmp_path, space_file):
    first = config(tmp_path, space_file, trials=2)
    run_search(first)
    study = load(first)
    kept = {t.number: t.value for t in study.trials}
    assert len(kept) == 2

    # a trial left RUNNING by a process that was killed (the journal has no heartbeat)
    trial = study.ask()
    first.space.suggest(trial)
    trial.set_user_attr(
        WORKER_ATTR, {"host": socket.gethostname(), "pid": _dead_pid(), "start": None}
    )
    stale_params = dict(trial.params)

    summary = run_search(config(tmp_path, space_file, trials=4))
    study = load(first)
    by_number = {t.number: t for t in study.trials}
    assert {n: by_number[n].value for n in kept} == kept  # the first two are kept as they were
    stale = by_number[trial.number]
    assert stale.state == optuna.trial.TrialState.FAIL
    assert stale.user_attrs["failure"] == STALE_REASON
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(retry) == 1 and retry[0].params == stale_params
    assert retry[0].state == optuna.trial.TrialState.COMPLETE
    assert states(study) == {"COMPLETE": 4, "FAIL": 1}
    assert summary.ran == 2

    # the same command again has nothing left to do
    again = run_search(config(tmp_path, space_file, trials=4))
    assert again.ran == 0 and states(load(first)) == {"COMPLETE": 4, "FAIL": 1}
    # a different budget is a different search: refused, not mixed in
    with pytest.raises(GanarchError, match=r"other settings: steps=12 \(now 13\)"):
        run_search(config(tmp_path, space_file, trials=5, steps=13))


def test_ctrl_c_records_the_running_trial_and_the_same_command_resumes(
    tmp_path, space_file, monkeypatch
):
    real_train = engine_module.Engine.train
    calls = {"n": 0}

    def interrupted(self, spec, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_train(self, spec, **kw)

    monkeypatch.setattr(engine_module.Engine, "train", interrupted)
    cfg = config(tmp_path, space_file, trials=2)
    summary = run_search(cfg)
    assert summary.interrupted
    study = load(cfg)
    assert states(study) == {"COMPLETE": 1, "FAIL": 1, "WAITING": 1}
    failed = study.trials[1]
    assert failed.user_attrs["failure"] == "interrupted"
    assert study.trials[2].user_attrs["retry_of"] == 1  # queued to run again

    summary = run_search(cfg)
    assert not summary.interrupted and summary.ran == 1
    study = load(cfg)
    assert states(study) == {"COMPLETE": 2, "FAIL": 1}
    assert study.trials[2].params == failed.params
    assert study.trials[2].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.slow
def test_two_local_workers_share_one_storage(tmp_path, space_file, monkeypatch):
    cfg = config(tmp_path, space_file, trials=4, workers=2, sampler="tpe", steps=60, eval_every=60)
    # each worker's first trial waits until both run one (a loaded CI may start one late)
    overlap = Path(__file__).parent / "overlap"
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(overlap), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.setenv("GANARCH_TEST_OVERLAP", cfg.storage)
    monkeypatch.setenv("GANARCH_TEST_OVERLAP_STUDY", cfg.study_name)
    summary = run_search(cfg)
    study = load(cfg)
    assert states(study) == {"COMPLETE": 4}, summary
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    pids = [t.user_attrs[WORKER_ATTR]["pid"] for t in study.trials]
    assert os.getpid() not in pids
    assert len(set(pids)) == 2, pids  # both workers ran trials (not one worker all four)
    runs = {t.user_attrs["artifacts"] for t in study.trials}
    assert len(runs) == 4


# -- failures ---------------------------------------------------------------------------------


class Boom(nn.Module):
    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, out_channels, 4, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        if not x.is_meta:  # passes the builder's shape probe, fails in training
            raise RuntimeError("boom: this block fails on real data")
        return y


class FailingBlocks:
    @ganarch.hookimpl
    def ganarch_register_blocks(self, registrar):
        registrar.add(
            "boom_up",
            kind="upsample",
            factory=lambda s, out_channels: Boom(s.channels, out_channels),
        )

        def picky(s, params):  # a shape rule that rejects small maps: an invalid spec
            if s.height < 16:
                raise ValueError("picky_down needs at least 16×16")
            return type(s)(params["out_channels"], s.height // 2, s.width // 2)

        registrar.add(
            "picky_down",
            kind="downsample",
            factory=lambda s, out_channels: nn.Conv2d(s.channels, out_channels, 4, 2, 1),
            shape=picky,
        )


def test_failing_trials_are_penalised_and_the_study_goes_on(tmp_path, plugin_state):
    plugin_state(FailingBlocks(), name="failing-blocks")
    path = tmp_path / "failing.toml"
    path.write_text(
        SPACE.replace('["tconv", "nearest_conv"]', '["tconv", "boom_up"]')
        .replace('d_norm = ["batchnorm", "none"]', 'd_downsample = ["strided_conv", "picky_down"]')
        .replace(
            "lr = { low = 1e-4, high = 1e-3, log = true }", ""
        )  # the grid needs a finite space
    )
    cfg = config(tmp_path, path, trials=8, sampler="grid")
    summary = run_search(cfg)
    study = load(cfg)
    assert states(study) == {"COMPLETE": 8}  # every grid point ran; none stopped the study
    kinds = {"ok": 0, "boom": 0, "invalid": 0}
    for t in study.trials:
        reason = t.user_attrs.get("failure")
        if t.params["d_downsample"] == "picky_down":
            assert reason.startswith("invalid spec: ") and "picky_down needs at least 16" in reason
            kinds["invalid"] += 1
        elif t.params["g_upsample"] == "boom_up":
            assert reason.startswith("error: RuntimeError: boom")
            assert (
                "Boom.forward" in t.user_attrs["traceback"] or "boom" in t.user_attrs["traceback"]
            )
            kinds["boom"] += 1
        else:
            assert reason is None
            kinds["ok"] += 1
        failed = reason is not None
        # the sampler is told: a penalised value and an infeasible constraint
        assert t.constraints == {FAILED_CONSTRAINT: 1.0 if failed else 0.0}
        if failed:
            assert t.value == PENALTY and t.user_attrs["objective"] == PENALTY
    assert kinds == {"ok": 2, "boom": 2, "invalid": 4}
    assert summary.failures == {"invalid spec": 4, "error: RuntimeError": 2}
    # Optuna's own best trial skips infeasible trials, and so does ganarch's
    assert study.best_trial.user_attrs.get("failure") is None
    assert best_trial(study).params["g_upsample"] == "tconv"
    assert best_trial(study).params["d_downsample"] == "strided_conv"
    # TPE's split puts infeasible trials in its 'bad' group although their value may tie
    below, _above = _split_trials(study, study.get_trials(deepcopy=False), n_below=2)
    assert all(t.user_attrs.get("failure") is None for t in below)


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli():
    from ganarch.cli import _Group
    from ganarch.cli.search import register

    app = typer.Typer(cls=_Group)
    register(app)

    @app.callback()
    def _root() -> None:
        """ganarch (test app)."""

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_search_studies_trials_best(tmp_path, space_file, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--storage", "cli.journal"]
    r = cli(
        "search",
        "--space",
        space_file,
        "--data",
        "digits",
        "--trials",
        2,
        "--steps",
        STEPS,
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--device",
        "cpu",
        "--quiet",
        *common,
    )
    assert r.exit_code == 0, r.output
    assert "tiny-digits" in r.output and "2/2 trials trained" in r.output
    assert (tmp_path / "ganarch-runs" / "tiny-digits" / "trial-0" / "samples.png").exists()

    r = cli("studies", *common, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row["name"] == "tiny-digits" and row["states"] == {"COMPLETE": 2}
    assert row["directions"] == ["maximize"] and row["best_trial"] in (0, 1)
    assert cli("studies", *common).exit_code == 0

    r = cli("trials", "tiny-digits", *common, "--json")
    rows = json.loads(r.stdout)
    assert [x["number"] for x in rows] == [0, 1] and all(x["state"] == "COMPLETE" for x in rows)
    assert set(rows[0]["params"]) == {"g_upsample", "d_norm", "beta1", "lr"}
    assert cli("trials", "tiny-digits", *common).exit_code == 0

    r = cli("best", "tiny-digits", *common, "-o", "best.json")
    assert r.exit_code == 0, r.output
    spec = ganarch.load_spec(tmp_path / "best.json")
    assert spec.meta["search"]["study"] == "tiny-digits"
    spec.build()
    r = cli("best", "tiny-digits", *common, "-o", "best.json")
    assert r.exit_code == 2 and "already exists" in r.output
    assert cli("best", "tiny-digits", *common, "-o", "best.json", "--force").exit_code == 0
    r = cli("best", "tiny-digits", *common, "--json")
    assert GANSpec.from_dict(json.loads(r.stdout)).image_size == 8

    r = cli("best", "tiny-dgits", *common)
    assert r.exit_code == 2 and "did you mean 'tiny-digits'" in r.output

    # the same command again resumes: nothing left to run
    r = cli(
        "search",
        "--space",
        space_file,
        "--trials",
        2,
        "--steps",
        STEPS,
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--device",
        "cpu",
        "--quiet",
        "--json",
        *common,
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["ran"] == 0


def test_cli_bad_input_exits_2(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("search", "--space", "dcgan", "--sampler", "grid", "--storage", "x.journal")
    assert (
        r.exit_code == 2
        and "dcgan.toml: choices.lr: the grid sampler needs a finite space" in r.output
    )
    r = cli("search", "--space", "qiuck")
    assert r.exit_code == 2 and "did you mean 'quick'" in r.output
    r = cli("search", "--space", "quick", "--sampler", "cmaes")
    assert r.exit_code == 2 and "tpe, random, grid, qmc, nsga2" in r.output
    r = cli("studies", "--storage", "missing.journal")
    assert r.exit_code == 2 and "no study storage" in r.output
    r = cli("search", "--space", "quick", "--storage", "redis://localhost")
    assert r.exit_code == 2 and "unsupported storage" in r.output
    # bad input fails before the storage exists: nothing was created by the refused searches
    assert not (tmp_path / "x.journal").exists()


def test_pruned_trials_report_to_the_pruner_and_keep_their_last_metrics(
    tmp_path, space_file, monkeypatch
):
    """Intermediate evaluations reach the pruner; a pruned trial keeps its last metrics.

    The engine is replaced by a scripted one (no training), so the pruning is deterministic:
    four trials report 0.9 at every evaluation, the fifth 0.1, and the median pruner stops it.
    """
    from ganarch.run import Scored

    calls = {"n": 0}

    def scripted(self, spec, *, out_dir, on_eval):
        value = 0.9 if calls["n"] < 4 else 0.1
        calls["n"] += 1
        for step in (4, 8, 12):
            on_eval(step, {"quality": value, "objective": value, "metrics": {"fid": 1 - value}})
        return Scored(
            quality=value,
            stability=1.0,
            stability_components={},
            objective=value,
            diverged=False,
            failure=None,
            metrics={},
            engine={},
        )

    monkeypatch.setattr(engine_module.Engine, "train", scripted)
    cfg = config(tmp_path, space_file, trials=5, pruner="median", eval_every=4)
    summary = run_search(cfg)
    study = load(cfg)
    assert summary.counts == {"COMPLETE": 4, "PRUNED": 1}
    pruned = study.trials[4]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert max(pruned.intermediate_values) < 12  # stopped before its last evaluation
    assert pruned.user_attrs["quality"] == 0.1 and pruned.user_attrs["metrics"] == {"fid": 0.9}
    assert study.trials[0].intermediate_values == {4: 0.9, 8: 0.9, 12: 0.9}


def test_a_repeated_configuration_reuses_the_earlier_result(tmp_path):
    # one possible configuration: every trial after the first is the same one again
    path = tmp_path / "one.toml"
    path.write_text(
        SPACE.replace('["tconv", "nearest_conv"]', '["tconv"]')
        .replace('d_norm = ["batchnorm", "none"]', 'd_norm = ["none"]')
        .replace("[0.5, 0.9]", "[0.5]")
        .replace("lr = { low = 1e-4, high = 1e-3, log = true }", "")
    )
    cfg = config(tmp_path, path, trials=3)
    summary = run_search(cfg)
    first, *repeats = sorted(load(cfg).trials, key=lambda t: t.number)
    # repeats do not use up --trials, but a space with nothing new to offer still ends
    assert len(repeats) == 3 and summary.repeats == 3 and summary.finished == 1
    assert first.state.name == "COMPLETE" and "duplicate_of" not in first.user_attrs
    for t in repeats:
        assert t.state.name == "COMPLETE"
        assert t.user_attrs["duplicate_of"] == first.number
        assert t.value == first.value
        assert t.user_attrs["artifacts"] == first.user_attrs["artifacts"]
        assert not (tmp_path / "runs" / f"trial-{t.number}").exists()  # nothing retrained

    # the rules table counts the configuration once
    from ganarch.analysis.rules import scored_trials

    scored, counts = scored_trials(load(cfg))
    assert [s.number for s in scored] == [first.number] and counts["repeats"] == 3
    # and so do the best trials a search reports (and the live display's counter)
    assert [row["number"] for row in summary.best] == [first.number]
    from rich.console import Console

    from ganarch.search.display import SearchDisplay

    display = SearchDisplay(Console(file=io.StringIO()), live=False)
    display.begin(cfg, load(cfg))
    display.poll(load(cfg), force=True)
    assert display._done() == 1
    assert "repeats trial 0, result reused" in display._line(repeats[0])
    display.end(load(cfg))


# -- bad input never leaves a study or folder behind ---------------------------------------------


def test_bad_input_fails_before_the_study_or_any_file_exists(
    tmp_path, space_file, cli, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    base = ["search", "--space", space_file, "--trials", 1, "--steps", STEPS, "--device", "cpu"]
    base += ["--quiet", "--storage", "b.journal"]
    for extra, words in (
        (["--data", "nosuch"], "'nosuch' is not a registered dataset"),
        (["--image-size", 12], "image_size: must be a power of two"),
        (["--image-size", 12, "--workers", 2], "image_size: must be a power of two"),
    ):
        r = cli(*base, *extra)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and words in lines[0], r.output
    assert not (tmp_path / "b.journal").exists()
    assert not (tmp_path / "ganarch-runs").exists()
    # a storage that cannot be opened is found after the data: the folder claim is undone
    r = cli(*base, "--storage", "nodir/s.journal")
    assert r.exit_code == 2 and "nodir does not exist" in r.output, r.output
    assert not (tmp_path / "ganarch-runs").exists()


def test_resume_refuses_other_eval_settings_and_a_folder_of_another_study(
    tmp_path, space_file, monkeypatch
):
    import dataclasses

    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, space_file, trials=1)
    run_search(cfg)
    marker = tmp_path / "runs" / "study.json"
    assert json.loads(marker.read_text())["study"] == "tiny"
    assert marker.stat().st_mode & 0o777 == 0o644  # readable by others sharing the folder
    assert [p.name for p in marker.parent.iterdir() if p.name.startswith(".study-")] == []
    # the same study and storage, resumed from another working directory, is the owner
    monkeypatch.chdir(tmp_path / "runs")
    assert run_search(cfg).ran == 0

    # a changed evaluation schedule changes what a trial's value means
    for key, value in (("eval_every", STEPS // 2), ("n_eval", 50)):
        other = dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, **{key: value}))
        with pytest.raises(GanarchError, match=f"{key}="):
            run_search(other)

    # the same study name in another storage must not overwrite this one's trial folders
    elsewhere = dataclasses.replace(cfg, storage=str(tmp_path / "other.journal"))
    before = (tmp_path / "runs" / "trial-0" / "metrics.json").read_bytes()
    with pytest.raises(GanarchError, match="belongs to study 'tiny'"):
        run_search(elsewhere)
    assert not (tmp_path / "other.journal").exists()
    assert (tmp_path / "runs" / "trial-0" / "metrics.json").read_bytes() == before
    assert states(load(cfg)) == {"COMPLETE": 1}


def test_cli_names_match_the_search_layer():
    from ganarch.search.defaults import OBJECTIVES
    from ganarch.search.objective import METRIC_NAMES

    assert tuple(METRIC_NAMES) == OBJECTIVES


def test_a_study_of_an_earlier_version_resumes(tmp_path, space_file):
    # earlier versions recorded eval_every unresolved (None: the trainer's default)
    cfg = config(tmp_path, space_file, trials=1, eval_every=None)
    study = optuna.create_study(
        study_name=cfg.study_name, storage=open_storage(cfg.storage), direction="maximize"
    )
    from ganarch.search.study import SETTINGS_ATTR, _settings_record

    old = {**_settings_record(cfg), "eval_every": None}
    old.pop("n_eval")
    study.set_user_attr(SETTINGS_ATTR, old)
    assert run_search(cfg).ran == 1


def test_reading_never_creates_a_storage(tmp_path, monkeypatch):
    from ganarch.search.storage import resolve_url, storage_identity

    monkeypatch.chdir(tmp_path)
    for storage in ("missing.journal", "sqlite:///missing.db"):
        with pytest.raises(GanarchError, match=r"no study storage at .*missing"):
            best_spec("x", storage=storage)
        with pytest.raises(GanarchError, match="no study storage"):
            list_studies(storage)
    assert list(tmp_path.iterdir()) == []
    # one file, one identity, wherever the command runs
    assert resolve_url("sqlite:///missing.db") == f"sqlite:///{tmp_path / 'missing.db'}"
    assert resolve_url("missing.db") == resolve_url("sqlite:///missing.db")
    assert storage_identity("sqlite:///:memory:") == "sqlite:///:memory:"


def test_the_owner_marker_is_created_once_even_without_hard_links(tmp_path, monkeypatch):
    from ganarch.search.artifacts import create_exclusive as _create_exclusive

    assert _create_exclusive(tmp_path / "a.json", "first") is True
    assert _create_exclusive(tmp_path / "a.json", "second") is False

    def no_links(src, dst):
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert _create_exclusive(tmp_path / "b.json", "first") is True
    assert _create_exclusive(tmp_path / "b.json", "second") is False
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temp files
