"""Dense retrieval at scale: flat vs ivfpq vs hnsw-sq8 on the shared corpus's MiniLM vectors.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/dense_scale.py

Vectors: the cached flat index of the shared corpus (all 46,750, via ``reconstruct_n``) when it
exists, else the complete chunk files its encoding has written so far (the first N passages; the
count is printed), or ``--synthetic N`` clustered unit vectors (queries from the same clusters).
Queries: the questions of ``/work/shared/data/eval/*.jsonl`` encoded with the same MiniLM.

Per kind it prints build seconds (training on the sample included), bytes per passage on disk,
RSS added by ``DenseIndex.load`` (normal and ``mmap=True``, each in a fresh subprocess, before and
after the queries), recall@10 against flat, and queries/s on precomputed query vectors at batch
1 and 32 with one thread; flat is measured in the same run as the baseline.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r1searcher.retrieval.base import Passage  # noqa: E402
from r1searcher.retrieval.dense import DenseIndex  # noqa: E402
from r1searcher.retrieval.dense_vectors import VectorChunks  # noqa: E402

CORPUS = "/work/shared/data/corpus/passages.jsonl"
EVAL = "/work/shared/data/eval/*.jsonl"
CACHE = ROOT / ".cache/retrieval"
PREFIX = "dense-695c7730dedcce6a-"
KINDS = {
    "flat": {"index_type": "flat"},
    "ivfpq": {"index_type": "ivfpq"},
    "ivfpq (no re-rank)": {"index_type": "ivfpq", "rerank": 0},
    "hnsw-sq8": {"index_type": "hnsw-sq8"},
}


def rss_mb() -> float:
    """Resident anonymous + file-backed memory of this process (MB): mapped index pages count once touched."""
    f = {}
    for line in open("/proc/self/status"):
        if line.startswith(("RssAnon", "RssFile")):
            f[line.split(":")[0]] = int(line.split()[1])
    return (f["RssAnon"] + f["RssFile"]) / 1024


def shared_vectors() -> tuple[VectorChunks, str]:
    """The shared corpus's MiniLM vectors: from the finished flat index, else the chunk files so far."""
    for d in sorted(glob.glob(str(CACHE / f"{PREFIX}*"))):
        if d.endswith((".emb", ".tmp")) or not (Path(d) / "manifest.json").is_file():
            continue
        import faiss

        index = faiss.read_index(str(Path(d) / "faiss.index"))
        return VectorChunks.from_array(index.reconstruct_n(0, index.ntotal)), f"flat index {d} (all {index.ntotal})"
    emb = sorted(glob.glob(str(CACHE / f"{PREFIX}*.emb")))
    if not emb:
        raise SystemExit(f"no vectors of the shared corpus under {CACHE} (neither the flat index nor chunk files)")
    chunks = VectorChunks.from_dir(emb[0])
    return chunks, f"{chunks.n} vectors from the chunk files in {emb[0]} (encoding still running)"


def clustered(n: int, seed: int, dim: int = 384, centers: int = 1000) -> np.ndarray:
    """Unit vectors around ``centers`` random directions (the tests' synthetic stand-in for embeddings)."""
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(12345).standard_normal((centers, dim)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def read_passages_head(n: int) -> list[Passage]:
    from r1searcher.retrieval.corpus import read_passages

    out = []
    for p in read_passages(CORPUS):
        out.append(p)
        if len(out) == n:
            break
    return out


def query_vectors(out: Path) -> np.ndarray:
    """The eval questions encoded by MiniLM (cached in ``out`` between runs)."""
    qs = [json.loads(line)["question"] for f in sorted(glob.glob(EVAL)) for line in open(f, encoding="utf-8") if line.strip()]
    path = out / f"queries_{len(qs)}.npy"
    if path.is_file():
        return np.load(path)
    from r1searcher.retrieval.dense import encode

    t = time.perf_counter()
    v = encode(qs, None, batch_size=128)
    print(f"encoded {len(qs)} eval questions in {time.perf_counter() - t:.1f} s", flush=True)
    np.save(path, v)
    return v


def child(directory: str, mmap: bool, qpath: str, rows_out: str, single: int) -> None:
    """Load one saved index in this fresh process; print RSS, q/s; write its top-10 rows."""
    from r1searcher.retrieval.dense import cpu_threads

    import faiss  # noqa: F401  (imports first: the RSS delta is the index, not the libraries)
    import torch  # noqa: F401

    q = np.load(qpath)
    DenseIndex.load(directory, mmap=True).search_vectors(q[:1], 10)  # warm the lazy imports, then drop it
    before = rss_mb()
    idx = DenseIndex.load(directory, mmap=mmap)
    loaded = rss_mb()
    with cpu_threads(1):
        t = time.perf_counter()
        for i in range(min(single, len(q))):
            idx.search_vectors(q[i : i + 1], 10)
        qps1 = min(single, len(q)) / (time.perf_counter() - t)
        t = time.perf_counter()
        rows = [idx.search_vectors(q[i : i + 32], 10)[1] for i in range(0, len(q), 32)]
        qps32 = len(q) / (time.perf_counter() - t)
    np.save(rows_out, np.concatenate(rows))
    print(json.dumps({"rss_load_mb": loaded - before, "rss_queries_mb": rss_mb() - before, "qps1": qps1, "qps32": qps32}))


def measure(directory: Path, mmap: bool, qpath: Path, single: int) -> tuple[dict, np.ndarray]:
    rows_out = directory / f"rows_{int(mmap)}.npy"
    cmd = [sys.executable, __file__, "--child", str(directory), "--qpath", str(qpath), "--rows-out", str(rows_out), "--single", str(single)]
    res = subprocess.run(cmd + (["--mmap"] if mmap else []), capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"child failed for {directory} mmap={mmap}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1]), np.load(rows_out)


def marginal_bytes(passages: list[Passage], chunks: VectorChunks, name: str, m: dict, out: Path) -> float:
    """Bytes per *added* passage: (size at n − size at n/2) / (n/2), i.e. without fixed costs
    (codebooks, centroids, headers), which dominate at small n: the slope to extrapolate with."""
    half = chunks.n // 2
    sub = VectorChunks.from_array(chunks.take(np.arange(half)))
    same = {k: m["params"][k] for k in ("nlist",) if k in m["params"]}  # same cells: only the per-row bytes differ
    mh = DenseIndex.build(passages[:half], vectors=sub, **KINDS[name], **same).save(out / "half")
    return (sum(m["index_bytes"].values()) - sum(mh["index_bytes"].values())) / (chunks.n - half)


def recall(rows: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(rows, exact)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/dense_scale", help="scratch folder for the saved indexes")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated rows of the table (flat always runs)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N", help="N clustered synthetic vectors instead of the corpus's")
    ap.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--qpath", help=argparse.SUPPRESS)
    ap.add_argument("--rows-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.mmap, a.qpath, a.rows_out, a.single)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.synthetic:
        chunks, source = VectorChunks.from_array(clustered(a.synthetic, 0)), f"{a.synthetic} synthetic clustered vectors"
        queries = clustered(1625, 1)
        passages = [Passage(id=f"s{i}", title="", text=f"synthetic {i}") for i in range(a.synthetic)]
    else:
        chunks, source = shared_vectors()
        queries = query_vectors(out)
        passages = read_passages_head(chunks.n)
    qpath = out / "queries.npy"
    np.save(qpath, queries)
    print(f"vectors: {source}; {len(queries)} queries; threads {os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)

    kinds = ["flat"] + [k for k in a.kinds.split(",") if k != "flat"]
    results, exact = {}, None
    for name in kinds:
        t = time.perf_counter()
        idx = DenseIndex.build(passages, vectors=chunks, **KINDS[name])
        build_s = time.perf_counter() - t
        d = out / name.replace(" ", "_").replace("(", "").replace(")", "")
        m = idx.save(d)
        r = {"build_s": build_s, **{f"{k}_s": v for k, v in idx.build_seconds.items()}, "bytes_per_passage": m["bytes_per_passage"],
             "index_bytes": m["index_bytes"], "params": m["params"], "marginal_bytes": marginal_bytes(passages, chunks, name, m, out)}
        del idx
        for mmap in (False, True):
            stats, rows = measure(d, mmap, qpath, a.single)
            if exact is None:
                exact = rows
            r["mmap" if mmap else "ram"] = {**stats, "recall10": recall(rows, exact)}
        results[name] = r
        print(f"{name}: build {build_s:.1f} s, {r['bytes_per_passage']:.0f} B/passage, "
              f"recall@10 {r['ram']['recall10']:.3f}, q/s {r['ram']['qps1']:.0f} / {r['ram']['qps32']:.0f}, "
              f"RSS {r['ram']['rss_load_mb']:.1f} MB (mmap {r['mmap']['rss_load_mb']:.1f} → {r['mmap']['rss_queries_mb']:.1f})", flush=True)
    print_table(results, chunks.n)
    if a.json:
        print(json.dumps({"source": source, "n": chunks.n, "queries": len(queries), "results": results}, indent=1))


def print_table(results: dict, n: int) -> None:
    base = results["flat"]["ram"]
    print("\n| kind | build s (train + add) | B/passage on disk (marginal) | RSS after load, MB (B/passage) "
          "| mmap: RSS after load → after queries, MB | recall@10 vs flat (mmap) | q/s batch 1 | q/s batch 32 "
          "| × flat (1 / 32) | 29M: disk (marginal × 29M) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ram, mm = r["ram"], r["mmap"]
        print(
            f"| {name} | {r['build_s']:.1f} ({r['train_s']:.1f} + {r['add_s']:.1f}) | {r['bytes_per_passage']:.0f} ({r['marginal_bytes']:.0f}) "
            f"| {ram['rss_load_mb']:.1f} ({ram['rss_load_mb'] * 2**20 / n:.0f}) | {mm['rss_load_mb']:.1f} → {mm['rss_queries_mb']:.1f} "
            f"| {ram['recall10']:.3f} ({mm['recall10']:.3f}) | {ram['qps1']:.0f} | {ram['qps32']:.0f} "
            f"| {ram['qps1'] / base['qps1']:.2f} / {ram['qps32'] / base['qps32']:.2f} | {r['marginal_bytes'] * 29e6 / 1e9:.1f} GB |"
        )


if __name__ == "__main__":
    main()
