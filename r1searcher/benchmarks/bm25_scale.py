"""BM25 at 1M–10M+ passages on one machine: the sharded tantivy engine against bm25s, in one run.

``r1searcher bench bm25_scale --sizes 1000000,3000000,10000000 --work DIR [--bm25s-at 1000000]``

For each size, the first N passages of one Wikipedia-like corpus (``_wiki_like``: unigrams of the
shared corpus + an open-ended rare-word stream; generated once under ``--work``, or ``--corpus``)
are indexed in a fresh subprocess (``index build --engine tantivy --max-memory``: build seconds,
passages/s, peak RSS = the child's own VmHWM, disk), then served from another fresh
subprocess: load time, resident memory after load and after the queries, and queries/s at batch 1
and batch 32 for the real questions of the four evaluation sets, the same ones at both batch sizes
(after a warm-up of 256 of them). The
baseline in the same run is bm25s (today's engine) at ``--bm25s-at`` passages: its build time and
peak RSS, its q/s on the same questions, and how often the two engines agree on the top-5
(tantivy proposes, exact BM25 re-scores: agreement shows the pruning loses nothing). The 29M
(KILT) extrapolation fits time and disk linearly and q/s as a power law of the corpus size.

Index folders under ``--work`` (``tantivy-N``, ``bm25s-N``) are removed or replaced only when they
are indexes of ours (:mod:`r1searcher.util.outdir`): a folder of the user's by that name stops the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from r1searcher.util.files import read_jsonl

HELP = "BM25 at Wikipedia scale: sharded tantivy vs bm25s (build memory/time, disk, served RSS, q/s at batch 1/32)"
KILT = 29_000_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="1000000,3000000,10000000", help="comma-separated corpus sizes")
    p.add_argument("--work", default=None, help="corpora and indexes go here (default: <cache root>/bm25_scale)")
    p.add_argument("--corpus", default=None, help="a passage JSONL with at least max(sizes) lines (default: generate)")
    p.add_argument("--data", default=None, help="shared data folder (questions; unigram source); default ../shared/data")
    p.add_argument("--max-memory", default="4G", help="the build's memory flag (default 4G)")
    p.add_argument("--bm25s-at", type=int, default=1_000_000, help="size for the bm25s baseline (0: skip)")
    p.add_argument("--threads", type=int, default=2, help="search threads when serving")
    p.add_argument("--keep", action="store_true", help="keep the indexes (default: delete after measuring)")
    p.add_argument("--json", default=None, help="write the results here")


def _remove_index(path: Path) -> None:
    """Remove an index folder this benchmark wrote; refuse (one line) a folder that is not an index."""
    from r1searcher.util.outdir import remove_ours
    from r1searcher.retrieval.manifest import is_index_dir

    remove_ours(path, is_index_dir, "an r1searcher index", label="--work:")


def _log(msg: str) -> None:
    print(f"[bm25_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _questions(data: Path | None) -> list[str]:
    qs: list[str] = []
    if data is not None:
        for name in ("hotpotqa", "2wiki", "musique", "bamboogle"):
            f = data / "eval" / f"{name}.jsonl"
            if f.is_file():
                qs += [r["question"] for r in read_jsonl(f, on_bad="raise").values()]
    return qs


def _child(code: str) -> tuple[dict, float]:
    """Run ``code`` in a fresh interpreter; (its last JSON line, wall seconds). Peak RSS is the
    child's own VmHWM, printed by it: ``ru_maxrss`` of children would carry the parent's RSS from
    before exec (and the largest earlier child's)."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"child failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1]), wall


BUILD = """
import itertools, json
from r1searcher.retrieval.tantivy.build import build_tantivy, stream_corpus, peak_rss
m = build_tantivy(itertools.islice(stream_corpus({corpus!r}), {n}), {out!r}, max_memory={mem!r})
disk = sum(sum(s['files'].values()) for s in m['shards'])
print(json.dumps({{'passages': m['passages'], 'shards': len(m['shards']), 'seconds': m['build_seconds'],
  'index_bytes': disk, 'store_bytes': sum(m['store_files'].values()), 'peak_rss': peak_rss(),
  'writer_heap': m['writer_heap']}}))
"""

SERVE = """
import json, time
from r1searcher.retrieval.index import load_index
from r1searcher.retrieval.tantivy.build import peak_rss
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS:'): return int(l.split()[1]) * 1024
qs = json.load(open({qfile!r}))
t = time.perf_counter(); ix = load_index({out!r}, **({opts!r})); load_s = time.perf_counter() - t
rss_load = rss()
for s in range(0, min(len(qs), 256), 32): ix.search_rows(qs[s:s + 32], 5)   # warm-up
t = time.perf_counter()
for q in qs: ix.search_rows([q], 5)
b1 = len(qs) / (time.perf_counter() - t)
t = time.perf_counter(); top = []
for s in range(0, len(qs), 32): top += ix.search_rows(qs[s:s + 32], 5)
b32 = len(qs) / (time.perf_counter() - t)
json.dump([[r for r, _ in h] for h in top], open({top_out!r}, 'w'))
print(json.dumps({{'load_seconds': round(load_s, 2), 'rss_after_load': rss_load, 'rss_after_queries': rss(),
  'peak_rss': peak_rss(), 'qps_batch1': round(b1, 1), 'qps_batch32': round(b32, 1), 'queries': len(qs)}}))
"""

BM25S_BUILD = """
import itertools, json, time
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.retrieval.tantivy.build import stream_corpus, peak_rss
t = time.perf_counter()
ix = BM25Index.build([p for p, _ in itertools.islice(stream_corpus({corpus!r}), {n})])
build_s = time.perf_counter() - t
ix.save({out!r})
print(json.dumps({{'seconds': round(build_s, 1), 'peak_rss': peak_rss()}}))
"""


def _ensure_corpus(args, n: int, data: Path | None) -> Path:
    if args.corpus:
        return Path(args.corpus)
    from r1searcher.paths import cache_path

    work = Path(args.work) if args.work else cache_path("bm25_scale")
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"wiki-like-{n}.jsonl"
    if not path.is_file():
        from r1searcher.benchmarks._wiki_like import write_corpus

        source = data / "corpus" / "passages.jsonl" if data is not None else None
        _log(f"generating {n:,} Wikipedia-like passages → {path}")
        info = write_corpus(path, n, source)
        (work / f"wiki-like-{n}.json").write_text(json.dumps(info))
    return path


def _agreement(a_file: Path, b_file: Path) -> float:
    a, b = json.loads(a_file.read_text()), json.loads(b_file.read_text())
    return round(sum(x == y for x, y in zip(a, b)) / max(len(a), 1), 4)


def _power_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(a, b) of y = a · n^b by least squares in log-log."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return math.exp(my - b * mx), b


def extrapolate(rows: list[dict], n: int = KILT) -> dict:
    """Linear (marginal slope between the two largest sizes) time/disk; power-law q/s; RSS as measured."""
    rows = sorted(rows, key=lambda r: r["passages"])
    big = rows[-1]
    out = {"passages": n}
    if len(rows) >= 2:
        a = rows[-2]
        dn = big["passages"] - a["passages"]
        for key in ("seconds", "index_bytes", "store_bytes"):
            slope = (big["build"][key] - a["build"][key]) / dn
            out[key] = big["build"][key] + slope * (n - big["passages"])
        for key in ("qps_batch1", "qps_batch32"):
            c, e = _power_fit([(r["passages"], r["serve"][key]) for r in rows])
            out[key] = round(c * n ** e, 1)
            out[key + "_exponent"] = round(e, 3)
        r_slope = (big["serve"]["rss_after_queries"] - a["serve"]["rss_after_queries"]) / dn
        out["served_rss"] = big["serve"]["rss_after_queries"] + r_slope * (n - big["passages"])
    out["build_peak_rss"] = max(r["build"]["peak_rss"] for r in rows)  # shards fix it, not the corpus
    return out


def run(args: argparse.Namespace) -> int:
    from r1searcher.benchmarks import machine_info
    from r1searcher.retrieval.tantivy.build import parse_size

    sizes = sorted(int(x) for x in args.sizes.split(","))
    data = Path(args.data) if args.data else Path.cwd().parent / "shared" / "data"
    data = data if data.is_dir() else None
    mem = parse_size(args.max_memory)
    from r1searcher.paths import cache_path

    work = Path(args.work) if args.work else cache_path("bm25_scale")
    work.mkdir(parents=True, exist_ok=True)
    corpus = _ensure_corpus(args, max(sizes + [args.bm25s_at]), data)
    qs = _questions(data)
    if not qs:  # no shared data: titles of passages as queries
        with open(corpus) as f:
            qs = [json.loads(next(f))["title"] for _ in range(1000)]
    qfile = work / "questions.json"
    qfile.write_text(json.dumps(qs))
    res = {"machine": machine_info(), "load_start": os.getloadavg(), "corpus": str(corpus), "queries": len(qs),
           "max_memory": mem, "rows": []}
    _log(f"{len(qs)} queries; sizes {sizes}; max memory {args.max_memory}; load {os.getloadavg()}")
    for n in sizes:
        out = work / f"tantivy-{n}"
        _remove_index(out)
        _log(f"tantivy build {n:,}")
        b, wall = _child(BUILD.format(corpus=str(corpus), n=n, out=str(out), mem=mem))
        b["wall"] = round(wall, 1)
        _log(f"  {b}")
        s, _ = _child(SERVE.format(qfile=str(qfile), out=str(out), opts={"threads": args.threads},
                                      top_out=str(work / f"top-tantivy-{n}.json")))
        _log(f"  serve {s}")
        res["rows"].append({"passages": n, "build": b, "serve": s})
        if n == args.bm25s_at:
            res["bm25s"] = _bm25s(corpus, n, work, qfile)
            res["bm25s"]["top5_agreement"] = _agreement(work / f"top-tantivy-{n}.json", work / f"top-bm25s-{n}.json")
            _log(f"  bm25s {res['bm25s']}")
        if not args.keep:
            _remove_index(out)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
    if args.bm25s_at and args.bm25s_at not in sizes:
        res["bm25s"] = _bm25s(corpus, args.bm25s_at, work, qfile)
    res["extrapolation"] = extrapolate(res["rows"])
    res["load_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(render(res))
    return 0


def _bm25s(corpus: Path, n: int, work: Path, qfile: Path) -> dict:
    out = work / f"bm25s-{n}"
    _remove_index(out)  # BM25Index.save writes into the folder: it must not be someone else's
    _log(f"bm25s build {n:,} (the baseline)")
    b, _ = _child(BM25S_BUILD.format(corpus=str(corpus), n=n, out=str(out)))
    s, _ = _child(SERVE.format(qfile=str(qfile), out=str(out), opts={}, top_out=str(work / f"top-bm25s-{n}.json")))
    _remove_index(out)
    return {"passages": n, "build_seconds": b["seconds"], "build_peak_rss": b["peak_rss"], **s}


def _gb(x: float) -> str:
    return f"{x / 2**30:.2f} GiB"


def render(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m.get('cpu')} ({m.get('cores')} cores), torch CPU capability {m.get('torch_cpu_capability', '?')}; "
             f"load at start {r['load_start'][0]:.2f}; {r['queries']} questions; --max-memory {_gb(r['max_memory'])}", "",
             "| passages | engine | build | passages/s | peak RSS (build) | index on disk (+ passages) | served RSS | q/s batch 1 | q/s batch 32 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        b, s = row["build"], row["serve"]
        lines.append(f"| {row['passages']:,} | tantivy, {b['shards']} shard(s) | {b['seconds']:.0f} s | {row['passages'] / b['seconds']:,.0f} | "
                     f"{_gb(b['peak_rss'])} | {_gb(b['index_bytes'])} ({_gb(b['index_bytes'] + b['store_bytes'])}) | "
                     f"{_gb(s['rss_after_queries'])} | {s['qps_batch1']} | {s['qps_batch32']} |")
    if "bm25s" in r:
        x = r["bm25s"]
        lines.append(f"| {x['passages']:,} | bm25s (baseline) | {x['build_seconds']:.0f} s | {x['passages'] / x['build_seconds']:,.0f} | "
                     f"{_gb(x['build_peak_rss'])} | | {_gb(x['rss_after_queries'])} | {x['qps_batch1']} | {x['qps_batch32']} |")
        same = [row for row in r["rows"] if row["passages"] == x["passages"]]
        if same:
            s = same[0]["serve"]
            lines.append("")
            lines.append(f"At {x['passages']:,}: tantivy/bm25s q/s batch 1 {s['qps_batch1'] / x['qps_batch1']:.1f}×, "
                         f"batch 32 {s['qps_batch32'] / x['qps_batch32']:.1f}×; build peak RSS "
                         f"{same[0]['build']['peak_rss'] / x['build_peak_rss']:.2f}×; same top-5 on "
                         f"{x.get('top5_agreement', float('nan')):.1%} of questions")
    e = r.get("extrapolation", {})
    if "seconds" in e:
        lines += ["", f"Extrapolation to {e['passages']:,} passages: build {e['seconds'] / 3600:.1f} h, peak RSS "
                  f"{_gb(e['build_peak_rss'])} (shards fix it), index {_gb(e['index_bytes'])} + passages {_gb(e['store_bytes'])}, "
                  f"served RSS {_gb(e['served_rss'])}, q/s batch 1 {e['qps_batch1']} (∝ N^{e['qps_batch1_exponent']}), "
                  f"batch 32 {e['qps_batch32']} (∝ N^{e['qps_batch32_exponent']})"]
    return "\n".join(lines)
