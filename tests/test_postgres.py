"""One study across many machines on PostgreSQL (issue 11).

Each "machine" is a ``ganarch search`` process of its own, with its own working directory,
temp folder and artifacts, sharing nothing but the database, as workers on three machines
would. The server comes from ``GANARCH_TEST_POSTGRES`` (``.ci/run`` starts one on loopback
with ``.ci/postgres start``). Without it the tests skip, except under ``CI=true``, where
PostgreSQL tests must run: there a missing server fails them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ganarch.search import TrialSettings, load_space
from ganarch.search import storage as storage_module
from ganarch.search.engine import Engine
from ganarch.search.storage import WORKER_ATTR, open_storage

URL_ENV = "GANARCH_TEST_POSTGRES"
OVERLAP = str(Path(__file__).parent / "overlap")
#: Steps of a trial that lasts seconds, so a machine can be killed in the middle of one.
STEPS_LONG = 200
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


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get(URL_ENV, "").strip()
    in_ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    if not url:
        reason = f"no PostgreSQL server: set {URL_ENV} (bash .ci/postgres start prints one)"
        if in_ci:
            pytest.fail(f"CI=true but {reason}; the PostgreSQL tests must run in CI")
        pytest.skip(reason)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        if in_ci:
            pytest.fail("CI=true but psycopg is missing: pip install -e '.[test]'")
        pytest.skip("pip install 'ganarch[postgres]'")
    try:
        open_storage(url)
    except Exception as exc:  # the server is named but does not answer
        if in_ci:
            raise
        pytest.skip(f"PostgreSQL at {storage_module.hide_password(url)} does not answer: {exc}")
    return url


@pytest.fixture
def machines(tmp_path, tmp_path_factory, pg_url, monkeypatch):
    """Start ``ganarch search`` "machines" (processes sharing only the database)."""
    space = tmp_path / "tiny.toml"
    space.write_text(SPACE)
    cache = tmp_path_factory.getbasetemp() / "ganarch-cache"
    # the feature network once, before the machines start (each would train its own)
    monkeypatch.setenv("GANARCH_CACHE", str(cache))
    settings = TrialSettings(data="digits", steps=1, device="cpu", out=str(tmp_path / "warm"))
    Engine(settings, load_space(space)).prepare()
    procs: list[subprocess.Popen] = []

    def start(
        name: str, study: str, *, trials: int, steps: int, heartbeat: int = 60, overlap=False
    ):
        home = tmp_path / name
        (home / "tmp").mkdir(parents=True)
        env = {
            **os.environ,
            "GANARCH_CACHE": str(cache),
            "TMPDIR": str(home / "tmp"),  # no lock file shared through /tmp
            "GANARCH_HEARTBEAT": str(heartbeat),
            "OMP_NUM_THREADS": "1",
        }
        if overlap:  # each machine's first trial waits until two run at once (tests/overlap)
            env["PYTHONPATH"] = os.pathsep.join([OVERLAP, os.environ.get("PYTHONPATH", "")])
            env.update(GANARCH_TEST_OVERLAP=pg_url, GANARCH_TEST_OVERLAP_STUDY=study)
        cmd = [
            *(sys.executable, "-m", "ganarch", "search", "--space", str(space), "--data", "digits"),
            *("--study", study, "--storage", pg_url, "--trials", str(trials)),
            *("--steps", str(steps), "--eval-every", str(steps), "--device", "cpu"),
            *("--sampler", "random", "--pruner", "none", "--quiet", "--json"),
        ]
        p = subprocess.Popen(
            cmd, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _study(url: str, name: str) -> optuna.Study:
    storage_module._cache.pop(url, None)  # a fresh view of the database
    return optuna.load_study(study_name=name, storage=open_storage(url))


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


@pytest.mark.slow
def test_three_machines_share_one_study_none_lost_none_duplicated_budget_exact(
    tmp_path, machines, pg_url
):
    study_name = f"three-{uuid.uuid4().hex[:8]}"
    procs = [machines(f"m{i}", study_name, trials=6, steps=30, overlap=True) for i in range(3)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        resume = json.loads(out)["resume"]  # runs as printed: the password from PGPASSWORD
        assert "postgresql://ganarch@" in resume and "***" not in resume
        assert "ganarch-ci" not in out + err  # the password is never printed
    study = _study(pg_url, study_name)
    assert _states(study) == {"COMPLETE": 6}  # budget exact: none lost, none extra
    assert [t.number for t in study.trials] == list(range(6))
    # none duplicated: each trial ran once, on one machine, into that machine's folder
    runs = [Path(t.user_attrs["artifacts"]) for t in study.trials]
    assert len(set(runs)) == 6 and all(r.exists() for r in runs)
    homes = {r.parts[len(tmp_path.parts)] for r in runs}
    assert homes <= {"m0", "m1", "m2"}
    workers = {(t.user_attrs[WORKER_ATTR]["pid"]) for t in study.trials}
    assert len(workers) >= 2  # the machines shared the work


@pytest.mark.slow
def test_a_machine_killed_mid_trial_is_found_by_the_heartbeat_and_its_trial_rerun(machines, pg_url):
    study_name = f"killed-{uuid.uuid4().hex[:8]}"
    # machine A: a long trial, then killed outright (the machine vanishes)
    a = machines("a", study_name, trials=3, steps=STEPS_LONG, heartbeat=1)
    deadline = time.monotonic() + 300
    while True:
        assert a.poll() is None, a.communicate()[1]
        assert time.monotonic() < deadline, "machine A never started a trial"
        try:
            running = _study(pg_url, study_name).get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            running = []
        if running and WORKER_ATTR in running[0].user_attrs:
            break
        time.sleep(0.2)
    victim = running[0]
    time.sleep(0.5)  # its heartbeat is recorded (Optuna judges only trials that had one)
    a.send_signal(signal.SIGKILL)
    a.wait()
    assert _study(pg_url, study_name).trials[victim.number].state == TrialState.RUNNING
    # From B, A's process is on another machine: only its stopped heartbeat can tell it died.
    storage = open_storage(pg_url)
    worker = dict(victim.user_attrs[WORKER_ATTR], host="machine-a.example")
    storage.set_trial_user_attr(victim._trial_id, WORKER_ATTR, worker)

    b = machines("b", study_name, trials=3, steps=STEPS_LONG, heartbeat=1)
    _out, err = b.communicate(timeout=600)
    assert b.returncode == 0, err
    study = _study(pg_url, study_name)
    assert _states(study) == {"COMPLETE": 3, "FAIL": 1}  # the budget, exactly
    failed = study.trials[victim.number]
    assert failed.state == TrialState.FAIL
    assert "failure" not in failed.user_attrs  # not ganarch's own check: Optuna's heartbeat
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == victim.params
