"""Every run saves its whole config, and the ``eval`` section's knobs reach ``r1searcher eval``
(a flag still wins over them)."""

from __future__ import annotations

import json

import pytest

from r1searcher.cli import main
from r1searcher.config import load_config

QUESTIONS = [{"id": f"q{i}", "question": f"Who founded Firm{i}?", "answers": [f"Person{i}"]} for i in range(3)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smollm_tokenizer):
    from conftest import make_tiny_causal_lm

    d = tmp_path_factory.mktemp("cfg_runs")
    make_tiny_causal_lm(smollm_tokenizer, seed=0).save_pretrained(d / "model")
    smollm_tokenizer.save_pretrained(d / "model")
    (d / "corpus.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "title": f"Firm{i}",
                                                        "text": f"Firm{i} was founded by Person{i}."}) + "\n"
                                            for i in range(3)))
    (d / "qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (d / "cfg.yaml").write_text("rollout:\n  few_shot: false\n  max_new_tokens_per_turn: 8\n  max_response_tokens: 16\n"
                                "eval:\n  method: naive\n  limit: 2\n  batch_size: 2\n  max_searches: 3\n")
    return d


def _eval(d, out, *extra: str) -> int:
    return main(["eval", "--model", str(d / "model"), "--data", str(d / "qa.jsonl"), "--index", str(d / "corpus.jsonl"),
                 "--config", str(d / "cfg.yaml"), "--out", str(out), *extra])


def test_eval_takes_its_knobs_from_the_eval_section_and_saves_the_config(tiny, tmp_path, one_thread):
    assert _eval(tiny, tmp_path / "a") == 0
    folder = tmp_path / "a" / "qa"
    run = json.loads((folder / "run.json").read_text())
    rows = (folder / "predictions.jsonl").read_text().splitlines()
    assert run["method"] == "naive" and len(rows) == 2  # eval.method, eval.limit
    saved = load_config(folder / "config.yaml")
    assert (saved.eval.method, saved.eval.limit, saved.eval.batch_size) == ("naive", 2, 2)
    assert saved.rollout.max_searches == 3  # eval.max_searches
    assert saved.retrieval.top_k == 3  # with --config, its retrieval.top_k (eval.top_k only without one)


def test_a_flag_wins_over_the_eval_section(tiny, tmp_path, one_thread):
    assert _eval(tiny, tmp_path / "b", "--method", "rag", "--limit", "1", "rollout.max_searches=2") == 0
    folder = tmp_path / "b" / "qa"
    assert json.loads((folder / "run.json").read_text())["method"] == "rag"
    assert len((folder / "predictions.jsonl").read_text().splitlines()) == 1
    saved = load_config(folder / "config.yaml")
    assert (saved.eval.method, saved.eval.limit, saved.rollout.max_searches) == ("rag", 1, 2)


def test_a_bad_eval_section_fails_before_any_work(tiny, tmp_path, capsys):
    assert _eval(tiny, tmp_path / "c", "eval.method=guess") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "eval.method: must be one of" in err
    assert not (tmp_path / "c").exists()


def test_without_a_config_eval_top_k_is_the_paper_default(tiny, tmp_path, one_thread):
    assert main(["eval", "--method", "naive", "--model", str(tiny / "model"), "--data", str(tiny / "qa.jsonl"),
                 "--index", str(tiny / "corpus.jsonl"), "--out", str(tmp_path / "d"), "--limit", "1",
                 "rollout.max_new_tokens_per_turn=8", "rollout.max_response_tokens=16", "eval.top_k=4"]) == 0
    saved = load_config(tmp_path / "d" / "qa" / "config.yaml")
    assert saved.retrieval.top_k == 4 and saved.rollout.max_searches == 9
