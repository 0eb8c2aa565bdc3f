"""``r1searcher serve --index DIR [--host 127.0.0.1] [--port 8000]``: the HTTP retrieval service."""

from __future__ import annotations

import argparse

HELP = "serve an index over HTTP (Search-R1 /retrieve and R1-Searcher /queries, micro-batched)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-queries", type=int, default=1024, help="queries per request")
    p.add_argument("--max-query-chars", type=int, default=4096)
    p.add_argument("--max-k", type=int, default=100)
    p.add_argument("--default-k", type=int, default=3, help="k when a request gives none")
    p.add_argument("--batch-wait-ms", type=float, default=2.0, help="micro-batching window")
    p.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace) -> int:
    from r1searcher.retrieval.index import load_index
    from r1searcher.retrieval.manifest import read_manifest
    from r1searcher.retrieval.server import ServerLimits, serve

    index = load_index(args.index)
    m = read_manifest(args.index)
    limits = ServerLimits(
        max_queries=args.max_queries, max_query_chars=args.max_query_chars, max_k=args.max_k,
        default_k=args.default_k, batch_wait_ms=args.batch_wait_ms, max_batch_queries=max(args.max_queries, 1),
    )
    info = {"kind": m["kind"], "corpus_sha256": m["corpus_sha256"], "model": m.get("model"), "params": m.get("params")}
    print(f"serving {m['kind']} index of {m['passages']} passages on http://{args.host}:{args.port} "
          f"(POST /retrieve, POST /queries, GET /health)", flush=True)
    serve(index, args.host, args.port, limits, info, args.log_level)
    return 0
