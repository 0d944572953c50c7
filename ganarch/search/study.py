"""Run a study: pick the sampler and pruner, create or resume the study, run local workers.

Resuming is running the same command again: the study is loaded (``load_if_exists``), trials
left RUNNING by a killed process are failed and queued again, and only the trials missing to
reach ``trials`` finished ones (``COMPLETE`` + ``PRUNED``; a configuration proposed again
reuses its earlier result and does not count) are run. Local workers (``workers``)
are spawned processes sharing the storage; a file lock makes them count and start trials one
at a time, so together they run exactly the missing trials.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from ganarch import errors
from ganarch.errors import GanarchError, HostError, PluginError
from ganarch.score.evaluator import check_score_version, score_version
from ganarch.search import artifacts
from ganarch.search import engine as engine_module
from ganarch.search.counts import TrialCounts
from ganarch.search.engine import Engine
from ganarch.search.geometry import Geometry
from ganarch.search.objective import (
    DUPLICATE_ATTR,
    METRIC_NAMES,
    TrialRunner,
    TrialSettings,
    host_failure,
)
from ganarch.search.space import SearchSpace
from ganarch.search.storage import (
    StorageLock,
    check_storage,
    describe_storage,
    fail_stale_trials,
    is_journal,
    open_storage,
    storage_identity,
    unchecked_running,
    unchecked_text,
)
from ganarch.search.strategies import (
    PrunerInfo,
    SamplerInfo,
    StrategyContext,
    get_pruner,
    get_sampler,
)
from ganarch.search.workers import AUTO, WorkerChoice, auto_workers

__all__ = [
    "SearchConfig",
    "SearchSummary",
    "check_study_name",
    "default_study_name",
    "failure_counts",
    "make_pruner",
    "make_sampler",
    "prepare_study",
    "ranked_trials",
    "run_search",
    "run_worker",
    "trial_row",
]

#: Seconds between looks at trials that other workers are still running.
WAIT_S = 2.0
#: The study user attribute holding the settings a resumed run must match.
SETTINGS_ATTR = "ganarch"
#: Settings that change what a trial's value means: a resumed run must keep them.
_MUST_MATCH = (
    "space",
    "space_hash",
    "data",
    "image_size",
    "channels",
    "width",
    "latent_dim",
    "steps",
    "seeds",
    "objective",
    "seed",
    "eval_every",
    "n_eval",
    "score",
)
#: Keys a study must have recorded to be resumed: one without them was scored otherwise.
_REQUIRED = ("score",)


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search (and each of its worker processes) needs; plain, picklable data."""

    space: SearchSpace
    settings: TrialSettings
    study_name: str
    storage: str  # a resolved storage URL or journal path (``storage.resolve_url``)
    trials: int = 10
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "hyperband"
    #: What was asked: a count, or ``"auto"`` (see :attr:`worker_choice`).
    workers: int | str = 1

    @cached_property
    def worker_choice(self) -> WorkerChoice:
        """How many worker processes run, and why: ``workers`` itself, or for ``"auto"`` the
        rule of ``ganarch.search.workers`` (1 on a CPU; on CUDA by free memory), decided once
        and pickled with the config to the workers."""
        if self.workers != AUTO:
            return WorkerChoice(int(self.workers), "asked for")
        if self.storage.startswith("sqlite:"):  # not meant for several writer processes
            return WorkerChoice(1, "SQLite storage: one writer process")
        return auto_workers(self.settings, self.space, self.geometry)

    @property
    def worker_count(self) -> int:
        return self.worker_choice.count

    @cached_property
    def geometry(self) -> Geometry:
        """The search's image size, channels, width and latent size, resolved once (flags,
        then the space's defaults, then the dataset's own channels); the engine, every
        trial's spec and the study's settings record all use this one (it pickles with the
        config, so worker processes get the same object)."""
        return Geometry.resolve(self.settings, self.space)


@dataclass
class SearchSummary:
    """What a search run did and where the study stands."""

    study_name: str
    storage: str
    target: int
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    ran: int = 0  # trials this run finished
    best: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0
    stale: list[int] = field(default_factory=list)
    #: A line naming RUNNING trials of workers this machine cannot check (journal only).
    unchecked: str = ""
    repeats: int = 0  # COMPLETE trials that reused an earlier configuration's result
    #: The study's trials and this run's, in disjoint groups (``search.counts.TrialCounts``).
    trial_counts: dict[str, int] = field(default_factory=dict)
    run_counts: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        """Distinct trained configurations: repeats do not count toward ``--trials``."""
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0) - self.repeats

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finished": self.finished}


#: Longest study name: it names a folder (``ganarch-runs/NAME``), and file names stop at 255.
MAX_STUDY_NAME = 200


def check_study_name(name: Any) -> str:
    """``name`` when it is a name: one path component of printable characters, no ``/`` or
    ``\\``, no ``..``, not starting with ``-``; else a ``GanarchError`` (exit 2). A study name
    becomes the folder of its trials, so anything else could write outside ``ganarch-runs``."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "must be a non-empty name"
    elif len(name) > MAX_STUDY_NAME:
        problem = f"is {len(name)} characters long; at most {MAX_STUDY_NAME}"
    elif not name.isprintable() or name != name.strip():
        problem = "holds a control character or leading/trailing space"
    elif "/" in name or "\\" in name or "\x00" in name:
        problem = "must be a name, not a path (no '/' or '\\')"
    elif ".." in name or name == ".":
        problem = "may not be '.' or contain '..'"
    elif name.startswith("-"):
        problem = "may not start with '-'"
    if problem:
        raise GanarchError(f"--study: {name!r} {problem}; use letters, digits, '-', '_' or '.'")
    return name


def default_study_name(space: SearchSpace, data: str) -> str:
    """``dcgan-digits``: the space's and the dataset's names, made a name ``--study`` accepts
    whatever the space file is called (``a..b.toml``, ``-x.toml``)."""
    data_part = _name_part(data.split(":", 1)[0], "data")
    name = f"{space.name}-{data_part}"
    with contextlib.suppress(GanarchError):
        return check_study_name(name)  # as before: an existing study keeps its name
    return f"{_name_part(space.name, 'space')}-{data_part}"


def _name_part(text: str, fallback: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
    if ".." in text or text.startswith(".") or not text:
        text = re.sub(r"\.{2,}", ".", text).strip("-.")
    return text or fallback


# -- sampler and pruner ------------------------------------------------------------------------


def make_sampler(
    name: str,
    space: SearchSpace,
    *,
    seed: int | None,
    trials: int,
    settings: TrialSettings,
    workers: int = 1,
) -> optuna.samplers.BaseSampler:
    """The registered sampler ``name`` (``ganarch.search.strategies``; the built-ins are in
    ``plugins/search.py``), made for this worker's ``seed``. A factory that fails or returns
    no Optuna sampler: a one-line ``PluginError`` naming the plugin."""
    info = get_sampler(name)
    multi = settings.objective == "multi"
    context = StrategyContext(name, settings, space, seed, trials, multi, workers)
    made = info.factory(context)
    _check_made(made, optuna.samplers.BaseSampler, "--sampler", info, "an Optuna sampler")
    return made


def make_pruner(
    name: str,
    settings: TrialSettings,
    *,
    multi: bool,
    space: SearchSpace | None = None,
    trials: int = 20,
    workers: int = 1,
) -> optuna.pruners.BasePruner:
    """The registered pruner ``name``. Resources are seed-steps (evaluations report at their
    step). Optuna does not prune multi-objective studies, so ``multi`` always gets none."""
    info = get_pruner(name)
    if multi:
        return optuna.pruners.NopPruner()
    context = StrategyContext(name, settings, space, None, trials, multi, workers)
    made = info.factory(context)
    _check_made(made, optuna.pruners.BasePruner, "--pruner", info, "an Optuna pruner")
    return made


def _check_made(
    made: Any, kind: type, flag: str, info: SamplerInfo | PrunerInfo, what: str
) -> None:
    """Optuna takes ``None`` (or anything falsy) for its default sampler or pruner: a factory
    that returns nothing would search with TPE or prune by the median while the study records
    the plugin's name. Refuse anything that is not ``kind`` instead."""
    if not isinstance(made, kind):
        raise PluginError(
            f"{flag} {info.name}: the factory of plugin {info.plugin!r} returned "
            f"{type(made).__name__}, not {what} ({kind.__module__}.{kind.__qualname__})"
        )


def worker_seed(seed: int, worker: int, existing: int) -> int:
    """Distinct, reproducible sampler seeds per worker and per resume (a resumed random
    sampler with the first run's seed would propose the first run's trials again)."""
    text = f"{seed}:{worker}:{existing}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


# -- the study ---------------------------------------------------------------------------------


def _settings_record(config: SearchConfig) -> dict[str, Any]:
    from ganarch.run import default_eval_every

    s, space, geometry = config.settings, config.space, config.geometry
    described = json.dumps([space.template, space.describe()], sort_keys=True, default=str)
    return {
        "space": space.name,
        "space_source": space.source,
        "space_hash": hashlib.sha256(described.encode()).hexdigest()[:16],
        "data": s.data,
        **geometry.to_dict(),  # channels resolved too: the dataset's own when not given
        "steps": s.steps,
        "seeds": s.seeds,
        "objective": s.objective,
        "seed": s.seed,
        "eval_every": s.eval_every or default_eval_every(s.steps),
        "n_eval": s.n_eval,
        "score": score_version(),  # plugin quality terms included
        "out": s.out,
    }


def prepare_study(config: SearchConfig) -> optuna.Study:
    """Create the study, or load it and check that this run continues the same search."""
    multi = config.settings.objective == "multi"
    storage = open_storage(config.storage)
    names = METRIC_NAMES[config.settings.objective]
    study = optuna.create_study(
        storage=storage,
        study_name=config.study_name,
        directions=["maximize"] * len(names),
        load_if_exists=True,
    )
    record = _settings_record(config)
    old = study.user_attrs.get(SETTINGS_ATTR)
    if len(study.directions) != len(names) and old is None:
        raise GanarchError(
            f"study {config.study_name!r} has {len(study.directions)} objective(s) but "
            f"--objective {config.settings.objective} needs {len(names)}; pick another --study"
        )
    if old is not None:
        old = _resolved_record(old)
        diffs = [
            f"{k}={old[k]!r} (now {record[k]!r})"
            if k in old
            else f"{k} not recorded by an older ganarch (now {record[k]!r})"
            for k in _MUST_MATCH
            # Another key older versions did not record: skip; a required one: a difference.
            if (k in old and old[k] != record[k]) or (k not in old and k in _REQUIRED)
        ]
        if diffs:
            rescored = old.get("score") != record["score"]
            raise GanarchError(
                f"study {config.study_name!r} was run with other settings: "
                + "; ".join(diffs)
                + (
                    ". Its values mean something else under this version's score: "
                    "pick a new --study NAME"
                    if rescored
                    else ". Run the same command to resume it, or pick a new --study NAME"
                )
            )
    else:
        study.set_user_attr(SETTINGS_ATTR, record)
        study.set_metric_names(names)
    from ganarch.search.design import check_resumed_design

    check_resumed_design(study, config.space, config.sampler)  # another design mixes matrices
    study.set_user_attr("sampler", config.sampler)
    study.set_user_attr("pruner", "none" if multi else config.pruner)
    return study


def _resolved_record(old: Mapping[str, Any]) -> dict[str, Any]:
    """A record as this version writes it: studies of earlier versions stored ``eval_every``
    unresolved (None for the trainer's default)."""
    from ganarch.run import default_eval_every

    out = dict(old)
    if out.get("eval_every") is None and isinstance(out.get("steps"), int):
        out["eval_every"] = default_eval_every(out["steps"])
    if out.get("channels") is None and isinstance(out.get("data"), str):
        # earlier versions recorded channels unresolved (None: the dataset's own)
        with contextlib.suppress(GanarchError):
            from ganarch.data.registry import native_channels

            out["channels"] = native_channels(out["data"])
    return out


def _owner(config: SearchConfig) -> dict[str, str]:
    return {"study": config.study_name, "storage": storage_identity(config.storage)}


def _counts(trials: list[FrozenTrial]) -> Counter[str]:
    return Counter(t.state.name for t in trials)


def _repeats(trials: list[FrozenTrial]) -> int:
    return sum(1 for t in trials if DUPLICATE_ATTR in t.user_attrs)


def _load_for_worker(config: SearchConfig, worker: int) -> optuna.Study:
    storage = open_storage(config.storage)
    existing = len(
        storage.get_all_trials(storage.get_study_id_from_name(config.study_name), deepcopy=False)
    )
    sampler, pruner = _strategies(config, worker_seed(config.settings.seed, worker, existing))
    return optuna.load_study(
        study_name=config.study_name, storage=storage, sampler=sampler, pruner=pruner
    )


def _strategies(
    config: SearchConfig, seed: int | None
) -> tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner]:
    """The search's sampler (seeded with ``seed``) and pruner."""
    sampler = make_sampler(
        config.sampler,
        config.space,
        seed=seed,
        trials=config.trials,
        settings=config.settings,
        workers=config.worker_count,
    )
    pruner = make_pruner(
        config.pruner,
        config.settings,
        multi=config.settings.objective == "multi",
        space=config.space,
        trials=config.trials,
        workers=config.worker_count,
    )
    return sampler, pruner


def run_worker(
    config: SearchConfig,
    worker: int = 0,
    *,
    on_event: Callable[[str, Any], None] | None = None,
    engine: Engine | None = None,
) -> int:
    """Run trials until the study holds ``config.trials`` finished ones (or the timeout).

    Returns how many trials this worker finished. ``on_event(kind, payload)`` reports
    ``("start", trial)``, ``("eval", (trial, step, metrics))``, ``("end", frozen_trial)``,
    ``("stale", [numbers])`` to a display. A failure of the machine (a full disk, a folder
    turned read-only) raises ``HostError``: the search stops rather than score it.
    """
    try:
        return _run_worker(config, worker, on_event=on_event, engine=engine)
    except HostError:
        raise
    except Exception as exc:
        host = host_failure(exc)  # e.g. the storage's own disk is full
        if host is None:
            raise
        raise HostError(
            f"the search stopped: {host}; no trial was scored by it, and a trial left running "
            "will run again. Fix the machine (free disk space, make the folders writable) and "
            "run the same command to resume"
        ) from exc


def _run_worker(
    config: SearchConfig,
    worker: int,
    *,
    on_event: Callable[[str, Any], None] | None,
    engine: Engine | None,
) -> int:
    _quiet_optuna()
    study = _load_for_worker(config, worker)
    lock = StorageLock(config.storage)
    emit = on_event or (lambda kind, payload: None)

    def started(trial: optuna.Trial) -> None:
        lock.release()  # the trial exists and names its worker: others may go on
        emit("start", trial)

    if engine is None:  # a worker process: its own engine, at the search's geometry
        engine = Engine(config.settings, config.space, config.geometry)
        engine.prepare()  # data and evaluator before any trial exists
    runner = TrialRunner(
        config.space,
        config.settings,
        on_trial_start=started,
        on_progress=lambda trial, step, metrics: emit("eval", (trial, step, metrics)),
        engine=engine,
    )
    deadline = time.monotonic() + config.timeout if config.timeout else None
    ran = 0
    grid = hasattr(study.sampler, "is_exhausted")  # the grid and the designs end
    heartbeats = is_heartbeat_enabled(study._storage)
    while deadline is None or time.monotonic() < deadline:
        lock.acquire()
        try:
            if heartbeats:  # RDB: trials whose heartbeat stopped (a worker elsewhere died)
                optuna.storages.fail_stale_trials(study)
            stale = fail_stale_trials(study)
            if stale:
                emit("stale", stale)
            trials = study.get_trials(deepcopy=False)
            counts, repeats = _counts(trials), _repeats(trials)
            # a repeat costs nothing (its result is reused), so it does not use up a trial;
            # but a space too small to offer new configurations must still end
            done = counts["COMPLETE"] - repeats + counts["PRUNED"]
            if done >= config.trials or repeats >= config.trials:
                break
            if grid and study.sampler.is_exhausted(study):
                break
            if done + counts["RUNNING"] >= config.trials:
                # the last trials are running elsewhere; one may yet fail (its worker killed)
                # and be queued again, so wait for them rather than end short of the budget --
                # but only for trials something will judge: an RDB heartbeat, or a worker of
                # this machine. A journal trial of another host name is never judged stale, so
                # the run ends and its summary names it (``unchecked``)
                unchecked = {t.number for t in unchecked_running(study)}
                if not heartbeats and all(
                    t.number in unchecked for t in trials if t.state == TrialState.RUNNING
                ):
                    break
                lock.release()
                time.sleep(WAIT_S)
                continue
            study.optimize(
                runner,
                n_trials=1,
                callbacks=[lambda st, ft: emit("end", ft)],
            )
            ran += 1
        finally:
            lock.release()
    return ran


# -- running a search (one process or several) -------------------------------------------------


def run_search(
    config: SearchConfig,
    *,
    display: Any = None,
) -> SearchSummary:
    """Run (or resume) a search and return its summary.

    ``display`` (see ``ganarch.search.display``) shows live progress; None runs silently.
    A ``KeyboardInterrupt`` stops the workers after they record their running trial as
    ``FAIL`` (reason ``interrupted``, queued to run again); the summary then has
    ``interrupted=True``.
    """
    _quiet_optuna()
    start = time.monotonic()
    # Bad input (a study name that is a path, a storage that cannot hold a study, a dataset,
    # an image size the template rejects, a folder owned by another study) must fail before
    # the study is created or anything is written.
    check_study_name(config.study_name)
    check_storage(config.storage)
    if not is_journal(config.storage):
        open_storage(config.storage)  # a database that cannot be reached: say so now
    out, owner = Path(config.settings.out), _owner(config)
    artifacts.check_owner(out, owner)
    engine = Engine(config.settings, config.space, config.geometry)
    try:
        engine.prepare()  # trains and caches the feature net once, not once per worker
    except OSError as exc:  # e.g. the feature cache's disk is full or read-only
        raise HostError(f"the search could not start: {host_failure(exc)}") from exc
    # A plugin's sampler or pruner whose factory fails (a missing optional package) or makes
    # no Optuna object: said now. Each worker makes its own again when it opens the study.
    _strategies(config, config.settings.seed)
    undo_claim = artifacts.claim(out, owner)
    try:
        study = prepare_study(config)
    except BaseException:  # e.g. a storage that cannot be opened: leave no marker behind
        if undo_claim is not None:
            undo_claim()
        raise
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    summary = SearchSummary(config.study_name, describe_storage(config.storage), config.trials)
    if display is not None:
        display.begin(config, study)
    try:
        if config.worker_count <= 1:
            on_event = display.event if display is not None else None
            run_worker(config, 0, on_event=on_event, engine=engine)
        else:
            del engine
            engine_module.release()  # the workers hold their own; free this one's memory
            _run_processes(config, study, display)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if display is not None:
            display.end(study)
    trials = study.get_trials(deepcopy=False)
    summary.counts = dict(_counts(trials))
    summary.repeats = _repeats(trials)
    summary.trial_counts = TrialCounts.of(trials).to_dict()
    summary.run_counts = TrialCounts.of(
        t for t in trials if t.state.is_finished() and t.number not in before
    ).to_dict()
    summary.failures = dict(failure_counts(trials))
    summary.ran = sum(
        1
        for t in trials
        if t.state.is_finished() and t.number not in before and t.state != TrialState.FAIL
    )
    summary.best = [trial_row(t, study) for t in ranked_trials(study)[:5]]
    left = unchecked_running(study)
    if left:
        summary.unchecked = unchecked_text(
            left, config.study_name, describe_storage(config.storage)
        )
    summary.elapsed_s = time.monotonic() - start
    return summary


#: A worker's exit code when the machine failed (a full disk, ...): EX_TEMPFAIL, as the CLI's.
HOST_EXIT = errors.HOST_EXIT


def _worker_main(worker: int) -> None:
    """Entry point of a worker process (``python -c``); the pickled config arrives on stdin,
    so no file is left behind when the parent is killed."""
    config: SearchConfig = pickle.loads(sys.stdin.buffer.read())
    # a parent started in the background (``&``, nohup) hands down SIGINT ignored; the parent
    # stops its workers with SIGINT, so that they record their running trials
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with_parent()
    if config.settings.device in (None, "cpu", "auto"):
        import torch

        # N workers on one CPU: split the cores, or their thread pools fight (many times slower)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.worker_count))
    try:
        # a plugin registered in code in the parent is missing here: never score without it
        storage = open_storage(config.storage)
        record = storage.get_study_user_attrs(storage.get_study_id_from_name(config.study_name))
        check_score_version(record[SETTINGS_ATTR]["score"], f"worker {worker}")
        run_worker(config, worker)
    except KeyboardInterrupt:
        sys.exit(130)
    except GanarchError as exc:  # bad input: one line, exit 2, as the command itself does
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except HostError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(HOST_EXIT)


#: Seconds a worker whose parent died has to record its running trial before it is ended.
ORPHAN_GRACE_S = 20.0


def _die_with_parent() -> None:
    """Watch the parent: once it is gone (killed, even with SIGKILL) this worker interrupts
    itself as Ctrl-C would, so its running trial is recorded as failed and queued again, and
    it exits; a worker that has not exited ``ORPHAN_GRACE_S`` later is ended."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(ORPHAN_GRACE_S)
        os._exit(130)

    threading.Thread(target=watch, name="ganarch-parent-watch", daemon=True).start()


_WORKER_CODE = (
    "import sys; from ganarch.search.study import _worker_main; _worker_main(int(sys.argv[1]))"
)


def _run_processes(config: SearchConfig, study: optuna.Study, display: Any) -> None:
    # Plain subprocesses rather than multiprocessing: no dependence on how the parent's
    # __main__ was started (a console script, python -m, a notebook). Code-registered plugins
    # are not seen by the workers; register plugins through entry points to use --workers.
    payload = pickle.dumps(config)
    procs: list[subprocess.Popen] = []
    # SIGTERM to the parent stops the workers as Ctrl-C does (they record their trials)
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    try:
        for i in range(config.worker_count):
            p = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, str(i)], stdin=subprocess.PIPE
            )
            procs.append(p)
            p.stdin.write(payload)
            p.stdin.close()
        while None in [p.poll() for p in procs]:  # poll every one: it sets returncode
            if any(p.returncode == HOST_EXIT for p in procs):
                # the machine failed under one worker: the others would fail alike or train
                # on a broken machine; they record their trials as interrupted and stop
                _stop(procs, forward_now=True)
                break
            if display is not None:
                display.poll(study)
            time.sleep(0.5)
    except BaseException as exc:
        # a terminal's Ctrl-C reached the workers already; a SIGTERM reached only us
        _stop(procs, forward_now=isinstance(exc, _Terminated))
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    bad = [p for p in procs if p.returncode != 0]
    if any(p.returncode == HOST_EXIT for p in bad):  # before 130: the others were stopped
        raise HostError("the search stopped: a worker met a failure of the machine (see above)")
    if any(p.returncode in (130, -signal.SIGINT) for p in bad):
        raise KeyboardInterrupt
    if bad and all(p.returncode == 2 for p in bad):
        raise GanarchError(f"{len(bad)} worker process(es) rejected the input (see above)")
    if bad:
        raise RuntimeError(
            f"{len(bad)} of {len(procs)} worker processes failed (exit codes "
            + ", ".join(str(p.returncode) for p in bad)
            + "); their errors are printed above"
        )


class _Terminated(KeyboardInterrupt):
    """SIGTERM to the parent: stop as Ctrl-C does, but the workers have not been told."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise _Terminated


def _stop(procs: list[subprocess.Popen], forward_now: bool = False) -> None:
    """Let workers record their interrupted trial. A terminal's Ctrl-C reaches them too, so
    they get a moment to stop on their own; ``forward_now`` passes the interrupt on at once."""
    deadline = time.monotonic() + (0 if forward_now else 5)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)


# -- reading results ---------------------------------------------------------------------------


def failure_counts(trials: list[FrozenTrial]) -> Counter[str]:
    """Failures counted by reason (the reason's first clause, so similar ones group)."""
    out: Counter[str] = Counter()
    for t in trials:
        reason = t.user_attrs.get("failure")
        if reason:
            out[failure_kind(str(reason))] += 1
        elif t.state == TrialState.FAIL:
            out["error (no reason recorded)"] += 1
    return out


def failure_kind(reason: str) -> str:
    """``"error: ValueError: boom"`` -> ``"error: ValueError"``; ``"invalid spec: ..."`` -> ``"invalid spec"``."""
    if reason.startswith("error: "):
        return "error: " + reason[7:].split(":", 1)[0]
    return reason.split(":", 1)[0]


def feasible(t: FrozenTrial) -> bool:
    return all(v <= 0 for v in t.constraints.values())


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible COMPLETE trials, best first, each configuration once (a repeat that reused
    an earlier trial's result is left out: the earlier trial stands for it).

    Single objective: by value. Multi-objective: Pareto front first, then by the product
    quality × stability, ties to the lower trial number (the documented pick of ``best``).
    """
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if feasible(t) and t.values is not None and DUPLICATE_ATTR not in t.user_attrs
    ]
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]
    if len(signs) == 1:
        return sorted(trials, key=lambda t: (-signs[0] * t.values[0], t.number))
    front = {t.number for t in study.best_trials}
    return sorted(
        trials,
        key=lambda t: (t.number not in front, -_product(t, signs), t.number),
    )


def _product(t: FrozenTrial, signs: list[int]) -> float:
    p = 1.0
    for v, s in zip(t.values, signs, strict=True):
        p *= v if s > 0 else -v
    return p


def trial_row(t: FrozenTrial, study: optuna.Study | None = None) -> dict[str, Any]:
    """A trial as plain data for tables and ``--json``."""
    names = None
    if study is not None:
        with contextlib.suppress(Exception):
            names = study.metric_names
    values = list(t.values) if t.values is not None else None
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "values": values,
        "value_names": names,
        "quality": t.user_attrs.get("quality"),
        "stability": t.user_attrs.get("stability"),
        "objective": t.user_attrs.get("objective"),
        "params": dict(t.params),
        "failure": t.user_attrs.get("failure"),
        "repeat_of": t.user_attrs.get(DUPLICATE_ATTR),  # the trial whose result it reused
        "artifacts": t.user_attrs.get("artifacts"),
        "duration_s": t.duration.total_seconds() if t.duration is not None else None,
    }
    return row


def _quiet_optuna() -> None:
    # The live display reports trials and failures; Optuna's per-trial INFO lines and its
    # traceback of an interrupted trial would tear it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def summary_lines(summary: SearchSummary, mapping: Mapping[str, Any] | None = None) -> list[str]:
    """The summary in words whose numbers add up (see ``ganarch.search.counts``)."""
    c = TrialCounts(**{k: summary.trial_counts.get(k, 0) for k in TrialCounts.__dataclass_fields__})
    r = TrialCounts(**{k: summary.run_counts.get(k, 0) for k in TrialCounts.__dataclass_fields__})
    extra = c.extra_text()
    lines = [
        f"study {summary.study_name!r} in {summary.storage}: {c.trained}/{summary.target} "
        f"trials trained ({c.trained_text()})"
        + (f"; not counted toward --trials {summary.target}: {extra}" if extra else "")
        + f"; {c.total} trials in all",
        f"this run: {r.total} trial{'s' if r.total != 1 else ''} in {summary.elapsed_s:.0f}s "
        f"({r.trained} trained"
        + (f", {r.repeats} repeat{'s' if r.repeats != 1 else ''}" if r.repeats else "")
        + (f", {r.interrupted} interrupted" if r.interrupted else "")
        + ")",
    ]
    if summary.failures:
        lines.append("failures: " + ", ".join(f"{k} ×{n}" for k, n in summary.failures.items()))
    if summary.unchecked:
        lines.append(summary.unchecked)
    return lines
