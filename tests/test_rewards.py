"""Each reward rule of R1-Searcher (notes §1), on hand-written completions."""

from __future__ import annotations

import pytest

from r1searcher.config import RewardConfig
from r1searcher.rl.rewards import compute_reward, stage1_reward, stage2_reward
from r1searcher.rollout.trajectory import Trajectory

Q = "<|begin_of_query|> {} <|end_of_query|>"
DOCS = "\n\n<|begin_of_documents|>\n(1) Veltrix Labs: founded by Maren Oduya.\n<|end_of_documents|>\n\n"


def search(q: str = "Veltrix Labs founder") -> str:
    return " " + Q.format(q) + DOCS


def answer(a: str) -> str:
    return f" </think>\n\n<answer> {a} </answer>"


GOOD = " I need the founder." + search() + "It is Maren Oduya." + answer("Maren Oduya")
S1 = RewardConfig(stage=1)
S2 = RewardConfig(stage=2)


# ---------------------------------------------------------------------------------- stage 1
def test_stage1_full_marks_for_a_search_and_good_format():
    r, info = stage1_reward(GOOD, ["Maren Oduya"], S1)
    assert r == 1.0 and info["retrieval"] == 0.5 and info["format"] == 0.5 and info["n_searches"] == 1


def test_stage1_no_search_gets_only_the_format_reward():
    r, info = stage1_reward(" I know it." + answer("Maren Oduya"), ["Maren Oduya"], S1)
    assert r == 0.5 and info["retrieval"] == 0.0 and "no search" in info["reasons"]


@pytest.mark.parametrize(
    "completion, why",
    [
        # a block the model made up (no numbering "(1)")
        (" x " + Q.format("a") + "\n\n<|begin_of_documents|>\nmade up\n<|end_of_documents|>\n\n" + answer("y"), "unnumbered"),
        # a query left open at the limit (c3 > c4)
        (search() + " <|begin_of_query|> second" + answer("y"), "open query"),
        # documents without a query
        (DOCS + answer("y"), "block without query"),
        # a closing tag without its newline pair (c2 != c6)
        (" " + Q.format("a") + "\n\n<|begin_of_documents|>\n(1) T: x\n<|end_of_documents|>" + answer("y"), "no trailing newlines"),
    ],
)
def test_stage1_malformed_searches_get_no_retrieval_reward(completion, why):
    r, info = stage1_reward(completion, ["y"], S1)
    assert info["retrieval"] == 0.0, why
    assert "query/document tag counts differ" in info["reasons"]


@pytest.mark.parametrize(
    "tail",
    [
        " </think> </think>\n\n<answer> a </answer>",  # two </think>
        " <think> again </think>\n\n<answer> a </answer>",  # a <think> (the prompt opened it)
        " </think>\n\n<answer> a </answer> <answer> b </answer>",  # two answers
        " </think>\n\n a",  # no answer tags
        " no think close <answer> a </answer>",
    ],
)
def test_stage1_format_reward_needs_one_think_close_and_one_answer(tail):
    r, info = stage1_reward(search() + tail, ["a"], S1)
    assert info["format"] == 0.0 and r == 0.5


def test_stage1_released_code_answer_term():
    cfg = RewardConfig(stage=1, answer_bonus=True)
    assert stage1_reward(GOOD, ["Maren Oduya"], cfg)[0] == 2.0  # cover-EM +1
    assert stage1_reward(GOOD, ["Kelvara"], cfg)[0] == 0.0  # wrong: −1 + 0.5 + 0.5
    r, info = stage1_reward(search() + " </think> Maren Oduya", ["Maren Oduya"], cfg)
    assert r == -0.5 and info["answer_term"] == -1.0  # no answer tags: −1, retrieval +0.5
    # cover-EM ignores order and extra words
    assert stage1_reward(search() + answer("Oduya, Maren (engineer)"), ["Maren Oduya"], cfg)[1]["answer_term"] == 1.0


# ---------------------------------------------------------------------------------- stage 2
def test_stage2_is_f1_when_well_formed():
    r, info = stage2_reward(GOOD, ["Maren Oduya"], S2)
    assert r == 1.0 and info["f1"] == 1.0 and info["format_penalty"] == 0.0 and info["reasons"] == []
    r, _ = stage2_reward(search() + answer("Maren"), ["Maren Oduya"], S2)
    assert r == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    r, _ = stage2_reward(search() + answer("Kelvara"), ["Maren Oduya", "Kelvara"], S2)  # max over aliases
    assert r == 1.0


def test_stage2_zero_searches_are_allowed():
    r, info = stage2_reward(" I know." + answer("Maren Oduya"), ["Maren Oduya"], S2)
    assert r == 1.0 and info["reasons"] == []


def test_stage2_no_answer_tags_scores_zero_minus_penalty():
    r, info = stage2_reward(search() + " </think> Maren Oduya", ["Maren Oduya"], S2)
    assert r == -2.0 and info["answer"] is None and info["f1"] == 0.0
    assert any("answer tags" in p for p in info["reasons"])


@pytest.mark.parametrize(
    "completion, reason",
    [
        (search() + " <|begin_of_query|> open" + answer("Maren Oduya"), "query/document tag counts differ"),
        (search() + " </think></think>\n\n<answer> Maren Oduya </answer>", "think tags"),
        (search() + " </think>\n\n<answer> <|begin_of_query|> Maren Oduya </answer>", "inside the answer"),
        (search() + answer("Maren Oduya who was an engineer born in Kelvara in Norland long ago"), "longer than 10 words"),
        (search() + " 答案" + answer("Maren Oduya"), "CJK"),
    ],
)
def test_stage2_format_violations_cost_the_penalty(completion, reason):
    r, info = stage2_reward(completion, ["Maren Oduya"], S2)
    assert info["format_penalty"] == 2.0 and any(reason in p for p in info["reasons"]), info["reasons"]
    assert r == pytest.approx(info["f1"] - 2.0)


def test_stage2_cjk_inside_documents_is_fine():
    docs = "\n\n<|begin_of_documents|>\n(1) 北京: the capital.\n<|end_of_documents|>\n\n"
    r, info = stage2_reward(" " + Q.format("capital") + docs + answer("Beijing"), ["Beijing"], S2)
    assert r == 1.0 and info["reasons"] == []


def test_stage2_config_penalty_and_word_limit():
    long_answer = search() + answer("one two three four five six seven eight nine ten eleven Maren Oduya")
    assert stage2_reward(long_answer, ["Maren Oduya"], RewardConfig(format_penalty=1.0))[1]["format_penalty"] == 1.0
    r, info = stage2_reward(long_answer, ["Maren Oduya"], RewardConfig(max_answer_words=0))  # 0 = no limit
    assert info["reasons"] == [] and r == pytest.approx(info["f1"])


def test_stage2_yes_no_rule():
    assert stage2_reward(search() + answer("yes"), ["no"], S2)[0] == 0.0
    assert stage2_reward(search() + answer("True"), ["yes"], S2)[0] == 1.0


def _traj(text: str, stop: str = "answer") -> Trajectory:
    return Trajectory(prompt_ids=[1], response_ids=[5, 6], loss_mask=[1, 1], logprobs=[-1.0, -1.0], text=text, stop_reason=stop)


def test_compute_reward_dispatches_on_stage_and_logs_the_stop_reason():
    r, info = compute_reward(_traj(GOOD), ["Maren Oduya"], S2)
    assert r == 1.0 and info["stage"] == 2 and info["stop_reason"] == "answer"
    r, info = compute_reward(_traj(GOOD), ["Maren Oduya"], S1)
    assert r == 1.0 and info["stage"] == 1
    # a trajectory cut at the search limit: open query, no answer
    r, info = compute_reward(_traj(search() + " <|begin_of_query|> more <|end_of_query|>", "max_searches"), ["x"], S2)
    assert r == -2.0 and info["stop_reason"] == "max_searches"
    with pytest.raises(ValueError, match="stage"):
        compute_reward(_traj(GOOD), ["x"], RewardConfig(stage=3))


# ---------------------------------------------------------------------------------- found bonus (option)
def test_found_bonus_pays_the_search_that_found_the_answer_not_the_guess():
    cfg = RewardConfig(stage=2, found_bonus=0.5)
    wrong_after_finding = " Two hops." + search() + "Hmm." + answer("Veltrix")  # the docs name Maren Oduya
    r, info = stage2_reward(wrong_after_finding, ["Maren Oduya"], cfg)
    assert r == 0.5 and info["found"] == 1.0 and info["f1"] == 0.0
    r, info = stage2_reward(GOOD, ["Maren Oduya"], cfg)
    assert r == 1.5 and info["found"] == 1.0
    r, info = stage2_reward(" I know." + answer("Maren Oduya"), ["Maren Oduya"], cfg)  # named, never retrieved
    assert r == 1.0 and info["found"] == 0.0
    r, info = stage2_reward(search() + " </think> Maren Oduya", ["Maren Oduya"], cfg)  # found, format broken
    assert r == -1.5
    assert stage2_reward(wrong_after_finding, ["Maren Oduya"], S2)[0] == 0.0  # off by default: the paper's
    assert "found" not in stage2_reward(GOOD, ["Maren Oduya"], S2)[1]


def test_answer_found_needs_whole_words_inside_documents():
    from r1searcher.rl.rewards import answer_found

    assert answer_found(search(), ["maren  ODUYA."])  # normalised
    assert not answer_found(search(), ["Oduy"])  # part of a word
    other = " Maren Oduya? " + Q.format("Maren Oduya") + "\n\n<|begin_of_documents|>\n(1) Kelvara.\n<|end_of_documents|>\n\n"
    assert not answer_found(other + answer("Maren Oduya"), ["Maren Oduya"])  # only the policy's own text names it
    assert not answer_found(search(), ["yes", True, ""])  # yes/no appear anywhere: never counted
    unclosed = " " + Q.format("q") + "\n\n<|begin_of_documents|>\n(1) Maren Oduya"
    assert not answer_found(unclosed, ["Maren Oduya"])


def test_answer_in_text_is_the_metrics_rule_for_retrieved_text():
    from r1searcher.eval.metrics import answer_in_text

    assert answer_in_text("(1) Born in Recalethstan, 1944.", "recalethstan")
    assert not answer_in_text("(1) Born in Recalethstan.", ["Recaleth"]) and not answer_in_text("no yes", [False, "yes"])
    assert not answer_in_text("anything", [])
