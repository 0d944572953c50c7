"""The live view of a running search on stderr: progress, the best trials, failures by reason.

On a terminal it is a ``rich.live.Live`` panel; elsewhere (CI logs, pipes) one line per
finished trial, so logs stay readable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ganarch.search.objective import DUPLICATE_ATTR
from ganarch.search.study import failure_counts, failure_kind, ranked_trials

__all__ = ["SearchDisplay"]


def fmt_value(v: Any) -> str:
    """A value for a table cell: ``-`` for none, 4 significant digits for floats."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class SearchDisplay:
    """Receives events from the worker loop (``event``) or polls the storage (``poll``)."""

    def __init__(self, console: Console | None = None, *, live: bool | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.live_mode = self.console.is_terminal if live is None else live
        self._live: Live | None = None
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),  # holds the study's name
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._task: Any = None
        self._trial_task: Any = None
        self._trials: list[FrozenTrial] = []
        self._study: optuna.Study | None = None
        self._target = 0
        self._steps = 0
        self._seen: set[int] = set()
        self._header = ""
        self._last_poll = 0.0
        self._top: list[FrozenTrial] = []

    # -- lifecycle ------------------------------------------------------------------------

    def begin(self, config: Any, study: optuna.Study) -> None:
        self._study = study
        self._target = config.trials
        self._steps = config.settings.steps * config.settings.seeds  # seeds run in turn
        s = config.settings
        self._header = (
            f"study {config.study_name} · space {config.space.name} · data {s.data} · "
            f"{config.sampler}/{config.pruner if s.objective == 'score' else 'no pruning'} · "
            f"{s.steps} steps × {s.seeds} seed(s)"
            + (f" · {config.worker_count} workers" if config.worker_count > 1 else "")
        )
        if config.workers == "auto" and config.worker_count > 1:  # say why so many
            self.console.print(
                f"--workers auto: {config.worker_count} ({config.worker_choice.reason})",
                markup=False,
                soft_wrap=True,
            )
        self._trials = study.get_trials(deepcopy=False)
        self._seen = {t.number for t in self._trials if t.state.is_finished()}
        self._task = self._progress.add_task("trials", total=self._target, completed=self._done())
        if self.live_mode:
            # transient: the panel is cleared when the search ends, so the final summary and
            # best-trials table that follow are not printed below a stale copy of themselves
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        else:
            self.console.print(self._header, markup=False, soft_wrap=True)

    def end(self, study: optuna.Study) -> None:
        self.poll(study, force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- updates --------------------------------------------------------------------------

    def event(self, kind: str, payload: Any) -> None:
        if kind == "start":
            trial = payload
            if self._trial_task is not None:
                self._progress.remove_task(self._trial_task)
            self._trial_task = self._progress.add_task(
                f"trial {trial.number}", total=self._steps, completed=0
            )
        elif kind == "eval":
            trial, step, metrics = payload
            if self._trial_task is not None:
                q = metrics.get("quality") if isinstance(metrics, Mapping) else None
                desc = f"trial {trial.number}" + (f" q={fmt_value(q)}" if q is not None else "")
                self._progress.update(self._trial_task, completed=step, description=desc)
        elif kind == "end":
            if self._trial_task is not None:
                self._progress.remove_task(self._trial_task)
                self._trial_task = None
            if self._study is not None:
                self.poll(self._study, force=True)
        elif kind == "stale":
            self.console.print(
                f"failed stale trial(s) {', '.join(map(str, payload))} left running by a killed "
                "process; queued to run again",
                markup=False,
                soft_wrap=True,
            )
        if self._live is not None:
            self._live.refresh()

    def poll(self, study: optuna.Study, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_poll < 1.0:
            return
        self._last_poll = now
        self._trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.COMPLETE for t in self._trials):
            self._top = ranked_trials(study)[:5]
        self._progress.update(self._task, completed=min(self._done(), self._target))
        for t in self._trials:
            if t.state.is_finished() and t.number not in self._seen:
                self._seen.add(t.number)
                if not self.live_mode:  # one unwrapped line per trial: logs stay greppable
                    self.console.print(self._line(t), markup=False, soft_wrap=True)

    def _done(self) -> int:
        """Finished distinct configurations: what ``--trials`` counts (repeats are free)."""
        return sum(
            t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and DUPLICATE_ATTR not in t.user_attrs
            for t in self._trials
        )

    def _line(self, t: FrozenTrial) -> str:
        values = "/".join(fmt_value(v) for v in t.values) if t.values else "-"
        state = t.state.name.lower()
        if DUPLICATE_ATTR in t.user_attrs:
            state = f"repeats trial {t.user_attrs[DUPLICATE_ATTR]}, result reused"
        text = f"trial {t.number} {state}: value {values}"
        if t.user_attrs.get("quality") is not None:
            text += f" (quality {fmt_value(t.user_attrs['quality'])}, stability {fmt_value(t.user_attrs.get('stability'))})"
        if t.user_attrs.get("failure"):
            text += f" [{failure_kind(str(t.user_attrs['failure']))}]"
        return f"{text}  ({self._done()}/{self._target})"

    # -- rendering ------------------------------------------------------------------------

    def __rich__(self) -> Group:
        parts: list[Any] = [Text(self._header, style="bold"), self._progress]
        top = self._top  # computed in poll(): rendering runs in rich's refresh thread
        if top:
            table = Table(title="best trials", title_justify="left", expand=False)
            table.add_column("#", justify="right")
            table.add_column("value(s)", justify="right")
            table.add_column("quality", justify="right")
            table.add_column("stability", justify="right")
            cells = [_params_text(t.params) for t in top]
            # wrap between choices, never inside one (the tables of the CLI follow this rule)
            longest = max((len(w) for c in cells for w in c.split()), default=7)
            table.add_column("choices", min_width=longest)
            for t, cell in zip(top, cells, strict=True):
                table.add_row(
                    str(t.number),
                    "/".join(fmt_value(v) for v in t.values or []),
                    fmt_value(t.user_attrs.get("quality")),
                    fmt_value(t.user_attrs.get("stability")),
                    Text(cell),
                )
            parts.append(table)
        failures = failure_counts(self._trials)
        if failures:
            parts.append(
                Text(
                    "failures: " + ", ".join(f"{k} ×{n}" for k, n in failures.items()),
                    style="yellow",
                )
            )
        return Group(*parts)


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.split('|')[0]}={fmt_value(v)}" for k, v in params.items())
