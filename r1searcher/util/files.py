"""The one JSONL reader, the one JSONL appender and the one atomic file writer.

Why one of each: runs append JSONL files (predictions, logs, samples) that a kill can leave with a
torn last line, and rewrite small files (metrics, manifests, state) that a kill or a full disk must
never leave half-written. Each caller used to spell this out again, and only one repaired a torn
line. Here:

- :func:`read_jsonl` reads every line it can: a damaged line (not UTF-8, not JSON, not an object) is
  reported as ``file:line: reason`` and skipped, never the end of the file. The *torn last line* (the
  last line has no newline and does not parse: a write was cut off) is reported like any other
  (``on_torn="report"``), or cut off the file so the next append starts on a fresh line
  (``on_torn="repair"``). ``on_bad="raise"`` turns the first damaged line into a ``ValueError``
  naming ``file:line``, for files that must be whole. :func:`iter_jsonl` streams the same verdicts
  line by line, for callers that stop early or check rows as they come.
- :func:`append_jsonl` appends rows, fsyncs, and on failure cuts the file back to where it was (no
  torn line), raising an ``OSError`` that names the file.
- :func:`write_atomic` replaces a file by writing a temp file in the same folder, fsyncing it and
  renaming it over the target: a kill, a full disk or an error while producing the data leaves the old
  file whole and no temp file behind; an ``OSError`` names the target.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

_TEMP_IDS = itertools.count()


@dataclass(frozen=True)
class Damaged:
    """One line that could not be read; ``str()`` is ``file:line: reason``."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class Jsonl:
    """What :func:`read_jsonl` found: ``rows`` as ``(line number, value)`` in file order (line numbers
    count from 1 and include blank lines, as an editor shows them), the ``damaged`` lines, and the
    ``torn`` last line (also in ``damaged`` when reported, only here when repaired)."""

    rows: list[tuple[int, Any]] = field(default_factory=list)
    damaged: list[Damaged] = field(default_factory=list)
    torn: Damaged | None = None

    def values(self) -> list[Any]:
        """The rows' values, without line numbers."""
        return [v for _, v in self.rows]

    def messages(self) -> list[str]:
        """One ``file:line: reason`` per damaged line."""
        return [str(d) for d in self.damaged]


def _parse(raw: bytes, objects: bool) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, reason)`` when ``raw`` is not one JSON value (object)."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text ({e.reason} at byte {e.start})"
    except json.JSONDecodeError as e:
        torn = " (a torn write)" if not raw.endswith(b"\n") else ""
        return None, f"invalid JSON{torn} ({e.msg} at column {e.colno})"
    if objects and not isinstance(value, dict):
        return None, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def iter_jsonl(path: str | Path, *, objects: bool = True) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for each non-blank line of ``path`` as it is read, with a
    :class:`Damaged` as the value of a line that is not one JSON value (object, when ``objects``).
    Streams: for callers that stop early or merge their own checks in line order."""
    path = Path(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if raw.strip():
                value, reason = _parse(raw, objects)
                yield lineno, (value if reason is None else Damaged(path, lineno, reason))


def read_jsonl(path: str | Path, *, on_torn: Literal["report", "repair"] = "report",
               on_bad: Literal["report", "raise"] = "report", objects: bool = True,
               missing_ok: bool = False) -> Jsonl:
    """Read the JSONL file ``path`` (see the module doc).

    ``objects``: each line must be a JSON object (else any JSON value). ``missing_ok``: an absent file
    reads as empty (else ``FileNotFoundError``). ``on_torn="repair"`` truncates a torn last line away
    (logged as a warning) and adds the missing newline after a last line that parses; ``on_bad="raise"``
    raises ``ValueError("file:line: reason")`` for the first damaged line (after any repair).
    """
    path = Path(path)
    out = Jsonl()
    if missing_ok and not path.exists():
        return out
    size, last = 0, b"\n"
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            size, last = size + len(raw), raw
            if not raw.strip():
                continue
            value, reason = _parse(raw, objects)
            if reason is None:
                out.rows.append((lineno, value))
                continue
            bad = Damaged(path, lineno, reason)
            if not raw.endswith(b"\n"):
                out.torn = bad
                if on_torn == "repair":
                    continue
            out.damaged.append(bad)
    if on_torn == "repair" and not last.endswith(b"\n"):
        _repair(path, size - len(last) if out.torn is not None else None)
    if on_bad == "raise" and out.damaged:
        raise ValueError(str(out.damaged[0]))
    return out


def _repair(path: Path, cut_at: int | None) -> None:
    """Cut the torn last line off ``path`` at byte ``cut_at``, or (None) end its whole last line."""
    try:
        with open(path, "r+b") as f:
            if cut_at is None:
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                f.truncate(cut_at)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _named(e, path) from None
    if cut_at is not None:
        log.warning("%s: a torn last line (an interrupted write) was cut off", path)


def encode_jsonl(rows: Iterable[Any], ensure_ascii: bool = False) -> bytes:
    """One JSON line per row, UTF-8. A lone surrogate (from a passage or the model) cannot be UTF-8:
    that row is written with ASCII escapes, still valid JSON that reads back the same."""
    out = []
    for row in rows:
        try:
            out.append((json.dumps(row, ensure_ascii=ensure_ascii) + "\n").encode("utf-8"))
        except UnicodeEncodeError:
            out.append((json.dumps(row) + "\n").encode("ascii"))
    return b"".join(out)


def _named(e: OSError, path: Path) -> OSError:
    """``e`` with ``path`` as its filename when it has none (a full disk's ENOSPC names no file)."""
    if e.filename:
        return e
    return OSError(e.errno, e.strerror or str(e), str(path))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append_bytes(path: str | Path, data: bytes, *, fd: int | None = None, fsync: bool = True) -> None:
    """Append ``data`` to ``path`` (through ``fd`` when the caller holds it open) and fsync; on failure
    cut the file back to its old end (no torn line) and raise an ``OSError`` naming ``path``."""
    path = Path(path)
    own = fd is None
    try:
        if own:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise _named(e, path) from None
    assert fd is not None
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise _named(e, path) from None
    finally:
        if own:
            os.close(fd)


def append_jsonl(path: str | Path, rows: Iterable[Any], *, ensure_ascii: bool = False, fd: int | None = None,
                 fsync: bool = True) -> None:
    """Append ``rows`` to ``path`` as JSON lines, all or none (see :func:`append_bytes`)."""
    append_bytes(path, encode_jsonl(rows, ensure_ascii), fd=fd, fsync=fsync)


def write_atomic(path: str | Path, data: bytes | str | Iterable[bytes | str], *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data``: bytes, text (``encoding``), or an iterable of chunks written as
    they come. The temp file (``.NAME.PID.N.tmp`` in the same folder) is fsynced and renamed over
    ``path``; on any error (a full disk, a chunk that raises) it is removed and the old file stays
    whole. An ``OSError`` names ``path``; any other error propagates as raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_TEMP_IDS)}.tmp")
    chunks: Iterable[bytes | str] = [data] if isinstance(data, (bytes, bytearray, str)) else data
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            for chunk in chunks:
                _write_all(fd, chunk.encode(encoding) if isinstance(chunk, str) else bytes(chunk))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):  # named by the target, never by the temp file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise

