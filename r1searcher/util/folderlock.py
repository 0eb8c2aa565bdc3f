"""An exclusive lock on an output folder, so two runs never write into it at once.

``folder_lock(DIR)`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``DIR/.lock`` for as long as the
``with`` block runs. The kernel releases a flock when its holder exits, however it exits (a crash or
``kill -9`` included), so a lock is never left stale and the file itself is never deleted (deleting
it would let a second process lock a new file while the first still holds the old one). A second
process is refused at once with one line naming the folder and the holder's pid. Within one process
the lock is re-entrant (a flock is per open file, so a nested ``open`` + ``flock`` would refuse its
own holder): ``r1searcher eval`` holds every dataset folder for the whole run and
``evaluate_dataset`` takes the same lock again. Linux and macOS (``fcntl``).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"

_guard = threading.Lock()
_held: dict[str, list[int]] = {}  # lock file (resolved) -> [fd, depth]


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock; the message is one line naming folder and pid."""


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "?"
    return text if text.isdigit() else "?"


@contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "run") -> Iterator[Path]:
    """Hold ``folder/.lock`` exclusively (the folder is created); yields the lock file's path.

    Raises :class:`FolderBusy` when another process holds it; ``what`` names the kind of run in
    that message. OSError (no permission, …) names the lock file.
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    path = d / LOCK_NAME
    key = str(path.resolve())
    with _guard:
        if key in _held:
            _held[key][1] += 1
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise FolderBusy(f"{d} is in use by another {what} (pid {pid} holds {path}); "
                                 f"wait for it to finish or choose another folder") from None
            except OSError as e:  # a file system without flock (ENOLCK): name the lock file
                os.close(fd)
                raise OSError(e.errno, f"cannot lock it ({e.strerror})", str(path)) from None
            try:  # the holder's pid, for the message a second process gets (a full disk may refuse it)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass
            _held[key] = [fd, 1]
    try:
        yield path
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])  # closing the only descriptor releases the flock
