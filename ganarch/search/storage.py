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
import re
import shlex
import socket
import sys
import tempfile
import time
import warnings
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
from ganarch.search import journal
from ganarch.search.defaults import DEFAULT_STORAGE, STORAGE_ENV

__all__ = [
    "DEFAULT_STORAGE",
    "STALE_REASON",
    "STORAGE_ENV",
    "WORKER_ATTR",
    "StorageLock",
    "describe_storage",
    "drop_password",
    "fail_stale_trials",
    "open_storage",
    "require_existing",
    "storage_file",
    "storage_identity",
    "unchecked_running",
    "unchecked_text",
    "worker_identity",
]

WORKER_ATTR = "worker"
STALE_REASON = "stale: left running by a killed process"
#: A RUNNING trial that never recorded its worker (killed in the instant after it was created,
#: or made by another tool) is taken as stale after this long.
ORPHAN_AFTER_S = 600.0
#: A database URL's scheme (``postgresql+psycopg:``); a file named ``postgresql-runs.journal``
#: is a journal.
_RDB_SCHEME = re.compile(r"(sqlite|postgres|postgresql|mysql)(\+[\w.]+)?:", re.IGNORECASE)
#: Seconds between heartbeats of a running trial in an RDB storage (see ``heartbeat_seconds``).
HEARTBEAT_ENV = "GANARCH_HEARTBEAT"

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
    if _RDB_SCHEME.match(text):
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
    return not _RDB_SCHEME.match(url)


def open_storage(storage: str | os.PathLike | BaseStorage | None = None) -> BaseStorage:
    """The Optuna storage for a URL or path (cached per process; created if missing)."""
    if isinstance(storage, BaseStorage):
        return storage
    url = resolve_url(storage)
    if url in _cache:
        return _cache[url]
    check_storage(url)
    if is_journal(url):
        path = Path(url)
        mended = journal.repair(path)  # a partial record left by a crash mid-write
        if mended is not None:  # one line on stderr, from the CLI and from Python alike
            print(f"note: {mended.note()}", file=sys.stderr, flush=True)
        try:
            # The default symlink lock works on one machine and on NFS.
            store: BaseStorage = JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise GanarchError(f"--storage: cannot open {path}: {exc.strerror or exc}") from None
    else:
        store = _open_rdb(url)
    _cache[url] = store
    return store


def check_storage(url: str) -> None:
    """Refuse a storage that cannot hold a study before anything starts (``GanarchError``):
    an in-memory database (nothing would be saved), a URL that does not parse, a folder that
    does not exist or cannot be written."""
    if is_journal(url):
        path = Path(url)
        if not path.parent.is_dir():
            raise GanarchError(f"--storage: directory {path.parent} does not exist")
        if path.exists() and not path.is_file():
            raise GanarchError(f"--storage: {path} is not a regular file")
        if not path.exists():
            # a probe file beside it that leaves nothing behind (os.access is wrong for root
            # and /proc); never the journal's own path, which another search may open meanwhile
            try:
                fd, probe = tempfile.mkstemp(
                    dir=path.parent, prefix=f".{path.name}.", suffix=".probe"
                )
                os.close(fd)
                os.unlink(probe)
            except OSError as exc:
                raise GanarchError(
                    f"--storage: cannot create {path}: {exc.strerror or exc}"
                ) from None
        return
    if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        raise GanarchError(
            f"--storage: {_hide_password(url)} is not a SQLite URL; use sqlite:///FILE.db"
        )
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").partition("?")[0]
        if path in ("", ":memory:") or "mode=memory" in url:
            raise GanarchError(
                f"--storage: {url} is an in-memory database: nothing would be saved; "
                "use sqlite:///FILE.db or a journal file"
            )
        if not Path(path).parent.is_dir():
            raise GanarchError(f"--storage: directory {Path(path).parent} does not exist")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    # PostgreSQL without a database name connects to the one named like the user (libpq)
    if parsed is None or not (parsed.database or parsed.get_backend_name().startswith("postgres")):
        raise GanarchError(
            f"--storage: cannot read {_hide_password(url)!r} as a database URL; expected "
            "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
        )


def heartbeat_seconds() -> int:
    """Seconds between a running trial's heartbeats in an RDB storage (``$GANARCH_HEARTBEAT``,
    default 60); a trial silent for three of them is taken as stale and run again."""
    text = os.environ.get(HEARTBEAT_ENV, "").strip()
    try:
        value = int(text) if text else 60
    except ValueError:
        raise GanarchError(f"{HEARTBEAT_ENV}: expected whole seconds, got {text!r}") from None
    if value < 1:
        raise GanarchError(f"{HEARTBEAT_ENV}: expected at least 1 second, got {value}")
    return value


def driver_url(url: str) -> str:
    """The URL SQLAlchemy connects with: a bare ``postgresql://`` or ``postgres://`` names
    psycopg 3 (``ganarch[postgres]``) explicitly. SQLAlchemy 2.0 would pick psycopg2 for a
    bare ``postgresql://`` and no version reads ``postgres://``; printed URLs stay as typed."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def _open_rdb(url: str) -> BaseStorage:
    beat = heartbeat_seconds()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Heartbeats let Optuna fail trials of killed workers on other machines too.
            return RDBStorage(
                driver_url(url),
                heartbeat_interval=beat,
                grace_period=3 * beat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except ImportError as exc:  # a driver is missing (psycopg for postgresql://)
        cause = exc.__cause__ or exc
        raise GanarchError(
            f"--storage: no database driver for {hide_password(url).split('://', 1)[0]}:// "
            f"({_first_line(cause)}); for PostgreSQL: pip install 'ganarch[postgres]'"
        ) from None
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError | ValueError):
            raise
        detail = _first_line(getattr(exc, "orig", None) or exc)
        raise GanarchError(
            f"--storage: cannot open {_hide_password(url)}: {_hide_password(detail)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


def hide_password(text: str) -> str:
    """``postgresql://u:secret@h/db?password=x`` -> ``postgresql://u:***@h/db?password=***``:
    what every printed storage URL goes through."""
    text = _URL_PASSWORD.sub(r"\1***\2", text)
    return _QUERY_PASSWORD.sub(r"\1***", text)


_hide_password = hide_password


def drop_password(text: str) -> str:
    """``postgresql://u:secret@h/db?password=x`` -> ``postgresql://u@h/db``: a URL to print in
    a command that runs as printed (the password comes from ``PGPASSWORD`` or ``~/.pgpass``)."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1)[:-1] + m.group(2), text)
    return _QUERY_PASSWORD_PARAM.sub(lambda m: m.group(1) if m.group(2) else "", text)


#: What goes with a printed command whose URL lost its password (``drop_password``).
PASSWORD_HINT = (
    "the password is not printed: give it in PGPASSWORD or ~/.pgpass, or set "
    f"{STORAGE_ENV} to the full URL and leave out --storage"
)
#: ``scheme://user:PASSWORD@`` (the password may hold anything but the last ``@``)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^\s]*(@[^@\s]*$|@[^@\s/]*/)", re.I)
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd)=)[^&\s]*", re.I)
_QUERY_PASSWORD_PARAM = re.compile(r"([?&])(?:password|passwd|pwd)=[^&\s]*(&|(?=\s|$))", re.I)


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


def _boot_id() -> str | None:
    """This boot of this machine (Linux): two containers or machines may share a host name."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def worker_identity() -> dict[str, Any]:
    """What a trial records about the process that runs it."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid, "start": _proc_start(pid)}


def worker_alive(worker: Any, *, one_machine: bool = False) -> bool | None:
    """True/False for a worker on this host; None when it ran elsewhere (cannot tell).

    ``one_machine``: the storage is shared by this machine only (a journal file), so a worker
    of this host name recorded before the last reboot is gone."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return None
    boot = worker.get("boot")
    if boot is not None and boot != _boot_id():
        # before a reboot, or another machine (container) with this host name
        return False if one_machine else None
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


def is_stale(trial: FrozenTrial, now: float | None = None, *, one_machine: bool = False) -> bool:
    if trial.state != TrialState.RUNNING:
        return False
    worker = trial.user_attrs.get(WORKER_ATTR)
    if worker is None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else None
        now = time.time() if now is None else now
        return started is not None and now - started > ORPHAN_AFTER_S
    return worker_alive(worker, one_machine=one_machine) is False


#: ``(study name, trial number)`` of the trials this process is running now (the objective
#: adds and removes them): a RUNNING trial that names this process but is not here was
#: abandoned (its run stopped before the storage could record it, e.g. on a full disk).
ACTIVE_TRIALS: set[tuple[str, int]] = set()


def _abandoned_here(study_name: str, trial: FrozenTrial) -> bool:
    worker = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(worker, dict) or (study_name, trial.number) in ACTIVE_TRIALS:
        return False
    me = worker_identity()
    return all(worker.get(k) == me[k] for k in ("host", "pid", "start"))


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail this host's RUNNING trials whose worker died, and queue their params again.

    Returns the numbers of the trials it failed. Trials of workers on other hosts are left to
    the RDB heartbeat (a journal file is shared only on one machine).
    """
    storage = study._storage
    one_machine = isinstance(storage, JournalStorage)
    failed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not (
            is_stale(trial, one_machine=one_machine) or _abandoned_here(study.study_name, trial)
        ):
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


def unchecked_running(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials of a journal whose worker this machine cannot check (another host name:
    another machine on a shared file, or a container that got a new name on restart).

    Nothing will ever judge them stale (a journal has no heartbeat), so waiting for them could
    last forever; the caller ends instead and names them (``unchecked_text``)."""
    if not isinstance(study._storage, JournalStorage):
        return []
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if WORKER_ATTR in t.user_attrs
        and worker_alive(t.user_attrs[WORKER_ATTR], one_machine=True) is None
    ]


def unchecked_text(trials: list[FrozenTrial], study_name: str, storage: str) -> str:
    """One line naming trials left running by workers this machine cannot check, and the
    command that marks one failed once its process is known to be gone."""
    who = "; ".join(
        f"trial {t.number} by host {w.get('host')!s} pid {w.get('pid')!s}"
        for t in trials
        for w in [t.user_attrs.get(WORKER_ATTR) or {}]
    )
    first = trials[0].number
    return (
        f"not waited for: {who} (marked running by a worker this machine cannot check). If "
        "that process is gone, mark the trial failed with `optuna tell --storage "
        f"{shlex.quote(storage)} --storage-class JournalFileBackend --study-name "
        f"{shlex.quote(study_name)} --trial-number {first} --state fail` (once per trial) "
        "and run the search again to train the rest"
    )


class StorageLock:
    """An exclusive lock shared by the workers of one storage.

    A worker holds it from counting the study's trials until its next trial exists and has
    recorded its worker, so N workers never start more trials than asked for and never take
    each other's fresh trials for stale ones. Local workers share an ``fcntl.flock`` file;
    on PostgreSQL the lock is a session advisory lock in the database itself, so workers on
    many machines share it too (and a killed worker's lock ends with its connection).
    ``release()`` may be called more than once.
    """

    def __init__(self, url: str) -> None:
        self._conn: Any = None
        self._server = not is_journal(url) and url.lower().startswith("postgres")
        if is_journal(url):
            self.path = Path(url).with_name(Path(url).name + ".ganarch-lock")
        else:
            digest = hashlib.sha1(url.encode()).hexdigest()[:16]
            self.path = Path(tempfile.gettempdir()) / f"ganarch-{digest}.lock"
        self._url = url
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._server:
            self._acquire_advisory()
            return
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
        if self._server:
            self._release_advisory()
            return
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire_advisory(self) -> None:
        if self._conn is not None:
            return
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(driver_url(self._url), poolclass=NullPool)
        conn = engine.connect()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _release_advisory(self) -> None:
        if self._conn is None:
            return
        import sqlalchemy

        conn, self._conn = self._conn, None
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            conn.commit()
        finally:
            conn.close()  # ends the session, which frees the lock in any case

    def __enter__(self) -> StorageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


#: The PostgreSQL advisory lock ganarch's workers share (one per database; held briefly).
ADVISORY_KEY = int.from_bytes(hashlib.sha1(b"ganarch.StorageLock").digest()[:8], "big", signed=True)
