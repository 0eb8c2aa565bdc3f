"""The one answer extractor, ``tags.extract_answer``: the released rule for tagged completions (the
searching methods, the rollout), and with ``first_line=True`` the direct baselines' rule for a plain
reply. The expected values are what the two separate extractors gave before they were merged."""

from __future__ import annotations

import pytest

from r1searcher.eval.baselines import METHODS
from r1searcher.rollout.tags import extract_answer

TEXTS = [
    "<think> x </think> <answer> Norland </answer>",
    "<answer>a</answer><answer>b</answer>",
    "<answer>x</answer> then <answer>y",
    "</answer> x <answer> y",
    "<answer> unclosed",
    "no tags at all ",
    "",
    "<answer></answer>",
    "a <|begin_of_documents|>(1) <answer>doc</answer><|end_of_documents|> <answer> z </answer> tail",
]


@pytest.mark.parametrize("text", TEXTS)
def test_default_is_the_released_rule(text):
    assert extract_answer(text) == text.split("<answer>")[-1].split("</answer>")[0].strip()


@pytest.mark.parametrize("reply, expected", [
    ("</answer> x <answer> y", "</answer> x <answer> y"),  # no <answer> closed after the first: a plain line
    ("<answer>a</answer><answer>b</answer>", "b"),  # the last <answer>, as released
    ("<answer> unclosed", "<answer> unclosed"),
    ("<answer>x</answer> then <answer>y", "y"),
    ("Final answer: 1912.", "1912"),
    ("answer - Maren Oduya", "Maren Oduya"),
    ('**The answer is**\n\n"Kelvara"', "The answer is"),
    ("(12) Norland", "Norland"),
    ("<|im_start|>assistant\nNorland<|im_end|>", "assistant"),
    ("Washington D.C.", "Washington D.C."),
    ("Answer:\n", ""),
    ("  \n\t\n", ""),
    ("It is in Norland. Also more.", "It is in Norland. Also more"),
    ("<end_of_turn>Norland</s>", "Norland"),
    ("<answer>Nor<|im_end|>land</answer>", "Norland"),  # special-token text goes first
])
def test_first_line_is_the_direct_rule(reply, expected):
    assert extract_answer(reply, first_line=True) == expected


@pytest.mark.parametrize("text", [t for t in TEXTS if "<answer>" in t and "</answer>" in t.split("<answer>", 1)[1]])
def test_both_rules_agree_on_a_closed_answer(text):
    assert extract_answer(text, first_line=True) == extract_answer(text)


def test_first_line_is_keyword_only():
    with pytest.raises(TypeError):
        extract_answer("x", True)  # type: ignore[misc]


def test_every_direct_method_uses_it():
    from r1searcher.rollout.trajectory import Trajectory

    for reply, _ in [("Final answer: 1912.", None), ("<answer> a </answer>", None), ("", None)]:
        tr = Trajectory([1], [], [], [], text=reply)
        for name in ("naive", "rag", "oracle"):
            assert METHODS[name].answer(tr) == extract_answer(reply, first_line=True)


def test_rollout_answers_use_it(smollm_tokenizer, one_thread):
    """A searching trajectory's answer is the extractor's on its text (the rollout applies it)."""
    from conftest import make_tiny_causal_lm

    from r1searcher.config import RetrievalConfig, RolloutConfig
    from r1searcher.rollout.engine import RolloutEngine
    from r1searcher.rollout.steer import ScriptedSteer, script_tokens

    steer = ScriptedSteer([script_tokens(smollm_tokenizer, [" so <answer> Glass  Sea </answer>"]),
                           script_tokens(smollm_tokenizer, [" no tags<|im_end|>"])])
    eng = RolloutEngine(make_tiny_causal_lm(smollm_tokenizer, seed=1), smollm_tokenizer, None,
                        RolloutConfig(max_new_tokens_per_turn=40, max_response_tokens=64, few_shot=False),
                        RetrievalConfig(top_k=1), steer=steer)
    tagged, plain = eng.rollout(["q1", "q2"], n=1, greedy=True)
    assert tagged.answer == extract_answer(tagged.text) == "Glass  Sea"
    assert plain.answer is None and METHODS["rl"].answer(plain) == ""
