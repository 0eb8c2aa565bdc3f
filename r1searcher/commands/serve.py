"""``r1searcher serve (--index DIR|FILE | --web) [--host 127.0.0.1] [--port 8000]``: the HTTP retrieval service.

The limits (``--max-*``, ``--slice-results``, the timeouts) keep one request from stalling the
others; their defaults are :class:`~r1searcher.retrieval.server.ServerLimits`'s, shown in ``--help``.

``--web`` serves live web search (:class:`~r1searcher.retrieval.web.search.WebRetriever`, configured from the
``R1SEARCHER_WEB_*`` / ``R1SEARCHER_SUMMARY_*`` environment) behind the same API, so rollouts need no change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r1searcher.commands._common import port_number
from r1searcher.settings.serve import ServerLimits as ServerLimitsDefaults  # the config tree's serve section: no asyncio/FastAPI import

HELP = "serve an index (or web search, --web) over HTTP (Search-R1 /retrieve and R1-Searcher /queries, micro-batched)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ServerLimitsDefaults
    p.add_argument("--index", metavar="DIR|FILE", help="an index folder, or a corpus JSONL (BM25 built once and cached)")
    p.add_argument("--web", action="store_true", help="serve web search instead (provider, key, summariser from R1SEARCHER_* env)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8000,
                   help="0..65535 (default 8000; 0: any free port); the address actually bound is printed")
    g = p.add_argument_group("limits (a request over one gets a 4xx JSON error naming the flag that raises it)")
    g.add_argument("--max-queries", type=int, default=d.max_queries, help=f"queries per request (default {d.max_queries})")
    g.add_argument("--max-query-chars", type=int, default=d.max_query_chars, help=f"characters per query (default {d.max_query_chars})")
    g.add_argument("--max-query-words", type=int, default=d.max_query_words, help=f"words per query (default {d.max_query_words})")
    g.add_argument("--max-k", type=int, default=d.max_k, help=f"largest k / topk (default {d.max_k})")
    g.add_argument("--max-results", type=int, default=d.max_results,
                   help=f"queries × k per request (default {d.max_results})")
    g.add_argument("--default-k", type=int, default=d.default_k, help=f"k when a request gives none (default {d.default_k})")
    g.add_argument("--slice-results", type=int, default=d.slice_results,
                   help=f"a request is searched in slices of about this many results (queries × k), interleaved with "
                        f"other requests so that none waits behind a big one (default {d.slice_results})")
    g.add_argument("--request-timeout", type=float, default=d.request_timeout_s, metavar="S",
                   help=f"a request not answered within S seconds, queueing included, gets a 503 with Retry-After and "
                        f"the rest of it is not searched (default {d.request_timeout_s:g}; 0: no limit)")
    g.add_argument("--header-timeout", type=float, default=d.header_timeout_s, metavar="S",
                   help=f"a connection whose request headers are not complete within S seconds is closed (default {d.header_timeout_s:g})")
    g.add_argument("--body-timeout", type=float, default=d.body_timeout_s, metavar="S",
                   help=f"a request body not complete within S seconds gets a 408 and the connection is closed (default {d.body_timeout_s:g})")
    g.add_argument("--keep-alive", type=float, default=d.keep_alive_s, metavar="S",
                   help=f"idle keep-alive connections are closed after S seconds (default {d.keep_alive_s:g})")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms,
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


def limits_from_args(args: argparse.Namespace):
    """The server's :class:`~r1searcher.retrieval.server.ServerLimits` from the flags."""
    return ServerLimitsDefaults(
        max_queries=args.max_queries, max_query_chars=args.max_query_chars, max_query_words=args.max_query_words,
        max_k=args.max_k, max_results=args.max_results, default_k=args.default_k, batch_wait_ms=args.batch_wait_ms,
        max_batch_queries=max(args.max_queries, 1), slice_results=args.slice_results,
        request_timeout_s=args.request_timeout, header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout, keep_alive_s=args.keep_alive,
    )


def _announce(what: str):
    def announce(url: str) -> None:
        print(f"serving {what} on {url} (POST /retrieve, POST /queries, GET /health)", flush=True)

    return announce


def run(args: argparse.Namespace) -> int:
    from r1searcher.retrieval.index import load_index
    from r1searcher.retrieval.manifest import read_manifest
    from r1searcher.retrieval.server import serve

    if (args.index is None) == (not args.web):
        raise ValueError("give either --index DIR or --web")
    limits = limits_from_args(args)
    if args.web:
        from r1searcher.retrieval.web.search import WebRetriever

        with WebRetriever() as web:
            info = web.describe()  # credentials and keys redacted
            serve(web, args.host, args.port, limits, info, args.log_level,
                  _announce(f"web search ({info['provider']} at {info['endpoint']})"))
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
    serve(index, args.host, args.port, limits, info, args.log_level,
          _announce(f"{m['kind']} index of {m['passages']} passages"))
    return 0
