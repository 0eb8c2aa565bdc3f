"""Output folders: nothing a user owns is ever deleted.

Every command that writes a folder (``index build``, ``synth``, benchmarks) follows one rule: it
writes beside the target (``OUT.tmp``) and replaces the target only when the target is absent,
empty, or recognisably ours (an index whose ``manifest.json`` says r1searcher wrote it, a world
``synth`` wrote, an unfinished build's leftovers); anything else is refused with one line naming
the folder and what it holds, before any work is done, and nothing is touched. The check runs
again at the moment of replacing, so a folder that gained someone's files during a long build is
refused too.

``is_ours`` predicates say what "ours" means for each kind of output; this module only applies
the rule. :class:`NotOursError` is a :class:`FileExistsError` (an ``OSError``), so the CLI prints
it as its usual one-line error and exits 2.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

#: Says whether an existing, non-empty folder is one of ours (safe to replace or remove).
IsOurs = Callable[[Path], bool]


class NotOursError(FileExistsError):
    """The output path exists and is not ours to replace; the message is one line."""


def _listing(path: Path, most: int = 4) -> str:
    try:
        names = sorted(e.name + ("/" if e.is_dir() else "") for e in path.iterdir())
    except OSError as e:
        return f"cannot be listed: {e.strerror or e}"
    shown = ", ".join(names[:most]) + (", …" if len(names) > most else "")
    return f"it holds {shown}"


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None
    except OSError:
        return False


def check_replaceable(path: str | Path, is_ours: IsOurs, what: str, label: str = "") -> None:
    """Raise :class:`NotOursError` unless ``path`` is absent, an empty folder, or ``is_ours``.

    ``what`` names what would be ours (``"an r1searcher index"``); ``label`` the flag it came from
    (``"--out"``), for the message: ``--out data exists and is not an r1searcher index (it holds
    corpus/, eval/); choose another folder or remove it``.
    """
    p = Path(path)
    head = f"{label} {p}" if label else str(p)
    if p.is_symlink():
        raise NotOursError(f"{head} is a symbolic link; give the folder it points to, or another folder")
    if not p.exists():
        return
    if not p.is_dir():
        raise NotOursError(f"{head} exists and is a file, not {what}; choose another folder or remove it")
    if _is_empty_dir(p) or is_ours(p):
        return
    raise NotOursError(f"{head} exists and is not {what} ({_listing(p)}); choose another folder or remove it")


def remove_ours(path: str | Path, is_ours: IsOurs, what: str, label: str = "") -> None:
    """Remove ``path`` (absent: nothing to do) after :func:`check_replaceable` has allowed it."""
    p = Path(path)
    check_replaceable(p, is_ours, what, label)
    if p.exists():
        shutil.rmtree(p)


def fresh_tmp(target: str | Path, is_ours: IsOurs, what: str, suffix: str = ".tmp") -> Path:
    """An empty folder ``TARGET.tmp`` beside ``target`` to build into; leftovers of ours are removed,
    anything else there is refused."""
    t = Path(target)
    tmp = t.with_name(t.name + suffix)
    remove_ours(tmp, is_ours, what)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: str | Path, target: str | Path, is_ours: IsOurs, what: str, label: str = "") -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing a target that is empty or ours.

    The target is checked again here (it may have changed during the build). An old target of
    ours is first renamed to ``TARGET.old`` and removed only once ``tmp`` is in place, so a kill
    between the two renames leaves both the old and the new folder on disk, never neither.
    """
    tmp, target = Path(tmp), Path(target)
    check_replaceable(target, is_ours, what, label)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(target)
        return
    if _is_empty_dir(target):
        os.replace(tmp, target)  # POSIX rename replaces an empty folder in one step
        return
    old = target.with_name(target.name + ".old")
    remove_ours(old, is_ours, what)
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old)
