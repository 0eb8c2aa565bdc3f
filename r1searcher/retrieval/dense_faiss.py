"""The FAISS side of dense retrieval: the index kinds (flat, ivf, hnsw, ivfpq, hnsw-sq8), their
parameters checked before any work, building one from streamed vector chunks, the per-kind search
defaults, and the read flags that memory-map a saved index (see :mod:`~r1searcher.retrieval.dense`)."""

from __future__ import annotations

import time

import numpy as np

from r1searcher.retrieval.dense_vectors import VectorChunks

INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq", "hnsw-sq8")
IVF_TYPES = ("ivf", "ivfpq")
HNSW_TYPES = ("hnsw", "hnsw-sq8")
#: Kinds that store compressed codes: trained on a sample, optionally re-ranked from fp16 vectors.
QUANTISED = ("ivfpq", "hnsw-sq8")
#: Rows the quantisers and coarse centroids are trained on, at most.
TRAIN_SAMPLE = 100_000
DEFAULT_NPROBE = {"ivf": 16, "ivfpq": 32}
DEFAULT_EF_SEARCH = {"hnsw": 64, "hnsw-sq8": 128}
DEFAULT_RERANK = {"ivfpq": 10}
BUILD_DEFAULTS = {"m": 32, "ef_construction": 80, "pq_m": 48, "pq_bits": 8, "train_sample": TRAIN_SAMPLE, "nlist": 1, "rerank": 0}


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
    questions are not distributed like the passages: probing a few percent of the cells lost much
    of flat's recall@10 on the shared corpus's eval questions (see BENCHMARKS.md, "Dense at scale")."""
    if index_type == "ivfpq":
        return min(nlist, max(DEFAULT_NPROBE["ivfpq"], -(-nlist // 4)))
    return DEFAULT_NPROBE.get(index_type, 16)


def search_defaults(index_type: str, nlist: int, nprobe: int | None, ef_search: int | None, rerank: int | None) -> dict:
    """Per-kind defaults of the search knobs (measured on the shared corpus: BENCHMARKS.md)."""
    return {
        "nprobe": nprobe if nprobe is not None else default_nprobe(index_type, nlist),
        "ef_search": ef_search if ef_search is not None else DEFAULT_EF_SEARCH.get(index_type, 64),
        "rerank": rerank if rerank is not None else DEFAULT_RERANK.get(index_type, 0),
    }


def io_flags(index_type: str, mmap: bool) -> int:
    """FAISS read flags: measured in FAISS 1.15, ``IO_FLAG_MMAP`` maps only IVF inverted lists (a
    no-op for flat/HNSW/SQ), while ``IO_FLAG_MMAP_IFC`` maps flat, SQ and HNSW-SQ codes zero-copy."""
    import faiss

    if not mmap:
        return 0
    return faiss.IO_FLAG_MMAP if index_type in IVF_TYPES else faiss.IO_FLAG_MMAP_IFC


def saved_params(index_type: str, dim: int, p: dict) -> dict:
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
