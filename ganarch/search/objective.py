"""One trial: Optuna trial -> template choices -> spec -> training -> value(s).

Every outcome is recorded on the trial (``user_attrs``) per the project's contract:
``choices`` (the full resolved template choices, training settings included), ``spec`` (the
spec as a dict), ``metrics``, ``quality``, ``stability``, ``objective``, ``failure`` (a reason,
only when the trial failed) and ``artifacts`` (the run directory with spec.json,
metrics.json and samples.png). ``worker`` says which process ran it.

How failures reach the sampler: Optuna's samplers ignore ``FAIL`` trials, so a configuration
that raises or runs out of memory would be proposed again and again. A trial that fails for
a reason inherent to its configuration (an invalid spec, a block that raises, even an
``OSError`` from the model's own code, CUDA or host memory exhausted) is therefore finished as ``COMPLETE`` with the penalised value ``PENALTY`` (the worst
score) *and* an infeasible constraint ``failed = 1`` (``trial.set_constraint``, Optuna 5's
replacement of ``constraints_func``). TPE and NSGA-II rank infeasible trials below every
feasible one, so they learn to avoid them; ``study.best_trial(s)`` skip them. A run that
diverged (NaN/inf) is a real outcome of its configuration: ``COMPLETE`` with its (zero)
score, ``failure = "diverged"``, and feasible. Only interruptions (Ctrl-C), stale trials
of killed workers and failures of the machine (a full disk, a folder turned read-only: see
``host_failure``; a dropped database connection) end as ``FAIL``: they say nothing about the
configuration and are retried; a failure of the machine also stops the search (``HostError``).
A retry that fails on the machine the same way again is penalised: it follows the
configuration, and queued again it would stop every resume.

A plugin metric that counts toward quality and fails (``MetricFailure``) is the plugin's
fault, not the configuration's: the trial ends as ``FAIL`` with no value (samplers ignore
it; it is also marked infeasible), ``failure`` names the plugin and the metric, the
configuration is queued to run again (as an interrupted trial is) and the study goes on. ``METRIC_FAILURES_IN_A_ROW`` such failures in one process with no scored trial
between them stop the search with that one line: a broken metric would fail every trial.

A configuration the sampler proposes again (same parameters as a finished trial of the same
study, whose settings resume refuses to change) is not retrained: training is deterministic
for a seed, so the earlier result is copied and ``duplicate_of`` names the earlier trial. The
sampler still sees the value; ``ganarch rules`` counts the configuration once.
"""

from __future__ import annotations

import contextlib
import math
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from ganarch.errors import HostError, SpecError
from ganarch.run import Scored
from ganarch.score.registry import MetricFailure
from ganarch.search.space import SearchSpace
from ganarch.search.storage import ACTIVE_TRIALS, WORKER_ATTR, worker_identity

__all__ = [
    "DUPLICATE_ATTR",
    "FAILED_CONSTRAINT",
    "PENALTY",
    "TrialRunner",
    "TrialSettings",
    "host_failure",
]

#: The value a failed configuration gets for each objective (scores are higher-is-better,
#: in [0, 1]; 0 is the worst).
PENALTY = 0.0
#: The constraint that marks a trial infeasible (> 0) for the samplers.
FAILED_CONSTRAINT = "failed"
INTERRUPTED = "interrupted"
#: user attr naming the earlier trial whose result a repeated configuration reused.
DUPLICATE_ATTR = "duplicate_of"
#: Objective names per ``--objective``; they become the study's metric names.
METRIC_NAMES = {"score": ["objective"], "multi": ["quality", "stability"]}
#: Plugin-metric failures in a row (no trial scored between them) that stop the search.
METRIC_FAILURES_IN_A_ROW = 3


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a search shares (plain data, so it pickles to worker processes)."""

    data: str
    steps: int
    seeds: int = 1
    objective: str = "score"  # "score" (one value) or "multi" (quality, stability)
    device: str | None = None
    seed: int = 0
    out: str = "ganarch-runs"
    eval_every: int | None = None
    n_eval: int | None = None  # generated images per evaluation (None: the trainer's default)
    image_size: int | None = None
    channels: int | None = None  # None: the dataset's own
    width: int | None = None
    latent_dim: int | None = None


class TrialRunner:
    """The objective function of a search; keeps per-process state (dataset, evaluator).

    ``on_trial_start(trial)`` runs once the trial exists and its worker is recorded (the
    study runner releases its lock there); ``on_progress(trial, step, metrics)`` at each
    evaluation (the live display).
    """

    def __init__(
        self,
        space: SearchSpace,
        settings: TrialSettings,
        *,
        on_trial_start: Callable[[optuna.Trial], None] | None = None,
        on_progress: Callable[[optuna.Trial, int, Mapping[str, Any]], None] | None = None,
        engine: Any = None,
    ) -> None:
        self.space = space
        self.settings = settings
        self.on_trial_start = on_trial_start
        self.on_progress = on_progress
        self._engine: Any = engine
        self._metric_failures = 0  # plugin-metric failures since the last scored trial

    # -- the objective --------------------------------------------------------------------

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        key = (trial.study.study_name, trial.number)
        ACTIVE_TRIALS.add(key)
        try:
            trial.set_user_attr(WORKER_ATTR, worker_identity())
            if self.on_trial_start is not None:
                self.on_trial_start(trial)
            return self._run(trial)
        except KeyboardInterrupt:
            # Optuna marks the trial FAIL and re-raises; say why, and queue it to run again.
            _safe_attr(trial, "failure", INTERRUPTED)
            _requeue(trial)
            raise
        finally:
            ACTIVE_TRIALS.discard(key)

    def _run(self, trial: optuna.Trial) -> float | tuple[float, float]:
        s = self.settings
        choices = self.space.suggest(trial)
        earlier = _finished_twin(trial)
        if earlier is not None:
            return self._copy(trial, earlier)
        trial.set_user_attr("choices", _jsonable(self.space.resolve(choices)))
        engine = self.engine()
        out_dir = Path(s.out) / f"trial-{trial.number}"
        last: dict[str, Any] = {}
        multi = s.objective == "multi"

        def on_eval(step: int, metrics: Mapping[str, Any]) -> None:
            last.clear()
            last.update(metrics)
            if self.on_progress is not None:
                self.on_progress(trial, step, metrics)
            if multi:
                return  # Optuna cannot prune multi-objective studies
            value = metrics.get("objective")
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        out_of_memory = False
        try:
            spec = engine.geometry.spec(self.space, choices)  # the search's one geometry
            # the contract's form: the spec's resolved choices with its training settings
            trial.set_user_attr(
                "choices", _jsonable({**spec.meta["choices"], **spec.training.to_dict()})
            )
            trial.set_user_attr("spec", spec.to_dict())
            trial.set_user_attr("artifacts", str(out_dir.resolve()))
            result = engine.train(spec, out_dir=out_dir, on_eval=on_eval)
        except optuna.TrialPruned:
            self._record(trial, Scored.from_record(last), finished=False)
            raise
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True  # free memory below, once the traceback's frames are gone
        except MemoryError:  # host RAM on CPU: the configuration's size, as CUDA OOM is
            return self._penalise(trial, "out of memory (host)")
        except SpecError as exc:  # the template or a block's shape rule rejects the choices
            return self._penalise(trial, f"invalid spec: {exc}")
        except MetricFailure as exc:  # the plugin's fault, not the configuration's: no score
            return self._metric_failed(trial, exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _HOST_MEMORY):
                return self._penalise(trial, "out of memory (host)")
            host = host_failure(exc)
            key = _failure_key(exc) if host is not None else None
            if key is not None and _repeats(trial, key):
                # the retry of a failure of the machine failed the same way: it follows the
                # configuration (re-queued, it would stop every resume forever), so score it
                return self._penalise(trial, f"environment failure again on retry: {host}")
            if host is not None:  # the machine failed, not the configuration: no score
                _safe_attr(trial, "failure", f"environment: {host}")
                if key is not None:
                    _safe_attr(trial, FAILURE_KEY_ATTR, key)
                _requeue(trial)
                raise HostError(
                    f"the search stopped: {host} during trial {trial.number}; nothing was "
                    f"scored and trial {trial.number} will run again. Fix the machine (free "
                    "disk space, make the folders writable) and run the same command to resume"
                ) from exc
            # a plugin block that raises must not stop the study
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            trial.set_user_attr("traceback", "".join(tb[-6:])[-4000:])
            return self._penalise(trial, f"error: {type(exc).__name__}: {exc}")

        if out_of_memory:
            from ganarch.search.engine import free_device_memory

            result = None
            free_device_memory()
            return self._penalise(trial, "out of memory (CUDA)")
        values = self._record(trial, result, finished=True)
        trial.set_constraint(FAILED_CONSTRAINT, 0.0)
        self._metric_failures = 0
        return values if multi else values[0]

    # -- helpers --------------------------------------------------------------------------

    def engine(self):
        if self._engine is None:
            from ganarch.search.engine import Engine

            self._engine = Engine(self.settings, self.space)  # resolves the geometry itself
        return self._engine

    def _record(self, trial: optuna.Trial, result: Scored, *, finished: bool) -> tuple[float, ...]:
        """Write the trial's outcome from the trainer's result, the one place that does:
        quality, stability, objective and metrics; for a run that finished also the
        stability components, each seed's objective and why it diverged. Returns the study's
        value(s)."""
        out = {}
        for key in ("quality", "stability", "objective"):
            v = getattr(result, key)
            v = float(v) if v is not None else None
            if v is not None and not math.isfinite(v):
                v = PENALTY
            out[key] = v
            trial.set_user_attr(key, v)
        trial.set_user_attr("metrics", _jsonable(dict(result.metrics)))
        if finished:
            if result.stability_components:
                trial.set_user_attr("stability_components", _jsonable(result.stability_components))
            if result.seed_objectives:
                trial.set_user_attr("seed_objectives", _jsonable(list(result.seed_objectives)))
            if result.diverged:
                detail = str(result.failure or "")
                reason = (
                    detail if detail.startswith("diverged") else f"diverged: {detail}".rstrip(": ")
                )
                trial.set_user_attr("failure", reason)
        names = METRIC_NAMES[self.settings.objective]
        return tuple(PENALTY if out.get(n) is None else out[n] for n in names)

    def _copy(
        self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial
    ) -> float | tuple[float, ...]:
        """Finish ``trial`` with ``earlier``'s outcome (same configuration, same settings)."""
        for key, value in earlier.user_attrs.items():
            if key not in (WORKER_ATTR, "retry_of", DUPLICATE_ATTR):
                trial.set_user_attr(key, value)
        trial.set_user_attr(DUPLICATE_ATTR, earlier.number)
        infeasible = earlier.constraints.get(FAILED_CONSTRAINT, 0.0)
        trial.set_constraint(FAILED_CONSTRAINT, float(infeasible or 0.0))
        values = tuple(earlier.values)
        return values if self.settings.objective == "multi" else values[0]

    def _metric_failed(self, trial: optuna.Trial, exc: MetricFailure) -> float | tuple[float, ...]:
        """End the trial ``FAIL`` without a value (NaN makes Optuna fail it), infeasible, with
        the reason; stop the search once the metric has failed too often in a row."""
        said = " ".join(str(exc).split())
        _safe_attr(trial, "failure", f"plugin metric: {said}"[:2000])
        trial.set_constraint(FAILED_CONSTRAINT, 1.0)
        _requeue(trial)  # says nothing about the configuration: it runs again
        self._metric_failures += 1
        if self._metric_failures >= METRIC_FAILURES_IN_A_ROW:
            raise MetricFailure(
                exc.plugin,
                exc.metric,
                f"the search stopped: metric {exc.metric!r} of plugin {exc.plugin!r} failed in "
                f"{self._metric_failures} trials in a row (last: trial {trial.number}); fix or "
                f"uninstall the plugin. {said}",
            ) from exc
        n = len(METRIC_NAMES[self.settings.objective])
        return math.nan if n == 1 else tuple([math.nan] * n)

    def _penalise(self, trial: optuna.Trial, reason: str) -> float | tuple[float, ...]:
        trial.set_user_attr("failure", reason[:2000])
        trial.set_constraint(FAILED_CONSTRAINT, 1.0)
        for key in ("quality", "stability", "objective"):
            trial.set_user_attr(key, PENALTY)
        n = len(METRIC_NAMES[self.settings.objective])
        return PENALTY if n == 1 else tuple([PENALTY] * n)


#: Host-memory failures that PyTorch raises as RuntimeError (its CPU allocator).
_HOST_MEMORY = (
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
)


#: user attr of a trial stopped by a failure of the machine: what failed (``OSError:28``), so
#: a retry that fails the same way is told apart from the machine failing once.
FAILURE_KEY_ATTR = "environment_failure"


def host_failure(exc: BaseException) -> str | None:
    """A one-line description when ``exc`` is a failure of the machine rather than of the
    trial's configuration, else None.

    The machine: an ``OSError`` outside the model's code (disk full, read-only or unwritable
    folder, I/O error writing artifacts or the storage), the database (a dropped connection:
    SQLAlchemy's ``OperationalError``, also inside Optuna's ``StorageInternalError``), host ``MemoryError``
    outside a trial. An ``OSError`` raised while building or running the model (a plugin
    block's missing weights file) is the configuration's. Only Optuna's wrappers are looked
    through (its ``StorageInternalError`` and the ``AssertionError("Should not reach")`` of a
    failed tell): a block that raises ``RuntimeError`` while handling an ``OSError`` is the
    block's failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            if _in_model_code(exc):
                return None
            where = f" writing {exc.filename}" if exc.filename else ""
            return f"{exc.strerror or type(exc).__name__}{where} (OSError errno {exc.errno})"
        if _is_database_error(exc):
            from ganarch.search.storage import hide_password

            detail = hide_password(_first_line(getattr(exc, "orig", None) or exc))[:200]
            return f"the database failed ({type(exc).__name__}: {detail})"
        if isinstance(exc, MemoryError):
            return "the machine ran out of memory (MemoryError)"
        if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _HOST_MEMORY):
            return "the machine ran out of memory (" + str(exc).splitlines()[0][:200] + ")"
        if isinstance(exc, optuna.exceptions.StorageInternalError):
            exc = exc.__cause__ or exc.__context__
        elif isinstance(exc, AssertionError) and "Should not reach" in str(exc):
            exc = None if exc.__suppress_context__ else exc.__context__
        else:
            return None
    return None


#: Where the model's code runs: a failure raised from inside these is the configuration's.
_MODEL_CODE = (
    f"{Path('ganarch', 'builder.py')}",
    f"{Path('ganarch', 'networks.py')}",  # the built modules' forward and factories
    f"{Path('torch', 'nn', 'modules', 'module.py')}",
    f"{Path('torch', 'autograd', '')}",
)


def _in_model_code(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if any(part in name for part in _MODEL_CODE):
            return True
        tb = tb.tb_next
    return False


def _is_database_error(exc: BaseException) -> bool:
    """The database connection failed (dropped, server restarted, unreachable). Bad data the
    database refuses (``DataError``, ``IntegrityError``) is not included: it would fail the
    same way on every retry."""
    try:
        from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
    except ImportError:  # no SQLAlchemy, no database
        return False
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failure_key(exc: BaseException) -> str | None:
    """What failed, for comparing a retry with its original: an ``OSError``'s errno (the
    file name holds the trial number); None for the database (a retry cannot be scored on a
    storage that fails)."""
    while exc is not None:
        if isinstance(exc, OSError):
            return f"OSError:{exc.errno}"
        if _is_database_error(exc):
            return None
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def _repeats(trial: optuna.Trial, key: str) -> bool:
    """Whether ``trial`` retries a trial that failed on the machine with the same ``key``."""
    retry_of = trial.user_attrs.get("retry_of")
    if not isinstance(retry_of, int):
        return False
    for t in trial.study.get_trials(deepcopy=False):
        if t.number == retry_of:
            return t.user_attrs.get(FAILURE_KEY_ATTR) == key
    return False


def _finished_twin(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """The first COMPLETE trial of the study with exactly ``trial``'s parameters, if any."""
    params = trial.params
    for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.number != trial.number and t.params == params and t.values:
            return t
    return None


def _requeue(trial: optuna.Trial) -> None:
    with contextlib.suppress(Exception):  # never let bookkeeping hide the interrupt
        trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def _safe_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    with contextlib.suppress(Exception):
        trial.set_user_attr(key, value)


def _jsonable(value: Any) -> Any:
    """Plain JSON data (storages serialise user attrs as JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)
