"""``r1searcher search (--index DIR|FILE | --web) (QUERY | --queries FILE) [-k N] [--json]``.

``--web`` searches the live web through :class:`~r1searcher.retrieval.web.search.WebRetriever`, configured
from the environment (``R1SEARCHER_WEB_PROVIDER``, ``R1SEARCHER_WEB_BASE_URL``, ``R1SEARCHER_WEB_API_KEY``,
``R1SEARCHER_SUMMARY_*``; see that module); passage ids are page URLs.
"""

from __future__ import annotations

import argparse
import json
import sys

from r1searcher.util.files import Damaged, iter_jsonl

HELP = "search a saved index (or the web, --web) with one query or a JSONL file of questions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR|FILE", help="an index folder (any kind), or a corpus JSONL (BM25 built once and cached)")
    p.add_argument("--web", action="store_true", help="search the web instead (provider, key, summariser from R1SEARCHER_* env)")
    p.add_argument("query", nargs="?", help="one query (or use --queries)")
    p.add_argument("--queries", metavar="FILE", help="JSONL with a 'question' or 'query' field per line")
    p.add_argument("-k", type=int, default=None, help="passages per query (default 5; 3 with --web, the paper's)")
    p.add_argument("--json", action="store_true", help="one JSON line per query: {query, passages:[{id,title,text,score}]}")
    p.add_argument("--batch", type=int, default=256, help="queries per index call")


def read_queries(path: str) -> list[str]:
    """Questions from a JSONL file (``question`` or ``query``); bad lines are errors naming the line."""
    out = []
    for lineno, obj in iter_jsonl(path, objects=False):
        if isinstance(obj, Damaged):
            raise ValueError(str(obj))
        q = obj.get("question", obj.get("query")) if isinstance(obj, dict) else None
        if not isinstance(q, str):
            raise ValueError(f"{path}:{lineno}: no string 'question' or 'query' field")
        out.append(q)
    return out


def run(args: argparse.Namespace) -> int:
    if (args.query is None) == (args.queries is None):
        raise ValueError("give either one QUERY or --queries FILE")
    if (args.index is None) == (not args.web):
        raise ValueError("give either --index DIR or --web")
    if args.k is None:
        args.k = 3 if args.web else 5
    if args.k < 1:
        raise ValueError("-k must be >= 1")
    queries = [args.query] if args.query is not None else read_queries(args.queries)
    if args.web:
        from r1searcher.retrieval.web.search import WebRetriever

        with WebRetriever() as web:
            return _print(web, queries, args)
    from r1searcher.commands._common import open_retriever

    return _print(open_retriever(args), queries, args)


def _print(index, queries: list[str], args: argparse.Namespace) -> int:
    out = sys.stdout
    for start in range(0, len(queries), args.batch):
        chunk = queries[start : start + args.batch]
        for q, passages in zip(chunk, index.search(chunk, args.k)):
            if args.json:
                rec = {"query": q, "passages": [{"id": p.id, "title": p.title, "text": p.text, "score": p.score} for p in passages]}
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            else:
                out.write(f"# {q}\n")
                if not passages:
                    out.write("  (no passage matches)\n")
                for i, p in enumerate(passages, 1):
                    out.write(f"  ({i}) [{p.score:.3f}] {p.title}: {p.text}\n")
    return 0
