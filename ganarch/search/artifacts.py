"""Who owns a search's artifacts folder.

Trials write ``OUT/trial-N`` and overwrite what is there, which is only safe when the folder
is this study's own. ``OUT/study.json`` names the owner (study and storage); it is created
once, never replaced, and every later search with that ``--out`` is checked against it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ganarch.errors import GanarchError

__all__ = ["OWNER_FILE", "check_owner", "claim", "create_exclusive"]

#: The file in a study's artifacts folder that names the study owning it.
OWNER_FILE = "study.json"


def check_owner(out: Path, owner: Mapping[str, str]) -> None:
    """Refuse ``out`` when its marker names another owner (nothing is written)."""
    marker = out / OWNER_FILE
    try:
        for folder in (out, *out.parents):
            if folder.exists() and not folder.is_dir():
                raise GanarchError(f"--out: {folder} is a file, not a folder")
        present = marker.exists()
    except OSError as exc:  # e.g. no permission to look
        raise GanarchError(f"--out: cannot use {out}: {exc}") from None
    if present:
        _compare(marker, owner)


def claim(out: Path, owner: Mapping[str, str]) -> Callable[[], None] | None:
    """Create ``out`` and its marker unless the marker exists; then check it. Of two searches
    started together one writes the marker and the other is checked against it.

    Returns an undo (remove what this call created) when it wrote the marker, else None.
    """
    marker = out / OWNER_FILE
    made = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        wrote = create_exclusive(marker, json.dumps(dict(owner), indent=2) + "\n")
    except OSError as exc:
        raise GanarchError(f"--out: cannot write {marker}: {exc}") from None
    _compare(marker, owner)
    if not wrote:
        return None

    def undo() -> None:
        with contextlib.suppress(OSError):
            marker.unlink()
            for folder in made:  # deepest first; only the empty ones this call made
                folder.rmdir()

    return undo


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists; False when it did. Atomic where
    hard links work (a reader never sees half a file); elsewhere an O_EXCL create."""
    fd, tmp = tempfile.mkstemp(prefix=".study-", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would lock out other users of a shared folder
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links
            pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _compare(marker: Path, owner: Mapping[str, str]) -> None:
    for attempt in range(20):  # a marker being written by a racing search: read it again
        try:
            found = json.loads(marker.read_text())
            break
        except ValueError:
            if attempt == 19:
                raise GanarchError(f"--out: {marker} is not a study marker") from None
            time.sleep(0.05)
        except OSError as exc:
            raise GanarchError(f"--out: cannot read {marker}: {exc}") from None
    if not isinstance(found, dict):
        raise GanarchError(f"--out: {marker} is not a study marker; pass another --out")
    if any(found.get(k) != v for k, v in owner.items()):
        raise GanarchError(
            f"--out: {marker.parent} belongs to study {found.get('study')!r} in "
            f"{found.get('storage')}; pass another --out for this study"
        )
