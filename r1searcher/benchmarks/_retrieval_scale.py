"""How BM25 and dense retrieval grow with the corpus (part of ``bench retrieval --scale``).

BM25 is measured on synthetic Wikipedia-like passages (60–100 Zipf-distributed words from a
50k pseudo-word vocabulary, two-word titles) at each requested size, in two fresh subprocesses
per size so that peak RSS is the job's own: a *build* worker (generate, index, save: build time,
peak RSS) and a *serve* worker (load the saved index, answer 1000 five-word queries drawn from
random passages: load time, RSS, queries/s, and whether the source passage came back in the top 5).
Dense is measured at 10k only (FAISS flat over real MiniLM vectors from the cached shared-corpus
index when present; encoding time comes from the encode rate measured on real passages), then
extrapolated: flat memory is exactly 1.5 KB per passage, search cost is linear in the corpus.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KILT_PASSAGES = 29_000_000
VOCAB = 50_000


def _vocab(rng: np.random.Generator) -> np.ndarray:
    syll = np.array(["ka", "to", "ri", "men", "sa", "lo", "vin", "der", "ba", "chi", "ne", "mor", "tes", "gal", "ru",
                     "pa", "zen", "li", "dor", "fa", "qu", "shi", "ven", "tor", "el", "an", "is", "um", "ox", "yr"])
    words: set[str] = set()
    while len(words) < VOCAB:
        n = rng.integers(2, 5, size=4096)
        parts = rng.integers(0, len(syll), size=(4096, 4))
        for k, row in zip(n, parts):
            words.add("".join(syll[row[:k]]))
    return np.array(sorted(words)[:VOCAB])


def synthetic_passages(n: int, seed: int = 0):
    """``n`` synthetic passages and their word-id rows (deterministic for a seed)."""
    from r1searcher.retrieval.base import Passage

    rng = np.random.default_rng(seed)
    vocab = _vocab(rng)
    p = 1.0 / (np.arange(VOCAB) + 2.7)
    cdf = np.cumsum(p / p.sum())
    lengths = rng.integers(60, 101, size=n)
    ids = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), VOCAB - 1)
    titles = rng.integers(VOCAB // 10, VOCAB, size=(n, 2))
    out, rows, pos = [], [], 0
    for i in range(n):
        row = ids[pos : pos + lengths[i]]
        pos += lengths[i]
        rows.append(row)
        out.append(Passage(id=f"s{i:08d}", title=f"{vocab[titles[i, 0]].title()} {vocab[titles[i, 1]].title()}", text=" ".join(vocab[row])))
    return out, rows, vocab


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    worker started from a big parent would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dir_mb(d: Path, skip: tuple[str, ...] = ()) -> float:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and f.name not in skip) / 2**20


def build_worker(n: int, out_dir: str) -> dict:
    """Subprocess body: generate ``n`` passages, build + save BM25, write 1000 queries."""
    from r1searcher.retrieval.bm25 import BM25Index

    t0 = time.perf_counter()
    passages, rows, vocab = synthetic_passages(n)
    t1 = time.perf_counter()
    rss_corpus = _rss_mb()
    idx = BM25Index.build(passages)
    t2 = time.perf_counter()
    idx.save(out_dir)
    t3 = time.perf_counter()
    rng = np.random.default_rng(1)
    qrows = rng.integers(0, n, size=1000)
    queries = [{"query": " ".join(vocab[rng.choice(rows[r], size=5, replace=False)]), "gold": passages[r].id} for r in qrows]
    (Path(out_dir) / "queries.json").write_text(json.dumps(queries))
    return {
        "generate_s": round(t1 - t0, 2), "build_s": round(t2 - t1, 2), "save_s": round(t3 - t2, 2),
        "build_passages_per_s": round(n / (t2 - t1)), "rss_with_corpus_mb": round(rss_corpus),
        "peak_rss_build_mb": round(_peak_mb()),
    }


def serve_worker(index_dir: str) -> dict:
    """Subprocess body: load a saved BM25 index, answer its 1000 queries (batches of 100)."""
    import bm25s  # noqa: F401  (imported before the baseline RSS so it is not counted as index memory)

    from r1searcher.retrieval.bm25 import BM25Index

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    idx = BM25Index.load(index_dir)
    t1 = time.perf_counter()
    rss_loaded = _rss_mb()
    queries = json.loads((Path(index_dir) / "queries.json").read_text())
    qs = [q["query"] for q in queries]
    idx.search(qs[:10], 5)  # warm-up
    t2 = time.perf_counter()
    res = []
    for s in range(0, len(qs), 100):
        res.extend(idx.search(qs[s : s + 100], 5))
    t3 = time.perf_counter()
    gold = sum(q["gold"] in {p.id for p in r} for q, r in zip(queries, res)) / len(queries)
    return {
        "load_s": round(t1 - t0, 2), "index_rss_mb": round(rss_loaded - rss0), "peak_rss_serve_mb": round(_peak_mb()),
        "qps_batch100": round(len(qs) / (t3 - t2)), "gold_in_top5": round(gold, 3),
    }


def _run_worker(fn: str, *args: object) -> dict:
    code = f"import json,sys; from r1searcher.benchmarks._retrieval_scale import {fn}; print(json.dumps({fn}(*json.loads(sys.argv[1]))))"
    r = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True,
                       env={**os.environ, "TQDM_DISABLE": "1"})
    if r.returncode != 0:
        raise RuntimeError(f"{fn}{args} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bm25_at(n: int, log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"r1s-scale-{n}-") as d:
        b = _run_worker("build_worker", n, d)
        disk_index = _dir_mb(Path(d), ("passages.jsonl", "offsets.npy", "queries.json", "manifest.json"))
        disk_all = _dir_mb(Path(d), ("queries.json",))
        s = _run_worker("serve_worker", d)
    row = {"passages": n, **b, **s, "disk_index_mb": round(disk_index, 1), "disk_with_passages_mb": round(disk_all, 1)}
    log(f"scale: bm25 {n:>9,}: build {row['build_s']} s, {row['disk_index_mb']} MB index, "
        f"peak build {row['peak_rss_build_mb']} MB, {row['qps_batch100']} q/s")
    return row


def dense_at_10k(cache_vectors: np.ndarray | None, encode_rate: float | None) -> dict:
    """FAISS flat at 10k vectors (real MiniLM vectors when given): add time, exact size, search rates."""
    import faiss

    from r1searcher.retrieval.dense import cpu_threads

    n, dim = 10_000, 384
    if cache_vectors is not None and len(cache_vectors) >= n:
        vecs, source = np.ascontiguousarray(cache_vectors[:n]), "real MiniLM vectors (cached shared-corpus index)"
    else:
        rng = np.random.default_rng(0)
        vecs = rng.standard_normal((n, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        source = "random unit vectors (no cached dense index)"
    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(dim)
    index.add(vecs)
    t1 = time.perf_counter()
    q = vecs[np.random.default_rng(2).integers(0, n, 1000)]
    t2 = time.perf_counter()
    index.search(q, 5)
    t3 = time.perf_counter()
    with cpu_threads(1):  # as DenseIndex does for small batches
        t4 = time.perf_counter()
        for v in q[:200]:
            index.search(v[None, :], 5)
        t5 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        faiss.write_index(index, f"{d}/f.index")
        disk = os.path.getsize(f"{d}/f.index") / 2**20
    return {
        "passages": n, "vectors": source, "faiss_add_s": round(t1 - t0, 3), "index_mb": round(n * dim * 4 / 2**20, 1),
        "disk_mb": round(disk, 1), "qps_batch1000": round(1000 / (t3 - t2)), "qps_single": round(200 / (t5 - t4)),
        "encode_passages_per_s": encode_rate,
        "encode_s_estimated": round(n / encode_rate) if encode_rate else None,
    }


def _linear(rows: list[dict], key: str, n: int) -> float:
    """Value of ``key`` at ``n`` passages: marginal slope between the two largest sizes (fixed costs
    such as imports and the interpreter cancel out), or proportional scaling from a single size."""
    rows = sorted(rows, key=lambda r: r["passages"])
    top = rows[-1]
    if len(rows) == 1:
        return top[key] * n / top["passages"]
    prev = rows[-2]
    slope = (top[key] - prev[key]) / (top["passages"] - prev["passages"])
    return top[key] + slope * (n - top["passages"])


def extrapolate(bm25_rows: list[dict], dense: dict | None, n_target: int = KILT_PASSAGES) -> dict:
    """Linear per-passage costs (marginal, from the two largest sizes); search cost ∝ corpus size."""
    top = max(bm25_rows, key=lambda r: r["passages"])
    f = n_target / top["passages"]
    out: dict = {
        "target_passages": n_target, "from_sizes": sorted(r["passages"] for r in bm25_rows)[-2:],
        "bm25": {
            "build_hours": round(_linear(bm25_rows, "build_s", n_target) / 3600, 2),
            "disk_index_gb": round(_linear(bm25_rows, "disk_index_mb", n_target) / 1024, 1),
            "disk_with_passages_gb": round(_linear(bm25_rows, "disk_with_passages_mb", n_target) / 1024, 1),
            "peak_rss_build_gb": round(_linear(bm25_rows, "peak_rss_build_mb", n_target) / 1024, 1),
            "index_rss_gb": round(_linear(bm25_rows, "index_rss_mb", n_target) / 1024, 1),
            "qps_batch100": round(top["qps_batch100"] / f, 1),
        },
    }
    b = out["bm25"]
    b["shards_to_build_in_16gb"] = int(np.ceil(b["peak_rss_build_gb"] / 16))
    if dense:
        g = n_target / dense["passages"]
        rate = dense.get("encode_passages_per_s")
        out["dense_flat"] = {
            "vectors_gb_fp32": round(n_target * 384 * 4 / 2**30, 1),
            "encode_days_here": round(n_target / rate / 86400, 1) if rate else None,
            "qps_batch1000": round(dense["qps_batch1000"] / g, 2),
            "ivfpq_m48_gb": round(n_target * 48 / 2**30, 1),
            "shards_of_16gb_flat": int(np.ceil(n_target * 384 * 4 / 2**30 / 16)),
        }
    return out
