"""Corpus vectors as row-ordered chunks, and the fp16 re-rank store of the quantised dense indexes.

Why chunks: 29M MiniLM passages are 44 GB of float32. The quantised FAISS kinds (``ivfpq``,
``hnsw-sq8``) need only a training sample (≤ 100k rows by default) and then one chunk at a time
to add, so :class:`VectorChunks` reads the encoder's per-chunk ``emb_<start>_<rows>.npy`` files
lazily (memory-mapped), draws the training sample from them without loading the rest, and
re-batches them into fixed-size adds so that a streamed build and an in-memory build make the
same FAISS calls (and hence the same index).

Why a re-rank store: product quantisation alone loses too much for recall@10 vs exact search
(see BENCHMARKS.md, "Dense at scale"); re-scoring ``rerank × k`` PQ candidates with the stored
vectors (float16, 768 B per 384-d passage) restores it. The store is a ``.npy`` file that a
loaded index memory-maps, so serving needs RAM only for the rows a query actually touches.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

CHUNK_RE = re.compile(r"^emb_(\d{10})_(\d+)\.npy$")
#: Rows per ``index.add`` call, whatever the source's chunking (keeps streamed == in-memory).
ADD_BATCH = 16384


def chunk_name(start: int, rows: int) -> str:
    """File name of the chunk holding rows ``start … start+rows-1`` (what the encoder writes)."""
    return f"emb_{start:010d}_{rows}.npy"


class VectorChunks:
    """The corpus's vectors as contiguous row ranges, each loaded only when iterated.

    Can be iterated any number of times (one pass to sample, one to add). ``parts`` is a list of
    ``(start, rows, load)`` covering ``0 … n-1`` without gaps or overlaps.
    """

    def __init__(self, parts: list[tuple[int, int, Callable[[], np.ndarray]]], dim: int, where: str = "arrays"):
        pos = 0
        for start, rows, _ in parts:
            if start != pos:
                raise ValueError(f"{where}: vector chunks are not contiguous (expected row {pos}, chunk starts at {start})")
            pos += rows
        if pos == 0:
            raise ValueError(f"{where}: no vectors")
        self._parts = parts
        self.n, self.dim, self.where = pos, int(dim), where
        self.in_memory = where == "arrays"

    def __len__(self) -> int:
        return self.n

    @classmethod
    def from_array(cls, vectors: np.ndarray, chunk: int = ADD_BATCH) -> VectorChunks:
        """Wrap an in-memory ``(n, dim)`` array (no copy)."""
        v = np.asarray(vectors)
        if v.ndim != 2:
            raise ValueError(f"vectors must be a 2-d array (n, dim), got shape {v.shape}")
        parts = [(s, min(chunk, len(v) - s), (lambda s=s: v[s : s + chunk])) for s in range(0, len(v), chunk)]
        return cls(parts, v.shape[1])

    @classmethod
    def from_files(cls, paths: list[Path]) -> VectorChunks:
        """Chunk files named ``emb_<start>_<rows>.npy``, in any order; checks names against shapes."""
        parts, dim = [], None
        for p in sorted(paths, key=lambda p: p.name):
            mt = CHUNK_RE.match(p.name)
            if mt is None:
                raise ValueError(f"{p}: not a vector chunk file (expected emb_<start>_<rows>.npy)")
            start, rows = int(mt.group(1)), int(mt.group(2))
            shape = np.load(p, mmap_mode="r").shape  # reads the header only
            if len(shape) != 2 or shape[0] != rows or (dim is not None and shape[1] != dim):
                raise ValueError(f"{p}: shape {shape} does not match its name ({rows} rows, dim {dim})")
            dim = shape[1]
            parts.append((start, rows, lambda p=p: np.load(p, mmap_mode="r")))
        where = str(paths[0].parent) if paths else "chunk files"
        return cls(parts, dim or 0, where)

    @classmethod
    def from_dir(cls, directory: str | Path, n: int | None = None) -> VectorChunks:
        """The complete chunk files in ``directory`` (``*.tmp.npy`` ignored); ``n``: the rows expected."""
        d = Path(directory)
        paths = [p for p in d.glob("emb_*.npy") if CHUNK_RE.match(p.name)]
        if not paths:
            raise FileNotFoundError(f"no vector chunk files (emb_<start>_<rows>.npy) in {d}")
        chunks = cls.from_files(paths)
        if n is not None and chunks.n != n:
            raise ValueError(f"{d}: chunk files hold {chunks.n} vectors, expected {n}")
        return chunks

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(start row, float32 C-contiguous chunk)`` in row order; one chunk in RAM at a time."""
        for start, rows, load in self._parts:
            v = load()
            if v.shape != (rows, self.dim):
                raise ValueError(f"{self.where}: chunk at row {start} has shape {v.shape}, expected {(rows, self.dim)}")
            yield start, np.ascontiguousarray(v, dtype=np.float32)

    def batches(self, size: int = ADD_BATCH) -> Iterator[tuple[int, np.ndarray]]:
        """Re-cut the chunks into batches of exactly ``size`` rows (the last may be shorter)."""
        buf: list[np.ndarray] = []
        have, start = 0, 0
        for _, v in self:
            while len(v):
                take = min(size - have, len(v))
                buf.append(v[:take])
                have += take
                v = v[take:]
                if have == size:
                    yield start, np.concatenate(buf) if len(buf) > 1 else buf[0]
                    start, buf, have = start + size, [], 0
        if have:
            yield start, np.concatenate(buf) if len(buf) > 1 else buf[0]

    def sample_rows(self, size: int, seed: int = 0) -> np.ndarray:
        """Sorted row numbers of the training sample: all rows when ``size >= n``."""
        if size >= self.n:
            return np.arange(self.n)
        return np.sort(np.random.default_rng(seed).choice(self.n, size=size, replace=False))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of sorted ``rows``, reading only the chunks (and, memory-mapped, pages) they fall in."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        j = 0
        for start, n_rows, load in self._parts:
            hi = int(np.searchsorted(rows, start + n_rows))
            if hi > j:
                out[j:hi] = load()[rows[j:hi] - start]
                j = hi
        return out


def new_store(n: int, dim: int, directory: str | Path | None) -> np.ndarray:
    """An ``(n, dim)`` float16 re-rank store: in RAM, or (``directory``) an unlinked scratch memmap.

    Why unlinked: a streamed build must not hold the store in RAM, and the scratch file should
    vanish even if the build dies; the mapping stays valid until the index is saved or dropped.
    """
    if directory is None:
        return np.empty((n, dim), dtype=np.float16)
    fd, name = tempfile.mkstemp(prefix="rerank-", suffix=".f16.npy", dir=directory)
    os.close(fd)
    try:
        return np.lib.format.open_memmap(name, mode="w+", dtype=np.float16, shape=(n, dim))
    finally:
        os.unlink(name)


def rerank(queries: np.ndarray, cand: np.ndarray, store: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate rows ``cand`` (−1 = none) by inner product with ``store``; keep the top ``k``.

    Returns FAISS-shaped ``(scores, rows)``; missing hits are row −1 with score −inf. Candidates
    are read in row order so a memory-mapped store is touched page by page, not at random.
    """
    nq, kk = cand.shape
    valid = cand >= 0
    uniq, inv = np.unique(np.where(valid, cand, 0), return_inverse=True)
    vecs = np.asarray(store[uniq], dtype=np.float32)
    scores = np.einsum("qkd,qd->qk", vecs[inv.reshape(nq, kk)], queries)
    scores[~valid] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    s = np.take_along_axis(scores, top, axis=1)
    r = np.take_along_axis(cand, top, axis=1)
    r[~np.isfinite(s)] = -1
    return s.astype(np.float32), r
