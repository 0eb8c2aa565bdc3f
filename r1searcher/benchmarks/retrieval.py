"""``r1searcher bench retrieval``: quality, speed and scale of the retrieval subsystem, in one run.

Parts (all by default; pick with flags): ``--quality`` answer recall@{1,3,5,10} of BM25, dense
and hybrid on the four eval sets against plain bm25s; ``--speed`` bm25s vs rank_bm25, encode and
build rates, the HTTP server vs in-process; ``--scale`` BM25 at ``--sizes`` passages, dense at 10k,
extrapolated to the 29M-passage KILT corpus. The dense index of the shared corpus is built once
(tens of minutes on 2 cores) and cached under ``--cache`` keyed by the corpus sha256.
Progress goes to stderr; ``--json`` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HELP = "retrieval quality (answer recall@k), speed (bm25s vs rank_bm25, server vs in-process) and scale"


def default_data() -> Path:
    """The data folder with the shared corpus: ``$R1SEARCHER_DATA`` (or ``<cache root>/data``), else
    ``../shared/data`` beside the current folder (the first that has ``corpus/passages.jsonl``)."""
    from r1searcher.paths import data_root

    candidates = [data_root(), Path.cwd().parent / "shared" / "data"]
    return next((d for d in candidates if (d / "corpus" / "passages.jsonl").is_file()), candidates[-1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--data", default=None,
                   help="shared data folder (corpus/, eval/, dev_extra/; default: $R1SEARCHER_DATA, else ../shared/data)")
    p.add_argument("--cache", default=None,
                   help="where built dense indexes are kept (default: indexes/ under the cache root, $R1SEARCHER_CACHE_DIR)")
    p.add_argument("--quality", action="store_true", help="run the quality part")
    p.add_argument("--speed", action="store_true", help="run the speed part")
    p.add_argument("--scale", action="store_true", help="run the scale part")
    p.add_argument("--sizes", default="10000,100000,1000000", help="BM25 corpus sizes for --scale (comma-separated)")
    p.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients for the server measurement")
    p.add_argument("--no-dense", action="store_true", help="skip everything that needs the dense index")
    p.add_argument("--serve-args", default="", help="extra 'r1searcher serve' flags for the server measurement, e.g. '--batch-wait-ms 2'")
    p.add_argument("--server-rounds", type=int, default=3,
                   help="in-process / server passes alternated this many times; the median round is reported")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _questions(data: Path) -> list[str]:
    from r1searcher.benchmarks._retrieval_quality import EVAL_SETS, load_questions

    qs: list[str] = []
    for n in EVAL_SETS:
        f = data / "eval" / f"{n}.jsonl"
        if f.is_file():
            qs.extend(load_questions(f)[0])
    return qs


def run_speed(data: Path, cache: Path, clients: int, with_dense: bool, serve_args: tuple[str, ...] = (),
              rounds: int = 3) -> dict:
    from r1searcher.benchmarks._retrieval_speed import bm25_vs_rank_bm25, dense_speed, server_speed
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages

    passages = list(read_passages(data / "corpus" / "passages.jsonl"))
    questions = _questions(data)
    out = {"bm25_vs_rank_bm25": bm25_vs_rank_bm25(passages, questions, log=_log)}
    dense = _cached_dense(passages, cache, build=False) if with_dense else None
    if with_dense:
        out["dense"] = dense_speed(passages, questions, dense, log=_log)
    out["server"] = server_speed(BM25Index.build(passages), questions, clients, serve_args=serve_args, rounds=rounds, log=_log)
    if dense is not None:  # encoder-bound: where micro-batching pays
        out["server_dense"] = server_speed(dense, questions[:640], clients, index_dir=str(dense._table.directory),
                                           serve_args=serve_args, rounds=rounds, log=_log)
    return out


def _cached_dense(passages, cache: Path, build: bool):
    """The cached dense index of ``passages`` (built when ``build``), else None when absent."""
    from r1searcher.retrieval.index import cache_key, cached_index
    from r1searcher.retrieval.corpus import corpus_sha256

    sha, _ = corpus_sha256(passages)
    if not build and not (cache / cache_key(sha, "dense", {}) / "manifest.json").is_file():
        _log(f"note: no cached dense index under {cache}; dense speed uses no FAISS numbers (run --quality first)")
        return None
    return cached_index(passages, "dense", cache, show_progress=True)[0]


def run_scale(data: Path, cache: Path, sizes: list[int], with_dense: bool, encode_rate: float | None) -> dict:
    from r1searcher.benchmarks._retrieval_scale import bm25_at, dense_at_10k, extrapolate

    rows = [bm25_at(n, log=_log) for n in sizes]
    dense = None
    if with_dense:
        vecs, passages = None, None
        corpus = data / "corpus" / "passages.jsonl"
        if corpus.is_file():
            from r1searcher.retrieval.corpus import read_passages

            passages = list(read_passages(corpus))
            d = _cached_dense(passages, cache, build=False)
            if d is not None:
                vecs = d._faiss.reconstruct_n(0, min(len(d), 10_000))
        if encode_rate is None:  # measure on real passages when there are some: synthetic words split into many word pieces
            from r1searcher.benchmarks._retrieval_scale import synthetic_passages
            from r1searcher.benchmarks._retrieval_speed import dense_speed

            sample = passages or synthetic_passages(256)[0]
            encode_rate = dense_speed(sample, [p.title for p in sample[:256]], None, 256, log=_log)["encode_passages_per_s"]
        dense = dense_at_10k(vecs, encode_rate)
    return {"bm25": rows, "dense_10k": dense, "extrapolation": extrapolate(rows, dense)}


def run(args: argparse.Namespace) -> int:
    from r1searcher.benchmarks import machine_info
    from r1searcher.paths import cache_path

    data = Path(args.data) if args.data else default_data()
    cache = Path(args.cache) if args.cache else cache_path("indexes")
    parts = [p for p in ("quality", "speed", "scale") if getattr(args, p)] or ["quality", "speed", "scale"]
    if ("quality" in parts or "speed" in parts) and not (data / "corpus" / "passages.jsonl").is_file():
        raise FileNotFoundError(f"no corpus at {data}/corpus/passages.jsonl (pass --data)")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result: dict = {"bench": "retrieval", "machine": machine_info(), "parts": parts, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}  # other jobs share these cores
    t0 = time.perf_counter()
    if "quality" in parts:
        from r1searcher.benchmarks._retrieval_quality import run_quality

        result["quality"] = run_quality(data, cache, with_dense=not args.no_dense, log=_log)
    if "speed" in parts:
        result["speed"] = run_speed(data, cache, args.clients, not args.no_dense, tuple(args.serve_args.split()),
                                    args.server_rounds)
    if "scale" in parts:
        rate = result.get("speed", {}).get("dense", {}).get("encode_passages_per_s")
        result["scale"] = run_scale(data, cache, sizes, not args.no_dense, rate)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(result))
    else:
        print(render(result))
    return 0


def render(r: dict) -> str:
    """Human-readable tables of a result object (markdown)."""
    lines = [f"machine: {r['machine']}"]
    q = r.get("quality")
    if q:
        lines += ["", "answer recall@k (title+text, yes/no skipped)", "", "| retriever | set | @1 | @3 | @5 | @10 |", "|---|---|---|---|---|---|"]
        for name, per in q["recall"].items():
            for s, rec in per.items():
                lines.append(f"| {name} | {s} | " + " | ".join(f"{rec[k]:.3f}" for k in sorted(rec, key=int)) + " |")
        if "hybrid_params" in q:
            lines.append(f"\nhybrid params (chosen on dev_extra): {q['hybrid_params']}")
    s = r.get("speed")
    if s:
        lines += ["", "speed:"] + [f"  {part}: {json.dumps(v)}" for part, v in s.items()]
    sc = r.get("scale")
    if sc:
        lines += ["", "scale (BM25):"] + [f"  {json.dumps(row)}" for row in sc["bm25"]]
        lines += [f"  dense 10k: {json.dumps(sc['dense_10k'])}", f"  extrapolation: {json.dumps(sc['extrapolation'])}"]
    return "\n".join(lines)
