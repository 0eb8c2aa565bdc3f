"""Pieces several sub-commands share (not itself a sub-command: the leading underscore hides it)."""

from __future__ import annotations

import argparse


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (0 = any free port; the one bound is printed)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535 (0: any free port), got {port}")
    return port


def int_at_least(lo: int, what: str):
    """argparse type: an integer >= ``lo`` (a negative --limit is refused, not read from the end)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if n < lo:
            raise argparse.ArgumentTypeError(f"must be {what}, got {n}")
        return n

    return parse


def add_retriever_arguments(p, web: bool = True) -> None:
    """``--index DIR | --server URL | --web``, exactly one required."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", help="a saved index folder (r1searcher index build), or a corpus JSONL (BM25 built once and cached)")
    src.add_argument("--server", help="a retrieval server URL (r1searcher serve, or any Search-R1 / R1-Searcher server)")
    if web:
        src.add_argument("--web", action="store_true", help="search the web (provider, key, summariser from R1SEARCHER_* env)")


def open_retriever(args, cfg=None):
    """The retriever the command line names: a saved index, a retrieval server, or the web."""
    if getattr(args, "web", False):
        from r1searcher.retrieval.web.search import WebRetriever

        return WebRetriever() if cfg is None else WebRetriever(cfg.web)  # the web section (env fallbacks applied)
    if getattr(args, "index", None):
        from pathlib import Path

        if Path(args.index).expanduser().is_file():  # a corpus JSONL: BM25, built once and cached (as train does)
            from r1searcher.config import load_config
            from r1searcher.retrieval.index import open_retriever as open_configured

            c = (cfg or load_config(None, [])).derive({"retrieval.index": args.index, "retrieval.server": ""})
            return open_configured(c)
        from r1searcher.retrieval.index import load_index

        return load_index(args.index)
    from r1searcher.retrieval.client import HttpRetriever

    if cfg is None:
        return HttpRetriever(args.server)
    return HttpRetriever(args.server, timeout=cfg.retrieval.timeout_s, retries=cfg.retrieval.retries)
