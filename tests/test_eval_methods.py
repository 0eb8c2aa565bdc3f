"""The evaluation methods as objects (``baselines.METHODS``): each one's prompts, rollout arguments,
answer rule, config defaults and gold-passage need, and ``evaluate`` running them with no switch on
the method name. Prompts are compared with the exact texts the saved evaluations were made with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from r1searcher.eval.baselines import (
    DIRECT_MAX_TOKENS,
    METHODS,
    NAIVE_INSTRUCTION,
    RAG_INSTRUCTION,
    DirectMethod,
    Method,
    direct_prompt,
    get_method,
    gold_ids,
)
from r1searcher.config import RetrievalConfig, RolloutConfig
from r1searcher.data.qa import QARecord
from r1searcher.eval.evaluate import EvalSpec, evaluate_dataset, prediction_row, run_method
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.rollout.engine import RolloutEngine
from r1searcher.rollout.steer import ScriptedSteer, script_tokens
from r1searcher.rollout.trajectory import Trajectory

PASSAGES = [
    Passage("p1", "Kelvara", "Kelvara is a city in Norland, founded by Maren Oduya."),
    Passage("p2", "Norland", "Norland is a cold country north of the Glass Sea."),
    Passage("p3", "Glass Harbor", "Glass Harbor is the main port of the Glass Sea."),
]
RECORDS = [
    QARecord("q1", "Where is Kelvara?", ["Norland"], {"supporting_ids": ["p1"], "hops": 1}),
    QARecord("q2", "Which sea is north of Norland's port?", ["Glass Sea"], {"gold_passage_ids": ["p2", "p3"], "hops": 2}),
]


@dataclass
class Spec:
    """The settings a method reads (``EvalSpec`` has them too)."""

    top_k: int = 2
    max_doc_words: int | None = 8
    gold_passages: dict = field(default_factory=lambda: {p.id: p for p in PASSAGES})


class NoTemplate:
    """A tokenizer without a chat template (a base model's)."""

    chat_template = None


def traj(text: str, answer: str | None = None, **kw) -> Trajectory:
    return Trajectory([1], [], [], [], text=text, answer=answer, **kw)


# -- the registry ----------------------------------------------------------------------------------


def test_registry_holds_the_five_methods_in_cli_order():
    assert list(METHODS) == ["rl", "iterative", "naive", "rag", "oracle"]
    assert all(m.name == name for name, m in METHODS.items())
    assert [n for n, m in METHODS.items() if m.searches] == ["rl", "iterative"]
    assert all(isinstance(m, DirectMethod) for n, m in METHODS.items() if not m.searches)


def test_get_method_names_the_choices_on_a_wrong_name():
    assert get_method("rag") is METHODS["rag"]
    with pytest.raises(ValueError, match=r"unknown method 'ragg': one of rl, iterative, naive, rag, oracle"):
        get_method("ragg")


def test_config_defaults_and_gold_need():
    assert METHODS["iterative"].config_overrides == ("rollout.few_shot=true",)  # the worked example
    assert all(not m.config_overrides for n, m in METHODS.items() if n != "iterative")
    assert [n for n, m in METHODS.items() if m.needs_gold] == ["oracle"]


# -- prompts ---------------------------------------------------------------------------------------


def test_searching_methods_use_the_engine_prompt():
    for name in ("rl", "iterative"):
        assert METHODS[name].prompts(RECORDS, Spec(), None) is None


def test_naive_prompt_is_the_exact_instruction():
    [p, _] = METHODS["naive"].prompts(RECORDS, Spec(), None, NoTemplate())
    assert p == NAIVE_INSTRUCTION + "\n\nQuestion: Where is Kelvara?\nAnswer:"
    assert p == ("Answer the question based on your own knowledge. Only give me the answer (a short phrase: a "
                 "name, a place, a date or yes/no) and do not output any other words.\n\nQuestion: Where is "
                 "Kelvara?\nAnswer:")


def test_rag_prompt_shows_the_retrieved_top_k_passages():
    index = BM25Index.build(PASSAGES)
    prompts = METHODS["rag"].prompts(RECORDS, Spec(top_k=2), index)
    hits = index.search([r.question for r in RECORDS], 2)
    assert prompts == [direct_prompt(r.question, h, 8) for r, h in zip(RECORDS, hits)]
    assert prompts[0].startswith(RAG_INSTRUCTION + "(1) ")
    assert "Kelvara is a city in" in prompts[0] and prompts[0].endswith("\n\nQuestion: Where is Kelvara?\nAnswer:")


def test_oracle_prompt_shows_the_gold_passages_in_order():
    prompts = METHODS["oracle"].prompts(RECORDS, Spec(max_doc_words=None), None)
    assert prompts[0] == direct_prompt(RECORDS[0].question, [PASSAGES[0]])
    assert prompts[1] == direct_prompt(RECORDS[1].question, [PASSAGES[1], PASSAGES[2]])
    assert "(1) Norland:" in prompts[1] and "(2) Glass Harbor:" in prompts[1]
    assert gold_ids(RECORDS[1]) == ["p2", "p3"] and gold_ids(QARecord("x", "q", ["a"], {})) == []


def test_oracle_refuses_records_it_cannot_show():
    with pytest.raises(ValueError, match="record x has none"):
        METHODS["oracle"].prompts([QARecord("x", "q", ["a"], {})], Spec(), None)
    with pytest.raises(ValueError, match=r"gold passages \['p9'\] of record y are not in the corpus"):
        METHODS["oracle"].prompts([QARecord("y", "q", ["a"], {"supporting_ids": ["p9"]})], Spec(), None)


def test_direct_prompts_follow_the_chat_template(smollm_tokenizer):
    [chat, _] = METHODS["rag"].prompts(RECORDS, Spec(), BM25Index.build(PASSAGES), smollm_tokenizer)
    assert chat.startswith("<|im_start|>system\n" + RAG_INSTRUCTION) and chat.endswith("<|im_start|>assistant\n")


# -- rollout arguments and answers -----------------------------------------------------------------


def test_rollout_args(smollm_tokenizer):
    for name in ("rl", "iterative"):
        assert METHODS[name].rollout_args(smollm_tokenizer) == {}  # the config's search budget and limits
    for name in ("naive", "rag", "oracle"):
        m = METHODS[name]
        assert m.rollout_args(smollm_tokenizer) == {"max_searches": 0, "max_new_tokens": DIRECT_MAX_TOKENS,
                                                    "end_at_answer": False,  # plain text: eos must end it
                                                    "stop_at_newline": False}  # the turn's end stops it
        assert m.rollout_args(NoTemplate())["stop_at_newline"] is True  # a base model: the first line
        assert m.rollout_args(None)["stop_at_newline"] is True
    assert DIRECT_MAX_TOKENS == 32


def test_answers():
    text = "<think> x </think> <answer> Norland </answer>"
    for name in ("rl", "iterative"):
        assert METHODS[name].answer(traj(text, "Norland")) == "Norland"
        assert METHODS[name].answer(traj("The answer is Norland.", None)) == ""  # no tags: no answer
    for name in ("naive", "rag", "oracle"):
        assert METHODS[name].answer(traj(text)) == "Norland"
        assert METHODS[name].answer(traj("The answer is Norland.<|im_end|>")) == "Norland"


def test_a_new_method_needs_no_change_in_evaluate():
    """A method is an object: a subclass with its own answer rule runs through prediction_row."""

    class Shout(Method):
        def answer(self, t) -> str:
            return t.text.upper()

    import r1searcher.eval.baselines as b

    b.METHODS["shout"] = Shout("shout")  # type: ignore[index]
    try:
        row = prediction_row(RECORDS[0], traj("norland"), "shout")
    finally:
        del b.METHODS["shout"]  # type: ignore[attr-defined]
    assert row["pred_ans"] == "NORLAND" and row["em"] == 1.0


def test_prediction_row_scores_the_methods_answer():
    row = prediction_row(RECORDS[1], traj("Answer: the Glass Sea\nmore", n_searches=0, stop_reason="eos"), "naive")
    assert row["pred_ans"] == "the Glass Sea" and (row["em"], row["cover_em"], row["f1"]) == (1.0, 1.0, 1.0)
    assert row["hops"] == 2 and row["answer"] == "Glass Sea" and row["stop_reason_final"] == "eos"
    row = prediction_row(RECORDS[1], traj("Answer: the Glass Sea", None), "rl")  # no tags: no answer
    assert row["pred_ans"] == "" and row["f1"] == 0.0


# -- running a method through a real engine --------------------------------------------------------


def _engine(tokenizer, replies: list[list[str]], retriever=None, **cfg):
    """A tiny model steered to write ``replies[i]`` (its policy segments) for the batch's i-th question."""
    from conftest import make_tiny_causal_lm

    steer = ScriptedSteer([script_tokens(tokenizer, segments) for segments in replies])
    rc = RolloutConfig(**{"max_new_tokens_per_turn": 40, "max_response_tokens": 64, "few_shot": False, **cfg})
    model = make_tiny_causal_lm(tokenizer, seed=3)
    return RolloutEngine(model, tokenizer, retriever, rc, RetrievalConfig(top_k=1), steer=steer)


def test_run_method_gives_the_direct_methods_their_prompt_and_limits(smollm_tokenizer, one_thread):
    index = BM25Index.build(PASSAGES)
    eng = _engine(smollm_tokenizer, [[" Norland<|im_end|>"]], index)
    spec = EvalSpec(method="rag", top_k=1, max_doc_words=8)
    [tr] = run_method(eng, index, RECORDS[:1], spec)
    prompt = smollm_tokenizer.decode(tr.prompt_ids)
    assert prompt == METHODS["rag"].prompts(RECORDS[:1], spec, index, smollm_tokenizer)[0]
    assert tr.n_searches == 0 and METHODS["rag"].answer(tr) == "Norland"


def test_run_method_gives_the_searching_methods_the_training_prompt(smollm_tokenizer, one_thread):
    index = BM25Index.build(PASSAGES)
    eng = _engine(smollm_tokenizer, [[" <|begin_of_query|>Kelvara<|end_of_query|>", " <answer>Norland</answer>"]],
                  index, prompt="chat", max_response_tokens=400)
    [tr] = run_method(eng, index, RECORDS[:1], EvalSpec(method="rl"))
    assert tr.prompt_ids == eng.prompt_ids(RECORDS[0].question)
    assert tr.n_searches == 1 and tr.answer == "Norland" and METHODS["rl"].answer(tr) == "Norland"


def test_evaluate_dataset_writes_each_methods_answers(tmp_path, smollm_tokenizer, one_thread):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": r.id, "question": r.question, "answers": r.answers, **r.meta}) + "\n"
                            for r in RECORDS))
    eng = _engine(smollm_tokenizer, [[" Norland\nmore"], [" Glass Sea\n"]])
    m = evaluate_dataset(eng, None, data, tmp_path / "naive", EvalSpec(method="naive", batch_size=2), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "naive" / "predictions.jsonl").read_text().splitlines()]
    assert [r["pred_ans"] for r in rows] == ["Norland", "Glass Sea"]
    assert m["em"] == 100.0 and m["by_hops"]["2"]["f1"] == 100.0 and m["searches_per_question"] == 0.0


# -- the CLI reads a method's config defaults and gold need from its object -------------------------


@pytest.fixture(scope="module")
def tiny_eval(tmp_path_factory, smollm_tokenizer):
    """A tiny random model, a corpus, two questions and a config that turns the worked example off."""
    from conftest import make_tiny_causal_lm

    d = tmp_path_factory.mktemp("eval_cli")
    model = make_tiny_causal_lm(smollm_tokenizer, seed=0)
    model.save_pretrained(d / "model")
    smollm_tokenizer.save_pretrained(d / "model")
    (d / "corpus.jsonl").write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n"
                                            for p in PASSAGES))
    (d / "qa.jsonl").write_text("".join(json.dumps({"id": r.id, "question": r.question, "answers": r.answers, **r.meta})
                                        + "\n" for r in RECORDS))
    (d / "cfg.yaml").write_text("rollout:\n  few_shot: false\n  max_new_tokens_per_turn: 8\n  max_response_tokens: 16\n")
    return d


def _cli_eval(d, method: str, out, *extra: str) -> int:
    from r1searcher.cli import main

    return main(["eval", "--method", method, "--model", str(d / "model"), "--data", str(d / "qa.jsonl"),
                 "--index", str(d / "corpus.jsonl"), "--config", str(d / "cfg.yaml"), "--out", str(out),
                 "--limit", "1", *extra])


def test_cli_iterative_gets_the_worked_example(tiny_eval, tmp_path, one_thread):
    shots = {}
    for method in ("rl", "iterative"):
        assert _cli_eval(tiny_eval, method, tmp_path / method) == 0
        run = json.loads((tmp_path / method / "qa" / "run.json").read_text())
        shots[method] = (run["method"], run["prompt"]["few_shot"])
    assert shots == {"rl": ("rl", False), "iterative": ("iterative", True)}  # over the config file's false


def test_cli_oracle_needs_a_corpus(tiny_eval, tmp_path, capsys):
    assert _cli_eval(tiny_eval, "oracle", tmp_path / "o") != 0
    assert "--method oracle needs --corpus FILE holding the gold passages" in capsys.readouterr().err
    assert _cli_eval(tiny_eval, "oracle", tmp_path / "o", "--corpus", str(tiny_eval / "corpus.jsonl")) == 0
    row = json.loads((tmp_path / "o" / "qa" / "predictions.jsonl").read_text())
    assert row["n_searches"] == 0 and row["id"] == "q1"
