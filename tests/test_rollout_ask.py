"""``r1searcher ask`` end to end: a saved tiny model folder, a saved BM25 index, the real CLI."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny_causal_lm
from r1searcher.cli import main
from r1searcher.commands.ask import colorize
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.bm25 import BM25Index


@pytest.fixture(scope="module")
def saved(tmp_path_factory, smollm_tokenizer):
    root = tmp_path_factory.mktemp("ask")
    model = make_tiny_causal_lm(smollm_tokenizer)
    model.save_pretrained(root / "model")
    smollm_tokenizer.save_pretrained(root / "model")
    BM25Index.build([Passage(str(i), f"Doc {i}", f"river castle fact {i}") for i in range(10)]).save(root / "index")
    return root


def _ask(saved, capsys, *extra):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["ask", "--index", str(saved / "index"), "--model", str(saved / "model"), *extra,
                   "Who built the castle?", "rollout.max_new_tokens_per_turn=6", "rollout.few_shot=false"])
    finally:
        torch.set_num_threads(old)
    assert rc == 0
    return capsys.readouterr().out


def test_ask_json(saved, capsys):
    d = json.loads(_ask(saved, capsys, "--json", "-k", "2"))
    for key in ("question", "text", "answer", "queries", "n_searches", "stop_reason", "response_ids", "loss_mask"):
        assert key in d
    assert d["question"] == "Who built the castle?" and d["stop_reason"] == "length"
    assert len(d["response_ids"]) == len(d["loss_mask"]) == 6


def test_ask_trace_has_no_colour_when_not_a_tty(saved, capsys):
    out = _ask(saved, capsys)
    assert out.startswith("Question: Who built the castle?\n<think>")
    assert "searches: 0 | stop: length" in out and "\033[" not in out


def test_colorize_marks_each_segment():
    text = " hm <|begin_of_query|> q <|end_of_query|>\n\n<|begin_of_documents|>\n(1) T: x\n<|end_of_documents|>\n\nok </think>\n\n<answer> A </answer>"
    out = colorize(text)
    assert "\033[1;33m q \033[0m" in out  # query
    assert "\033[36m\n(1) T: x\n\033[0m" in out  # documents
    assert "\033[1;32m A \033[0m" in out  # answer
    assert colorize(text, enabled=False) == text
    assert out.replace("\033[1;33m", "").replace("\033[36m", "").replace("\033[1;32m", "").replace("\033[0m", "") == text
