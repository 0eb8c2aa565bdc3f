"""``r1searcher serve (--index DIR|FILE | --web) [--host 127.0.0.1] [--port 8000]``: the HTTP retrieval service.

``--web`` serves live web search (:class:`~r1searcher.retrieval.web.WebRetriever`, configured from the
``R1SEARCHER_WEB_*`` / ``R1SEARCHER_SUMMARY_*`` environment) behind the same API, so rollouts need no change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "serve an index (or web search, --web) over HTTP (Search-R1 /retrieve and R1-Searcher /queries, micro-batched)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR|FILE", help="an index folder, or a corpus JSONL (BM25 built once and cached)")
    p.add_argument("--web", action="store_true", help="serve web search instead (provider, key, summariser from R1SEARCHER_* env)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-queries", type=int, default=1024, help="queries per request")
    p.add_argument("--max-query-chars", type=int, default=4096)
    p.add_argument("--max-k", type=int, default=100)
    p.add_argument("--default-k", type=int, default=3, help="k when a request gives none")
    p.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="micro-batching window (default 0: batch what is queued; batches form while the index is busy)")
    p.add_argument("--log-level", default="warning")


def index_size(directory: str | Path, manifest: dict) -> dict:
    """What ``/health`` says about the index's size: what the manifest states (passages, shards,
    bytes_per_passage, build_peak_rss where present) and the bytes its folder holds on disk."""
    size: dict = {"passages": manifest.get("passages")}
    shards = manifest.get("shards")
    if shards is not None:
        size["shards"] = len(shards) if isinstance(shards, (list, dict)) else shards
    for key in ("bytes_per_passage", "build_peak_rss", "dim"):
        if manifest.get(key) is not None:
            size[key] = manifest[key]
    disk = 0
    for f in Path(directory).expanduser().rglob("*"):
        try:
            if f.is_file():
                disk += f.stat().st_size
        except OSError:  # a file removed while we walk
            pass
    size["bytes_on_disk"] = disk
    if size["passages"]:
        size["disk_bytes_per_passage"] = round(disk / size["passages"], 1)
    return size


def run(args: argparse.Namespace) -> int:
    from r1searcher.retrieval.index import load_index
    from r1searcher.retrieval.manifest import read_manifest
    from r1searcher.retrieval.server import ServerLimits, serve

    if (args.index is None) == (not args.web):
        raise ValueError("give either --index DIR or --web")
    limits = ServerLimits(
        max_queries=args.max_queries, max_query_chars=args.max_query_chars, max_k=args.max_k,
        default_k=args.default_k, batch_wait_ms=args.batch_wait_ms, max_batch_queries=max(args.max_queries, 1),
    )
    if args.web:
        from r1searcher.retrieval.web import WebRetriever

        with WebRetriever() as web:
            info = web.describe()
            print(f"serving web search ({info['provider']} at {info['endpoint']}) on http://{args.host}:{args.port} "
                  f"(POST /retrieve, POST /queries, GET /health)", flush=True)
            serve(web, args.host, args.port, limits, info, args.log_level)
        return 0
    if Path(args.index).expanduser().is_file():  # a corpus JSONL, as ask/eval/train take it
        from r1searcher.commands._common import open_retriever

        index = open_retriever(args)
        m = {"kind": "bm25", "passages": len(index)}
        info = {"kind": "bm25", "corpus": str(Path(args.index).expanduser().resolve()), "index": {"passages": len(index)}}
    else:
        index = load_index(args.index)
        m = read_manifest(args.index)
        info = {"kind": m["kind"], "corpus_sha256": m["corpus_sha256"], "model": m.get("model"), "params": m.get("params"),
                "index": index_size(args.index, m)}
    print(f"serving {m['kind']} index of {m['passages']} passages on http://{args.host}:{args.port} "
          f"(POST /retrieve, POST /queries, GET /health)", flush=True)
    serve(index, args.host, args.port, limits, info, args.log_level)
    return 0
