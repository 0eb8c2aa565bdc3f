"""Answer recall@k of BM25, dense and hybrid retrieval on the shared eval sets (part of ``bench retrieval``).

Metric: a question counts as found at k when a normalised gold answer or alias
(``r1searcher.eval.metrics.normalize_answer``) occurs as whole words in the title + text of one of
the top-k passages retrieved with the question. Questions whose gold answer is yes/no are
skipped (the answer is not a span). Each retriever's rankings are computed once to depth 100;
every k and every fusion setting is derived from them, so the RRF sweep costs no extra search.

Baseline measured in the same run: plain bm25s (English stop words, no stemming, bm25s
defaults k1=1.5 b=0.75) over title + text: the floor MANIFEST.md quotes. MANIFEST's floor
counts yes/no questions as misses; ``floor_denominator_all`` restates ours that way.
Hybrid fusion parameters (RRF k, dense weight, depth per side) are chosen on ``dev_extra/``
(disjoint from ``eval/``) by pooled recall@5 over all its questions, never on eval; the
textbook setting (k=60, equal weights) is reported beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

from r1searcher.util.files import read_jsonl
from r1searcher.retrieval.base import Passage

EVAL_SETS = ("hotpotqa", "2wiki", "musique", "bamboogle")
DEV_SETS = ("hotpotqa", "2wiki", "musique")
KS = (1, 3, 5, 10)
DEPTH = 100
RRF_GRID = [(rk, (1.0, w), d) for rk in (10, 30, 60, 100) for w in (1.0, 0.75, 0.5, 0.3) for d in (20, 100)]


def load_questions(path: Path) -> tuple[list[str], list[list[str]], int]:
    """(questions, normalised gold aliases, total rows) with yes/no and answerless rows skipped."""
    from r1searcher.eval.metrics import normalize_answer

    qs, golds = [], []
    rows = read_jsonl(path, on_bad="raise").values()
    total = len(rows)
    for r in rows:
        answer = r.get("answer")
        if answer is None or normalize_answer(str(answer)) in ("yes", "no"):
            continue
        aliases = {normalize_answer(str(a)) for a in (r.get("answers") or [answer])} | {normalize_answer(str(answer))}
        aliases = {a for a in aliases if a and a not in ("yes", "no")}
        if aliases:
            qs.append(r["question"])
            golds.append(sorted(aliases))
    return qs, golds, total


def _hits(rows: list[int], table, golds: list[str], cache: dict[int, str]) -> list[bool]:
    """For each retrieved row: does it contain a gold alias as whole words?"""
    from r1searcher.eval.metrics import normalize_answer

    out = []
    for r in rows:
        text = cache.get(r)
        if text is None:
            p: Passage = table.get(r)
            text = cache[r] = f" {normalize_answer(p.title + ' ' + p.text)} "
        out.append(any(f" {g} " in text for g in golds))
    return out


def recall_at(rankings: list[list[int]], table, golds: list[list[str]], ks=KS, cache=None) -> dict[int, float]:
    """Fraction of questions with a gold alias in the top k, for each k."""
    cache = {} if cache is None else cache
    found = {k: 0 for k in ks}
    for rows, g in zip(rankings, golds):
        hits = _hits(rows[: max(ks)], table, g, cache)
        for k in ks:
            found[k] += any(hits[:k])
    n = max(len(rankings), 1)
    return {k: round(found[k] / n, 4) for k in ks}


def _rows(index, questions: list[str], depth: int = DEPTH) -> list[list[tuple[int, float]]]:
    out = []
    for s in range(0, len(questions), 256):
        out.extend(index.search_rows(questions[s : s + 256], depth))
    return out


def _plain_bm25s(passages: list[Passage]):
    """The MANIFEST floor exactly: bm25s.tokenize(stopwords='en'), no stemmer, bm25s defaults."""
    import bm25s

    ret = bm25s.BM25()
    ret.index(bm25s.tokenize([f"{p.title} {p.text}" for p in passages], stopwords="en", show_progress=False), show_progress=False)

    def search(questions: list[str], depth: int) -> list[list[int]]:
        docs, scores = ret.retrieve(bm25s.tokenize(questions, stopwords="en", show_progress=False), k=depth, show_progress=False)
        return [[int(d) for d, s in zip(dr, sr) if s > 0] for dr, sr in zip(docs, scores)]

    return search


def _tantivy_runs(passages: list[Passage], evals: dict, runs: dict, log) -> dict:
    """The sharded tantivy engine on the same passages and questions (1 shard and 3 shards), top 10:
    its recall beside bm25s's, and how often its top-5 is bm25s's (the scale engine must keep quality)."""
    import tempfile

    try:
        from r1searcher.retrieval.tantivy.reader import TantivyBM25
        from r1searcher.retrieval.tantivy.build import build_tantivy
    except ImportError:  # tantivy not installed
        return {"skipped": "tantivy not installed"}
    info: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shard_size in (("bm25_tantivy", None), ("bm25_tantivy_3shards", -(-len(passages) // 3))):
            t = time.perf_counter()
            build_tantivy(passages, Path(tmp) / name, shard_size=shard_size)
            ix = TantivyBM25(Path(tmp) / name)
            log(f"quality: {name} built in {time.perf_counter() - t:.1f} s")
            runs[name] = {n: _rows(ix, qs, max(KS)) for n, (qs, _, _) in evals.items()}
            same = {n: round(sum([r for r, _ in a[:5]] == [r for r, _ in b[:5]] for a, b in zip(runs[name][n], runs["bm25"][n]))
                             / max(len(runs[name][n]), 1), 4) for n in evals}
            info[name] = {"shards": len(ix.manifest["shards"]), "same_top5_as_bm25s": same}
    return info


def _dense_and_hybrid(passages: list[Passage], evals: dict, devs: dict, runs: dict, dev_runs: dict, table,
                      cache_root: Path, norm_cache: dict[int, str], log) -> dict:
    """Add the dense and hybrid runs to ``runs`` (hybrid parameters chosen on ``devs``); return what
    to report about them (the dense index, the dev sweep, the chosen parameters)."""
    from r1searcher.retrieval.hybrid import rrf_fuse
    from r1searcher.retrieval.index import cached_index

    out: dict = {}
    t = time.perf_counter()
    dense, folder, hit = cached_index(passages, "dense", cache_root, show_progress=True)
    log(f"quality: dense index {'loaded from' if hit else 'built into'} {folder} in {time.perf_counter() - t:.1f} s")
    out["dense_index"] = {"cache": str(folder), "from_cache": hit, "model": dense.model, "params": dense.params}
    runs["dense"] = {n: _rows(dense, v[0]) for n, v in evals.items()}
    dev_runs["dense"] = {n: _rows(dense, v[0]) for n, v in devs.items()}

    def fuse(side: dict, rk: float, w: tuple[float, float], depth: int) -> dict[str, list[list[tuple[int, float]]]]:
        return {
            n: [rrf_fuse((a[:depth], b[:depth]), w, rk, max(KS)) for a, b in zip(side["bm25"][n], side["dense"][n])]
            for n in side["bm25"]
        }

    def pooled(side: dict, sets: dict) -> tuple[dict[str, float], float]:
        per = {n: recall_at([[r for r, _ in x] for x in side[n]], table, sets[n][1], (5,), norm_cache)[5] for n in side}
        total = sum(len(sets[n][1]) for n in side)
        return per, round(sum(per[n] * len(sets[n][1]) for n in side) / total, 4)

    sweep = []
    for name in ("bm25", "dense"):
        per, pool = pooled(dev_runs[name], devs)
        sweep.append({"only": name, "dev_recall@5": per, "dev_pooled@5": pool})
    for rk, w, depth in RRF_GRID:
        per, pool = pooled(fuse(dev_runs, rk, w, depth), devs)
        sweep.append({"rrf_k": rk, "weights": list(w), "depth": depth, "dev_recall@5": per, "dev_pooled@5": pool})
    best = max((s for s in sweep if "rrf_k" in s), key=lambda s: s["dev_pooled@5"])
    out["hybrid_sweep_dev"] = sweep
    out["hybrid_params"] = {k: best[k] for k in ("rrf_k", "weights", "depth")} | {"chosen_on": "dev_extra pooled recall@5"}
    runs["hybrid_rrf60_equal"] = fuse(runs, 60.0, (1.0, 1.0), 100)
    runs["hybrid"] = fuse(runs, best["rrf_k"], tuple(best["weights"]), best["depth"])
    return out


def run_quality(data_dir: Path, cache_root: Path, with_dense: bool = True, log=print) -> dict:
    """All quality numbers as one dict (see module docstring)."""
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.retrieval.store import MemoryTable

    corpus = data_dir / "corpus" / "passages.jsonl"
    passages = list(read_passages(corpus))
    table = MemoryTable(passages)
    evals = {n: load_questions(data_dir / "eval" / f"{n}.jsonl") for n in EVAL_SETS if (data_dir / "eval" / f"{n}.jsonl").is_file()}
    devs = {n: load_questions(data_dir / "dev_extra" / f"{n}.jsonl") for n in DEV_SETS if (data_dir / "dev_extra" / f"{n}.jsonl").is_file()}
    out: dict = {"corpus": str(corpus), "passages": len(passages), "metric": "answer recall@k (whole words, title+text, yes/no skipped)"}
    out["questions"] = {n: {"scored": len(v[0]), "total": v[2]} for n, v in evals.items()}
    norm_cache: dict[int, str] = {}

    t = time.perf_counter()
    plain = _plain_bm25s(passages)
    bm25 = BM25Index.build(passages)
    log(f"quality: BM25 indexes built in {time.perf_counter() - t:.1f} s")
    runs: dict[str, dict[str, list[list[tuple[int, float]]]]] = {"plain_bm25s": {}, "bm25": {}}
    for n, (qs, _, _) in evals.items():
        runs["plain_bm25s"][n] = [[(r, 0.0) for r in rows] for rows in plain(qs, DEPTH)]
        runs["bm25"][n] = _rows(bm25, qs)
    dev_runs: dict[str, dict] = {"bm25": {n: _rows(bm25, v[0]) for n, v in devs.items()}}
    out["bm25_params"] = bm25.params
    out["bm25_tantivy"] = _tantivy_runs(passages, evals, runs, log)

    if with_dense:
        out |= _dense_and_hybrid(passages, evals, devs, runs, dev_runs, table, cache_root, norm_cache, log)

    recall: dict[str, dict[str, dict[int, float]]] = {}
    for name, per_set in runs.items():
        recall[name] = {n: recall_at([[r for r, _ in x] for x in per_set[n]], table, evals[n][1], KS, norm_cache) for n in per_set}
    out["recall"] = recall
    n_all = sum(len(v[0]) for v in evals.values())
    out["recall_pooled"] = {
        name: {k: round(sum(recall[name][n][k] * len(evals[n][0]) for n in evals) / n_all, 4) for k in KS} for name in recall
    }
    out["floor_manifest@5"] = {"hotpotqa": 0.64, "2wiki": 0.49, "musique": 0.09, "bamboogle": 0.28}
    out["floor_denominator_all"] = {
        name: {n: round(recall[name][n][5] * len(evals[n][0]) / evals[n][2], 4) for n in evals} for name in recall
    }
    if with_dense:
        out["hybrid_vs_best_single_pooled@5"] = round(
            out["recall_pooled"]["hybrid"][5] - max(out["recall_pooled"]["bm25"][5], out["recall_pooled"]["dense"][5]), 4
        )
        out["hybrid_vs_best_single@5"] = {
            n: round(recall["hybrid"][n][5] - max(recall["bm25"][n][5], recall["dense"][n][5]), 4) for n in evals
        }
    return out
