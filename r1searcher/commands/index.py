"""``r1searcher index build --corpus FILE --kind bm25|dense|hybrid --out DIR`` and ``index verify DIR``.

``--out`` is written beside (``DIR.tmp``) and replaces ``DIR`` only when ``DIR`` is absent, empty
or an index r1searcher wrote; any other folder is refused before the build starts, untouched
(:mod:`r1searcher.util.outdir`).
"""

from __future__ import annotations

import argparse
import time

HELP = "build a retrieval index (bm25, dense or hybrid) over a passage corpus"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_cmd", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="index a passage JSONL and save it with its manifest")
    b.add_argument("--corpus", required=True, metavar="FILE", help="passage JSONL ({id,title,text} or {id,contents})")
    b.add_argument("--kind", choices=("bm25", "dense", "hybrid"), default="bm25")
    b.add_argument("--out", required=True, metavar="DIR",
                   help="index folder: must be new, empty, or an r1searcher index (replaced); anything else is refused")
    b.add_argument("--no-stem", action="store_true", help="bm25: index surface words (no Snowball stemming)")
    b.add_argument("--engine", choices=("auto", "bm25s", "tantivy"), default="auto",
                   help="bm25: bm25s (in memory, fastest on small corpora) or tantivy (sharded, bounded memory, "
                        "pruned top-k); auto picks tantivy when bm25s's build would exceed --max-memory")
    b.add_argument("--max-memory", default="4G", metavar="SIZE",
                   help="bm25 (tantivy): peak resident memory of the build, e.g. 4G, 512M (default 4G)")
    b.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="bm25 (tantivy): passages per shard (default: from --max-memory; 5.4M at 4G)")
    b.add_argument("--model", default=None, help="dense: a local sentence-transformers folder (default: embedded MiniLM)")
    b.add_argument("--index-type", choices=("flat", "ivf", "hnsw", "ivfpq", "hnsw-sq8"), default="flat",
                   help="dense: FAISS index type; ivfpq (PQ codes + fp16 re-rank) and hnsw-sq8 for large corpora")
    _add_dense_knobs(b)
    b.add_argument("--batch-size", type=int, default=64, help="dense: encoder batch size")
    b.add_argument("--rrf-k", type=float, default=10.0, help="hybrid: reciprocal-rank-fusion constant (default 10)")
    b.add_argument("--dense-weight", type=float, default=0.75, help="hybrid: weight of the dense ranking (BM25's is 1)")
    b.add_argument("--cache-dir", default=None, help="dense: keep chunk embeddings here so a killed build resumes")
    v = sub.add_parser("verify", help="re-read an index's files and check them against its manifest's sha256s "
                                      "(tantivy: every file; other kinds: the passage store), then load it")
    v.add_argument("index", metavar="DIR", help="an index folder")


def _add_dense_knobs(b: argparse.ArgumentParser) -> None:
    """FAISS knobs of ``--kind dense``; unset ones take the per-kind defaults of ``DenseIndex.build``."""
    g = b.add_argument_group("dense index knobs (unset: DenseIndex.build's per-kind defaults)")
    g.add_argument("--nlist", type=int, default=None, help="ivf/ivfpq: coarse cells (default ~4*sqrt(n), >= 39 training rows each)")
    g.add_argument("--nprobe", type=int, default=None, help="ivf/ivfpq: cells searched per query")
    g.add_argument("--pq-m", type=int, default=None, help="ivfpq: PQ sub-quantisers, must divide the dimension (default 48)")
    g.add_argument("--pq-bits", type=int, choices=(4, 8), default=None, help="ivfpq: bits per sub-quantiser (4 = FastScan)")
    g.add_argument("--rerank", type=int, default=None, help="ivfpq/hnsw-sq8: re-score rerank*k candidates with stored fp16 vectors (0 = off)")
    g.add_argument("--hnsw-m", type=int, default=None, help="hnsw/hnsw-sq8: links per node (default 32)")
    g.add_argument("--ef-search", type=int, default=None, help="hnsw/hnsw-sq8: search queue length")
    g.add_argument("--train-sample", type=int, default=None, help="ivf/ivfpq/hnsw-sq8: rows the quantisers train on (default 100000)")


def _dense_knobs(args: argparse.Namespace) -> dict:
    """The dense knobs the user set, as ``DenseIndex.build`` keywords."""
    names = {"nlist": "nlist", "nprobe": "nprobe", "pq_m": "pq_m", "pq_bits": "pq_bits", "rerank": "rerank",
             "hnsw_m": "m", "ef_search": "ef_search", "train_sample": "train_sample"}
    return {kw: getattr(args, a) for a, kw in names.items() if getattr(args, a, None) is not None}


#: bm25s's build holds ~5.2 KB per passage (BENCHMARKS "Scale": 5.17 GB at 1M) ≈ 8.5 × the corpus JSONL.
BM25S_PEAK_PER_CORPUS_BYTE = 8.5


def pick_engine(engine: str, corpus: str, max_memory: int) -> str:
    """``auto`` → bm25s when its in-memory build fits ``max_memory`` (estimated from the file size), else tantivy."""
    from pathlib import Path

    if engine != "auto":
        return engine
    size = Path(corpus).stat().st_size * (3 if str(corpus).endswith(".gz") else 1)
    return "bm25s" if size * BM25S_PEAK_PER_CORPUS_BYTE <= max_memory else "tantivy"


def _build_tantivy(args: argparse.Namespace, max_memory: int) -> int:
    from pathlib import Path

    from r1searcher.retrieval.tantivy.build import build_tantivy, max_passage_bytes, stream_corpus

    t0 = time.perf_counter()
    stream = stream_corpus(args.corpus, max_line_bytes=max_passage_bytes(max_memory))
    m = build_tantivy(stream, args.out, stemmer=None if args.no_stem else "english",
                      max_memory=max_memory, shard_size=args.shard_size, source=args.corpus,
                      total_bytes=Path(args.corpus).stat().st_size, show_progress=True)
    dt = time.perf_counter() - t0
    disk = sum(sum(s["files"].values()) for s in m["shards"])
    print(
        f"bm25 (tantivy) index of {m['passages']:,} passages in {len(m['shards'])} shard(s) → {args.out}\n"
        f"  build {dt:.1f} s ({m['passages'] / max(dt, 1e-9):,.0f} passages/s), peak RSS {m['build_peak_rss'] / 2**30:.2f} GiB "
        f"(limit {max_memory / 2**30:.2f} GiB), index {disk / 2**20:,.0f} MiB + passages "
        f"{sum(m['store_files'].values()) / 2**20:,.0f} MiB\n"
        f"  corpus sha256: {m['corpus_sha256']}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from r1searcher.retrieval.index import verify_index

    t0 = time.perf_counter()
    m = verify_index(args.index)
    print(f"{args.index}: intact ({m['kind']} index of {m['passages']:,} passages, every file checked in "
          f"{time.perf_counter() - t0:.1f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    from r1searcher.util.outdir import check_replaceable
    from r1searcher.retrieval.tantivy.build import parse_size
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.retrieval.index import build_index, save_index
    from r1searcher.retrieval.manifest import is_index_dir

    if args.index_cmd == "verify":
        return _verify(args)
    # the target, and the folder beside it that the build writes: both checked before any work
    check_replaceable(args.out, is_index_dir, "an r1searcher index", label="--out")
    check_replaceable(args.out.rstrip("/") + ".tmp", is_index_dir, "an r1searcher index (nor a build of one)")
    max_memory = parse_size(args.max_memory)
    if args.kind == "bm25" and pick_engine(args.engine, args.corpus, max_memory) == "tantivy":
        return _build_tantivy(args, max_memory)
    t0 = time.perf_counter()
    passages = list(read_passages(args.corpus))
    if not passages:
        raise ValueError(f"{args.corpus}: no passages")
    t1 = time.perf_counter()
    opts: dict = {"show_progress": True}
    if args.kind in ("bm25", "hybrid"):
        opts["stemmer"] = None if args.no_stem else "english"
    if args.kind == "dense":
        opts.update(model=args.model, index_type=args.index_type, batch_size=args.batch_size, cache_dir=args.cache_dir,
                    **_dense_knobs(args))
    if args.kind == "hybrid":
        opts.update(model=args.model, index_type=args.index_type, rrf_k=args.rrf_k,
                    weights=(1.0, args.dense_weight), cache_dir=args.cache_dir)
    index = build_index(passages, args.kind, **opts)
    t2 = time.perf_counter()
    m = save_index(index, args.out, label="--out")
    t3 = time.perf_counter()
    print(
        f"{args.kind} index of {m['passages']} passages → {args.out}\n"
        f"  read {t1 - t0:.1f} s, build {t2 - t1:.1f} s ({len(passages) / max(t2 - t1, 1e-9):.0f} passages/s), save {t3 - t2:.1f} s\n"
        f"  corpus sha256: {m['corpus_sha256']}"
        + (f"\n  {m['bytes_per_passage']:.0f} bytes per passage on disk (FAISS index + re-rank vectors)" if "bytes_per_passage" in m else "")
    )
    return 0
