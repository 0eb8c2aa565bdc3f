"""``reward.info_gain``: P(gold | the trajectory before its answer) under the policy, on a tiny real
model and tokenizer, checked against a plain full forward; and in the training loop."""

from __future__ import annotations

import math

import pytest
import torch

from r1searcher.config import ConfigError, load_config
from r1searcher.rl.info_gain import answer_context, gold_probability, scoring_rows
from r1searcher.rollout.trajectory import Trajectory
from tests.conftest import make_tiny_causal_lm


def test_answer_context_cuts_at_the_answer_or_closes_the_thought():
    done = " I search. <|begin_of_query|> x <|end_of_query|>\n\n<|begin_of_documents|>\n(1) d\n<|end_of_documents|>\n\nSo. </think>\n\n<answer> Paris </answer>"
    assert answer_context(done).endswith("So. </think>\n\n<answer>")
    assert "Paris" not in answer_context(done)
    open_think = " I search. <|begin_of_query|> x <|end_of_query|>\n\n<|begin_of_documents|>\n(1) </think> d\n<|end_of_documents|>\n\nSo it is"
    # a </think> inside the documents is not the trajectory's own: it still gets one
    assert answer_context(open_think) == open_think + " </think>\n\n<answer>"
    closed = " Thinking. </think> "
    assert answer_context(closed) == " Thinking. </think>\n\n<answer>"


def _full_forward_prob(model, tok, tr: Trajectory, alias: str) -> float:
    ctx = tok(answer_context(tr.text), add_special_tokens=False).input_ids
    ans = tok(" " + alias, add_special_tokens=False).input_ids
    ids = torch.tensor([list(tr.prompt_ids) + ctx + ans])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    start = len(tr.prompt_ids) + len(ctx)
    return math.exp(sum(float(lp[start + j - 1, a]) for j, a in enumerate(ans)))


def test_gold_probability_is_the_best_alias_probability_of_a_full_forward(smollm_tokenizer, one_thread):
    tok = smollm_tokenizer
    model = make_tiny_causal_lm(tok, seed=3, hidden=64)
    prompt = tok("Question: where was Ada Lovelace born?\n<think>", add_special_tokens=False).input_ids
    texts = [" She was born in London. </think>\n\n<answer> Paris </answer>",
             " <|begin_of_query|> Ada Lovelace <|end_of_query|>\n\n<|begin_of_documents|>\n(1) Ada Lovelace was born in "
             "London.\n<|end_of_documents|>\n\nSo",
             " No idea."]
    trajs = [Trajectory(list(prompt), [5], [1], [0.0], text=t, group=0, sample=i) for i, t in enumerate(texts)]
    answers = [["London", "City of London"]] * 2 + [[" ", ""]]
    p = gold_probability(model, tok, trajs, answers, tok.pad_token_id, micro_batch=2)
    assert p.shape == (3,)
    for i in range(2):
        want = max(_full_forward_prob(model, tok, trajs[i], a) for a in answers[i])
        assert p[i].item() == pytest.approx(want, rel=1e-3)
        assert 0.0 < p[i].item() < 1.0
    assert p[2].item() == 0.0  # no usable alias: nothing scored
    rows, owner = scoring_rows(trajs, answers, tok)
    assert owner == [0, 0, 1, 1] and all(sum(r.loss_mask) >= 1 for r in rows)


def test_info_gain_is_not_negative():
    with pytest.raises(ConfigError, match="info_gain"):
        load_config(None, ["reward.info_gain=-1"])


def test_loop_adds_the_gold_probability_to_the_reward(smollm_tokenizer, tmp_path):
    from tests.test_trainer_loop import _log, _steer, write_tiny_run
    from r1searcher.rl.trainer import train

    (tmp_path / "setup").mkdir()
    d = write_tiny_run(tmp_path / "setup", smollm_tokenizer)
    base = ["train.max_steps=1", "reward.stage=2", "train.log_samples=8"]
    plain = _log(train(load_config(d / "tiny.yaml", base), tmp_path / "plain", steer=_steer(d)))[0]
    rec = _log(train(load_config(d / "tiny.yaml", base + ["reward.info_gain=0.5"]), tmp_path / "gain",
                     steer=_steer(d)))[0]
    assert "reward_gold_prob" not in plain
    stage1 = _log(train(load_config(d / "tiny.yaml", ["train.max_steps=1", "reward.info_gain=0.5"]), tmp_path / "s1",
                        steer=_steer(d)))[0]
    assert "reward_gold_prob" not in stage1  # a stage-2 term, like reward.found_bonus
    assert 0.0 < rec["reward_gold_prob"] < 1.0
    # the same samples (same seed, same weights): the mean reward rises by exactly 0.5 × the mean probability
    assert rec["reward_mean"] == pytest.approx(plain["reward_mean"] + 0.5 * rec["reward_gold_prob"], abs=1e-5)


def test_a_group_spanning_less_than_uniform_tol_is_dropped():
    from r1searcher.rl.trainer import drop_uniform_groups

    trajs = [Trajectory([1], [2], [1], [0.0], group=g) for g in (0, 0, 1, 1, 2, 2)]
    rewards = torch.tensor([0.01, 0.04, 0.0, 0.3, 1.0, 1.0])
    kept, r, dropped = drop_uniform_groups(trajs, rewards)
    assert dropped == 1 and [t.group for t in kept] == [0, 0, 1, 1]
    kept, r, dropped = drop_uniform_groups(trajs, rewards, tol=0.05)
    assert dropped == 2 and [t.group for t in kept] == [1, 1] and r.tolist() == pytest.approx([0.0, 0.3])


def test_uniform_by_answer_drops_the_groups_whose_answers_score_alike():
    """A group whose answers all score F1 0 and differ only by the format penalty (the sample cut at the
    length cap) is dropped under train.uniform_by=answer and kept under the default (its rewards differ)."""
    from r1searcher.config import load_config
    from r1searcher.rl.trainer import drop_for_update, update_signal

    trajs = [Trajectory([1], [2], [1], [0.0], group=g, stop_reason=s)
             for g, s in ((0, "answer"), (0, "length"), (1, "answer"), (1, "answer"))]
    rewards = torch.tensor([0.0, -0.5, 1.0, 0.0])
    parts = [{"f1": 0.0}, {"f1": 0.0}, {"f1": 1.0}, {"f1": 0.0}]
    by_reward = load_config(None, ["train.drop_uniform_groups=true"]).train
    kept, r, dropped, _ = drop_for_update(trajs, rewards, by_reward, update_signal(parts, by_reward, stage=2))
    assert dropped == 0 and len(kept) == 4
    by_answer = load_config(None, ["train.drop_uniform_groups=true", "train.uniform_by=answer"]).train
    signal = update_signal(parts, by_answer, stage=2)
    assert signal.tolist() == [0.0, 0.0, 1.0, 0.0] and update_signal(parts, by_answer, stage=1) is None
    kept, r, dropped, _ = drop_for_update(trajs, rewards, by_answer, signal)
    assert dropped == 1 and [t.group for t in kept] == [1, 1] and r.tolist() == [1.0, 0.0]
    # with drop_truncated the cut sample goes first; the signal follows the samples that stay
    both = load_config(None, ["train.drop_uniform_groups=true", "train.uniform_by=answer", "train.drop_truncated=true"]).train
    kept, r, dropped, cut = drop_for_update(trajs, rewards, both, signal)
    assert (cut, dropped) == (1, 1) and [t.group for t in kept] == [1, 1]
