"""Keep a journal file readable after a crash mid-write.

Optuna's journal is one JSON record per line, appended under a lock. A process killed (or a
disk that fills) during an append leaves a partial last line. Optuna skips it when reading,
but the next append lands on the same line, and from then on every read of the file fails.

``repair(path)`` runs before a journal is opened: under Optuna's own journal lock (so no
writer is mid-append) it moves every byte that is not a whole record into a side file next
to the journal (``NAME.set-aside-STAMP``, never deleted) and leaves the whole records, so the
study goes on from its last whole record. A partial record glued to the front of a whole one
(the damage an older version did by appending after it) is split: the whole record is kept,
since every process that appended after the partial one had never read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

from ganarch.errors import GanarchError

__all__ = ["Repair", "repair", "scan"]

_RECORD_START = b'{"op_code"'


@dataclass(frozen=True)
class Repair:
    """What ``repair`` set aside: how many bytes, from how many damaged lines, and where."""

    journal: Path
    side_file: Path | None
    n_bytes: int
    n_lines: int
    trailing_only: bool

    def note(self) -> str:
        where = f"set aside in {self.side_file}" if self.side_file else "could not be set aside"
        what = (
            "ended in a partial record"
            if self.trailing_only
            else f"held {self.n_lines} damaged record(s)"
        )
        return (
            f"{self.journal} {what} ({self.n_bytes} bytes, from a crash or a full disk "
            f"mid-write); {where}; the study goes on from its last whole record"
        )


def _whole(line: bytes) -> bool:
    if not line.endswith(b"\n"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def scan(data: bytes) -> tuple[bytes, bytes, int]:
    """Split a journal's bytes into (whole records, set-aside bytes, damaged line count)."""
    keep: list[bytes] = []
    drop: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if _whole(line):
            keep.append(line)
            continue
        # a partial record followed by a whole one on the same line: keep the whole one
        cut = line.rfind(_RECORD_START)
        while cut > 0 and not _whole(line[cut:]):
            cut = line.rfind(_RECORD_START, 0, cut)
        if cut > 0:
            drop.append(line[:cut])
            keep.append(line[cut:])
        else:
            drop.append(line)
    return b"".join(keep), b"".join(drop), len(drop)


def _looks_whole(path: Path) -> bool:
    """Cheap check without the lock: the file ends in a newline and every line is a record."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return True
    if not data.endswith(b"\n"):
        return False
    return all(_whole(line) for line in data.splitlines(keepends=True))


def repair(path: str | os.PathLike) -> Repair | None:
    """Set aside whatever in the journal at ``path`` is not a whole record; None if nothing was.

    Raises ``GanarchError`` when damage other than a partial last record cannot be set aside
    (no permission to rewrite the file): Optuna could not read such a journal.
    """
    path = Path(path)
    try:
        if not path.is_file() or _looks_whole(path):
            return None
    except OSError:
        return None  # unreadable: opening it says so
    lock = JournalFileSymlinkLock(str(path))
    try:
        lock.acquire()
    except OSError:  # a read-only folder: read what is there, set nothing aside
        return _unrepaired(path)
    try:
        data = path.read_bytes()  # again, under the lock: a writer may have finished meanwhile
        keep, drop, n_lines = scan(data)
        if not drop:
            return None
        trailing = data.startswith(keep) and len(keep) + len(drop) == len(data)
        side = path.with_name(
            f"{path.name}.set-aside-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        )
        try:
            side = _write_new(side, drop)
            if trailing:
                os.truncate(path, len(keep))
            else:
                _replace(path, keep)
        except OSError as exc:
            if trailing:
                return Repair(path, None, len(drop), n_lines, True)  # Optuna skips it on reading
            raise GanarchError(
                f"{path} holds {n_lines} damaged record(s) and cannot be rewritten ({exc}); "
                "copy it somewhere writable and point --storage at the copy"
            ) from None
        return Repair(path, side, len(drop), n_lines, trailing)
    finally:
        with contextlib.suppress(RuntimeError):
            lock.release()


def _unrepaired(path: Path) -> Repair | None:
    data = path.read_bytes()
    keep, drop, n_lines = scan(data)
    if not drop:
        return None
    if data.startswith(keep) and len(keep) + len(drop) == len(data):
        return Repair(path, None, len(drop), n_lines, True)
    raise GanarchError(
        f"{path} holds {n_lines} damaged record(s) and its folder is read-only; copy it "
        "somewhere writable and point --storage at the copy"
    )


def _write_new(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new file at ``path`` (or ``path.N`` when it exists), synced."""
    for n in range(1000):
        target = path if n == 0 else path.with_name(f"{path.name}.{n}")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return target
    raise FileExistsError(path)


def _replace(path: Path, data: bytes) -> None:
    """Replace ``path``'s content atomically (a crash leaves the old or the new file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, path.stat().st_mode & 0o777)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
