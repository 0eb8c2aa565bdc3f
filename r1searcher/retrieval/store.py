"""Passage tables that indexes map row numbers to: in memory, or on disk with a byte-offset table.

An index stores only row numbers; the texts live here. The on-disk form is the canonical
passages JSONL (``passages.jsonl``, the same bytes as the corpus file, so its sha256 is the
corpus sha256) plus ``offsets.npy`` (int64 start of every line, and the end of the file):
a loaded index memory-maps the JSONL and decodes only the rows a search returns, so a 29M
passage corpus costs 8 bytes per passage of RAM instead of ~20 GB of Python strings.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.corpus import passage_line

PASSAGES_FILE = "passages.jsonl"
OFFSETS_FILE = "offsets.npy"


class PassageTable(Protocol):
    """Row-number access to passages."""

    def __len__(self) -> int: ...

    def get(self, row: int) -> Passage: ...


class MemoryTable:
    """Passages held in a Python list (what a freshly built index uses until it is saved)."""

    def __init__(self, passages: Sequence[Passage]):
        self._rows = list(passages)

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, row: int) -> Passage:
        return self._rows[row]

    def __iter__(self):
        return iter(self._rows)


class DiskTable:
    """Passages in a memory-mapped JSONL, located by ``offsets.npy``; safe to read from many threads."""

    def __init__(self, directory: str | Path):
        d = Path(directory)
        self.directory = d
        path, opath = d / PASSAGES_FILE, d / OFFSETS_FILE
        if not path.is_file() or not opath.is_file():
            raise FileNotFoundError(f"no passage store in {d} (expected {PASSAGES_FILE} and {OFFSETS_FILE})")
        self._offsets = np.load(opath, mmap_mode="r")  # 8 B per passage stays on disk (232 MB at 29M)
        self._file = open(path, "rb")
        size = path.stat().st_size
        if int(self._offsets[-1]) != size:
            raise ValueError(f"{opath} does not match {path} (file is {size} bytes, table says {int(self._offsets[-1])})")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        if self._mm is not None and hasattr(mmap, "MADV_RANDOM"):
            # rows are read at random: without this the kernel reads ahead ~128 KB around every
            # row, and a served 10M-passage store becomes resident after a few thousand queries
            self._mm.madvise(mmap.MADV_RANDOM)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, row: int) -> Passage:
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range (0..{len(self) - 1})")
        a, b = int(self._offsets[row]), int(self._offsets[row + 1])
        obj = json.loads(self._mm[a:b])  # type: ignore[index]
        return Passage(id=obj["id"], title=obj["title"], text=obj["text"])

    def __iter__(self):
        for i in range(len(self)):
            yield self.get(i)

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
        self._file.close()


def scored_passages(table: PassageTable, hits: list[list[tuple[int, float]]]) -> list[list[Passage]]:
    """``search_rows`` output (row, score) per query → the passages of ``table``, each with its score."""
    out = []
    for per_query in hits:
        rows = []
        for r, s in per_query:
            p = table.get(r)
            rows.append(Passage(id=p.id, title=p.title, text=p.text, score=s))
        out.append(rows)
    return out


def write_table(passages: Iterable[Passage], directory: str | Path) -> tuple[str, int]:
    """Write ``passages.jsonl`` + ``offsets.npy`` into ``directory``; return (sha256, count)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    offsets = [0]
    pos = 0
    with open(d / PASSAGES_FILE, "wb") as f:
        for p in passages:
            b = passage_line(p).encode("utf-8")
            f.write(b)
            h.update(b)
            pos += len(b)
            offsets.append(pos)
    np.save(d / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))
    return h.hexdigest(), len(offsets) - 1


def same_store(table: PassageTable, directory: str | Path) -> bool:
    """True when ``table`` is already the on-disk store of ``directory`` (re-saving in place)."""
    return isinstance(table, DiskTable) and table.directory.resolve() == Path(directory).resolve()
