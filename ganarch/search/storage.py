"""Where studies live: storage URLs, the default journal file, and stale-trial cleanup.

The default is a journal file in the working directory (``ganarch.journal``): Optuna's
``JournalFileBackend`` is safe for several writer processes on one machine and
optuna-dashboard opens it (``optuna-dashboard ganarch.journal``). ``sqlite:///file.db`` works
for one writer; ``postgresql://...`` for workers on many machines.

A journal has no heartbeats, so a trial whose process was killed stays RUNNING forever.
Every trial records its worker (host, pid, process start time) when it starts; a RUNNING trial
whose worker is gone on this host is failed with the reason ``stale: ...`` and its parameters
are queued again, so the next worker retries it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from ganarch.errors import GanarchError
from ganarch.search.defaults import DEFAULT_STORAGE, STORAGE_ENV

__all__ = [
    "DEFAULT_STORAGE",
    "STALE_REASON",
    "STORAGE_ENV",
    "WORKER_ATTR",
    "StorageLock",
    "describe_storage",
    "fail_stale_trials",
    "open_storage",
    "require_existing",
    "storage_file",
    "storage_identity",
    "worker_identity",
]

WORKER_ATTR = "worker"
STALE_REASON = "stale: left running by a killed process"
#: A RUNNING trial that never recorded its worker (killed in the instant after it was created,
#: or made by another tool) is taken as stale after this long.
ORPHAN_AFTER_S = 600.0
_RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql")

_cache: dict[str, BaseStorage] = {}


def resolve_url(storage: str | os.PathLike | None) -> str:
    """A canonical storage string: an RDB URL as given, a journal file as an absolute path.

    ``None`` means ``$GANARCH_STORAGE``, else the journal file in the working directory, the
    same in Python as on the command line."""
    if storage is None or str(storage).strip() == "":
        storage = os.environ.get(STORAGE_ENV, "").strip() or DEFAULT_STORAGE
    text = str(storage)
    if text.startswith("sqlite:///"):
        return _absolute_sqlite(text)
    if text.startswith(_RDB_PREFIXES):
        return text
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise GanarchError(
            f"--storage: unsupported storage {scheme!r}; use a journal file path (*.journal), "
            "sqlite:///FILE.db or postgresql://USER:PASS@HOST/DB"
        )
    path = Path(text).expanduser()
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{path.resolve()}"
    if path.is_dir():
        raise GanarchError(
            f"--storage: {text} is a directory; give a file such as {text}/ganarch.journal"
        )
    return str(path.resolve())


def _absolute_sqlite(url: str) -> str:
    """``sqlite:///x.db`` names a file relative to the working directory: make it absolute, so
    one file has one URL wherever a command runs (``:memory:`` and ``?query`` kept)."""
    path, sep, query = url.removeprefix("sqlite:///").partition("?")
    if path in ("", ":memory:") or path.startswith("/"):
        return url
    return f"sqlite:///{Path(path).expanduser().resolve()}{sep}{query}"


def storage_file(url: str) -> Path | None:
    """The file behind a journal or SQLite URL (None for a server or an in-memory database)."""
    if is_journal(url):
        return Path(url)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").partition("?")[0]
        return None if path in ("", ":memory:") else Path(path)
    return None


def require_existing(storage: str | os.PathLike | BaseStorage | None) -> str | BaseStorage:
    """The resolved storage of a caller that only reads: a missing journal or SQLite file is
    an error (opening it would create an empty one)."""
    if isinstance(storage, BaseStorage):
        return storage
    url = resolve_url(storage)
    path = storage_file(url)
    if path is not None and not path.exists():
        raise GanarchError(
            f"no study storage at {describe_storage(url)}; run `ganarch search` first, or "
            f"name the storage the study is in (--storage, {STORAGE_ENV}, or storage=)"
        )
    return url


def is_journal(url: str) -> bool:
    return not url.startswith(_RDB_PREFIXES)


def open_storage(storage: str | os.PathLike | BaseStorage | None = None) -> BaseStorage:
    """The Optuna storage for a URL or path (cached per process; created if missing)."""
    if isinstance(storage, BaseStorage):
        return storage
    url = resolve_url(storage)
    if url in _cache:
        return _cache[url]
    if is_journal(url):
        path = Path(url)
        if not path.parent.exists():
            raise GanarchError(f"--storage: directory {path.parent} does not exist")
        # The open()-based lock suits one machine; the default symlink lock also works on NFS.
        backend = JournalFileBackend(str(path))
        store: BaseStorage = JournalStorage(backend)
    else:
        if url.startswith("sqlite:///"):
            parent = Path(url.removeprefix("sqlite:///")).parent
            if not parent.exists():
                raise GanarchError(f"--storage: directory {parent} does not exist")
        try:
            # Heartbeats let Optuna fail trials of killed workers on other machines too.
            store = RDBStorage(
                url,
                heartbeat_interval=60,
                grace_period=180,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except ImportError as exc:  # a driver is missing (e.g. psycopg2 for PostgreSQL)
            raise GanarchError(
                f"--storage: {exc}; for PostgreSQL install ganarch[postgres]"
            ) from exc
    _cache[url] = store
    return store


def describe_storage(storage: str | os.PathLike | None) -> str:
    """A short text for messages: the journal path relative to the cwd, or the URL."""
    url = resolve_url(storage)
    if is_journal(url):
        with contextlib.suppress(ValueError):
            return str(Path(url).relative_to(Path.cwd()))
    return _hide_password(url)


def storage_identity(storage: str | os.PathLike | None) -> str:
    """The same text for the same storage from any working directory (absolute journal
    path, or the URL without its password): what a study's artifacts folder records."""
    return _hide_password(resolve_url(storage))


def _hide_password(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def study_names(storage: BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load_study(name: str, storage: BaseStorage, **kwargs: Any) -> optuna.Study:
    """Load a study by name; an unknown name is a ``GanarchError`` listing existing studies."""
    names = study_names(storage)
    if name not in names:
        from ganarch.errors import closest

        listed = ", ".join(names) if names else "none yet"
        hint = closest(name, names) if names else ""
        raise GanarchError(
            f"no study named {name!r} in this storage"
            + (f"; {hint}" if hint.startswith("did") else "")
            + f" (studies: {listed})"
        )
    return optuna.load_study(study_name=name, storage=storage, **kwargs)


# -- workers and stale trials -----------------------------------------------------------------


def _proc_start(pid: int) -> int | None:
    """The kernel's start time of ``pid`` in clock ticks (Linux), to tell a reused pid apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after the closing paren are fixed
    after = text.rsplit(")", 1)[1].split()
    return int(after[19]) if len(after) > 19 else None


def worker_identity() -> dict[str, Any]:
    """What a trial records about the process that runs it."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid)}


def worker_alive(worker: Any) -> bool | None:
    """True/False for a worker on this host; None when it ran elsewhere (cannot tell)."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return None
    pid = worker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    start = worker.get("start")
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by a newer process
    return True


def is_stale(trial: FrozenTrial, now: float | None = None) -> bool:
    if trial.state != TrialState.RUNNING:
        return False
    worker = trial.user_attrs.get(WORKER_ATTR)
    if worker is None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else None
        now = time.time() if now is None else now
        return started is not None and now - started > ORPHAN_AFTER_S
    return worker_alive(worker) is False


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail this host's RUNNING trials whose worker died, and queue their params again.

    Returns the numbers of the trials it failed. Trials of workers on other hosts are left to
    the RDB heartbeat (a journal file is shared only on one machine).
    """
    storage = study._storage
    failed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "failure", STALE_REASON)
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue  # another worker got there first
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished meanwhile
        failed.append(trial.number)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return failed


class StorageLock:
    """An exclusive lock shared by the local workers of one storage (``fcntl.flock``).

    A worker holds it from counting the study's trials until its next trial exists and has
    recorded its worker, so N workers never start more trials than asked for and never take
    each other's fresh trials for stale ones. ``release()`` may be called more than once.
    """

    def __init__(self, url: str) -> None:
        if is_journal(url):
            self.path = Path(url).with_name(Path(url).name + ".ganarch-lock")
        else:
            digest = hashlib.sha1(url.encode()).hexdigest()[:16]
            self.path = Path(tempfile.gettempdir()) / f"ganarch-{digest}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> StorageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
