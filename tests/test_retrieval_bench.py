"""The retrieval benchmark's measuring code: recall@k, question loading, synthetic corpora, extrapolation."""

from __future__ import annotations

import json

import pytest

from r1searcher.benchmarks._retrieval_quality import load_questions, recall_at
from r1searcher.benchmarks._retrieval_scale import extrapolate, synthetic_passages
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.store import MemoryTable


def test_load_questions_skips_yes_no_and_normalises_aliases(tmp_path):
    f = tmp_path / "e.jsonl"
    rows = [
        {"question": "q1", "answer": "The Beatles", "answers": ["The Beatles", "Beatles!"]},
        {"question": "q2", "answer": "yes", "answers": ["yes"]},
        {"question": "q3", "answer": None},
        {"question": "q4", "answer": "Paris"},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qs, golds, total = load_questions(f)
    assert qs == ["q1", "q4"] and golds == [["beatles"], ["paris"]] and total == 4


def test_recall_is_whole_word_and_counts_by_rank():
    table = MemoryTable([
        Passage("a", "Band", "The Beatles were a rock band."),
        Passage("b", "Other", "Beatlesque music is not the answer."),
        Passage("c", "Paris", "A city."),  # the answer in the title counts
    ])
    r = recall_at([[1, 0], [2], [1]], table, [["beatles"], ["paris"], ["beatles"]], ks=(1, 2))
    assert r == {1: round(1 / 3, 4), 2: round(2 / 3, 4)}


def test_synthetic_passages_are_deterministic_and_bounded():
    a, rows, vocab = synthetic_passages(50, seed=3)
    b, _, _ = synthetic_passages(50, seed=3)
    assert [p.text for p in a] == [p.text for p in b]
    assert all(60 <= len(p.text.split()) <= 100 for p in a) and len({p.id for p in a}) == 50
    assert all(len(r) == len(p.text.split()) for r, p in zip(rows, a))


def test_extrapolation_uses_marginal_slope():
    rows = [
        {"passages": 1000, "build_s": 2.0, "disk_index_mb": 1.0, "disk_with_passages_mb": 2.0, "peak_rss_build_mb": 200.0,
         "index_rss_mb": 10.0, "qps_batch100": 1000.0},
        {"passages": 2000, "build_s": 3.0, "disk_index_mb": 2.0, "disk_with_passages_mb": 4.0, "peak_rss_build_mb": 300.0,
         "index_rss_mb": 20.0, "qps_batch100": 500.0},
    ]
    e = extrapolate(rows, None, n_target=4000)["bm25"]
    assert e["build_hours"] == round(5.0 / 3600, 2) and e["peak_rss_build_gb"] == round(500 / 1024, 1)
    assert e["qps_batch100"] == 250.0


def test_server_speed_measures_a_real_loopback_server_against_the_same_index():
    """The serving benchmark end to end at toy scale: an in-memory index is saved, served by a real
    ``r1searcher serve`` child on loopback, and the same questions go through both; every figure the
    report names is there, and the server's top-1 agrees with the in-process search."""
    from r1searcher.benchmarks._retrieval_speed import server_speed
    from r1searcher.retrieval.bm25 import BM25Index

    passages, _, _ = synthetic_passages(3000, seed=1)
    index = BM25Index.build(passages)
    # enough queries that each pass takes many ticks of the CPU clock (the ratios divide by it)
    questions = [" ".join(p.text.split()[:12]) for p in passages[:600]]
    lines: list[str] = []
    out = server_speed(index, questions, clients=2, k=3, rounds=1, log=lines.append)
    assert out["queries"] == 600 and out["index_passages"] == 3000 and len(out["rounds"]) == 1
    for key in ("inproc_single_qps_built", "inproc_threads_qps", "inproc_batch32_qps", "server_qps", "httpx_qps",
                "server_batch32_requests_qps", "overhead_qps_vs_inproc_single", "overhead_qps_batch32", "http_stack"):
        assert key in out, key
    assert out["server_top1_agrees"] == 1.0
    assert len(lines) == 2 and lines[0].startswith("speed: round 1:") and "median of 1 rounds" in lines[1]


def test_run_quality_scores_every_retriever_and_chooses_the_fusion_on_dev(tmp_path):
    """The quality benchmark end to end on a small synthetic world laid out as the shared data
    folder: BM25 (ours and the plain floor), tantivy, dense and hybrid are all scored, the hybrid's
    parameters come from ``dev_extra/`` (never ``eval/``), and recall only grows with k."""
    pytest.importorskip("faiss")
    pytest.importorskip("sentence_transformers")
    from r1searcher.benchmarks._retrieval_quality import KS, RRF_GRID, run_quality
    from r1searcher.data.synthetic import generate_world

    world = generate_world(40, 0).save(tmp_path / "world")  # > 100 passages: the floor searches to depth 100
    data = tmp_path / "data"
    for sub, name, src in (("corpus", "passages", "corpus"), ("eval", "hotpotqa", "heldout"), ("dev_extra", "hotpotqa", "train")):
        (data / sub).mkdir(parents=True, exist_ok=True)
        rows = [json.loads(x) for x in world[src].read_text().splitlines()]
        if sub != "corpus":
            rows = [{**r, "answer": r["answers"][0]} for r in rows]
        (data / sub / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines: list[str] = []
    out = run_quality(data, tmp_path / "cache", with_dense=True, log=lines.append)
    names = {"plain_bm25s", "bm25", "dense", "hybrid", "hybrid_rrf60_equal"}
    assert names <= set(out["recall"]) and set(out["recall"]["bm25"]) == {"hotpotqa"}
    for name in names:
        r = out["recall"][name]["hotpotqa"]
        assert [r[k] for k in KS] == sorted(r[k] for k in KS), name
    assert len(out["hybrid_sweep_dev"]) == 2 + len(RRF_GRID)
    assert out["hybrid_params"]["chosen_on"] == "dev_extra pooled recall@5"
    assert out["dense_index"]["from_cache"] is False and (tmp_path / "cache").is_dir()
    assert list(out)[:4] == ["corpus", "passages", "metric", "questions"]
    assert any("dense index built into" in line for line in lines)
