"""The direct baselines (naive / rag / oracle) get a prompt that fits the model and an answer rule
that reads a plain reply: a baseline that scores 0 because of its format is a bug."""

from __future__ import annotations

import json

import pytest

from r1searcher.eval.baselines import METHODS, direct_prompt
from r1searcher.config import RetrievalConfig, RolloutConfig
from r1searcher.retrieval.base import Passage
from r1searcher.rollout.engine import RolloutEngine
from r1searcher.rollout.steer import ScriptedSteer
from r1searcher.rollout.tags import extract_answer


@pytest.mark.parametrize("reply, expected", [
    ("Kelvara<|im_end|>", "Kelvara"),
    ("The answer is: Poudreibork.<|im_end|>", "Poudreibork"),
    ("The answer is:\n(2) Niadeithmark<|im_end|>", "Niadeithmark"),
    ("\n\nAnswer: **Maren Oduya**.\nShe founded it in 2004.", "Maren Oduya"),
    ("<think> x </think> <answer> Norland </answer>", "Norland"),
    ('"Glass Harbor".', "Glass Harbor"),
    ("U.S.", "U.S."),
    ("", ""),
    ("<|im_end|>", ""),
])
def test_direct_answer_reads_the_first_line(reply, expected):
    assert extract_answer(reply, first_line=True) == expected


def test_direct_prompt_uses_the_chat_template_of_an_instruct_model(smollm_tokenizer):
    docs = [Passage("p1", "Kelvara", "Kelvara is a city in Norland.")]
    chat = direct_prompt("Where is Kelvara?", docs, 40, smollm_tokenizer)
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")
    assert "(1) Kelvara: Kelvara is a city in Norland." in chat and "Question: Where is Kelvara?" in chat
    naive = direct_prompt("Where is Kelvara?", tokenizer=smollm_tokenizer)
    assert "documents" not in naive.split("<|im_start|>user")[0]
    base = direct_prompt("Where is Kelvara?", docs, 40, tokenizer=None)  # a base model: a completion prompt
    assert base.endswith("\nQuestion: Where is Kelvara?\nAnswer:") and "<|im_start|>" not in base


def _engine(tokenizer, steer, **cfg):
    from conftest import make_tiny_causal_lm

    model = make_tiny_causal_lm(tokenizer, seed=3)
    rc = RolloutConfig(max_new_tokens_per_turn=40, max_response_tokens=64, few_shot=False, **cfg)
    return RolloutEngine(model, tokenizer, None, rc, RetrievalConfig(top_k=1), steer=steer)


def test_direct_rollout_stops_at_the_first_line_and_at_its_own_cap(smollm_tokenizer, one_thread):
    ids = smollm_tokenizer.encode(" Kelvara\nand then more text that runs on and on", add_special_tokens=False)
    eng = _engine(smollm_tokenizer, ScriptedSteer([ids]))
    [tr] = eng.rollout(["q"], n=1, greedy=True, prompts=["Question: q\nAnswer:"], max_searches=0, stop_at_newline=True)
    assert tr.stop_reason == "eos" and tr.text.strip() == "Kelvara" and METHODS["naive"].answer(tr) == "Kelvara"
    [tr] = eng.rollout(["q"], n=1, greedy=True, prompts=["Question: q\nAnswer:"], max_searches=0, max_new_tokens=3)
    assert tr.stop_reason == "length" and len(tr.response_ids) == 3
    [tr] = eng.rollout(["q"], n=1, greedy=True, prompts=["Question: q\nAnswer:"], max_searches=0)  # limits are per call
    assert len(tr.response_ids) > 3


def test_untrained_smollm2_reads_one_hop_answers_with_rag(tmp_path, embedded_model_dir, one_thread):
    """The issue's floor: the embedded 135M model, rag over the fictional world, 1-hop: cover-EM ≥ 0.3
    (it was 0.0 with the old base-style prompt: every reply ran on to the length cap)."""
    import torch

    from r1searcher.data.synthetic import generate_world
    from r1searcher.eval.evaluate import EvalSpec, evaluate_dataset
    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages

    world = generate_world(120, 0)
    paths = world.save(tmp_path / "world")
    one_hop = [q for q in world.heldout if q.hops == 1][:20]
    data = tmp_path / "one_hop.jsonl"
    data.write_text("".join(json.dumps({"id": q.id, "question": q.question, "answers": q.answers}) + "\n" for q in one_hop))
    index = BM25Index.build(list(read_passages(paths["corpus"])))
    model, tok = load_policy(path=str(embedded_model_dir))
    engine = RolloutEngine(model, tok, index, RolloutConfig(prompt="chat", batch_size=20), RetrievalConfig(top_k=2))
    with torch.no_grad():
        m = evaluate_dataset(engine, index, data, tmp_path / "rag", EvalSpec(method="rag", top_k=2, max_doc_words=40,
                                                                            batch_size=20), progress=False)
    assert m["n"] == 20
    assert m["cover_em"] >= 30.0, m
    assert m["stop_reasons"].get("length", 0) <= 2, m["stop_reasons"]  # it ends its turn
