"""The retrieval benchmark's measuring code: recall@k, question loading, synthetic corpora, extrapolation."""

from __future__ import annotations

import json

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
