"""Advantage estimators: hand-computed cases, a plain-loop reference, and the document-block
invariance that verl#7278 broke."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from r1searcher.rl.advantages import (
    ESTIMATORS,
    get_estimator,
    group_mean_std,
    grpo,
    masked_whiten,
    reinforce_pp,
    reinforce_pp_baseline,
    returns_to_go,
    uniform_groups,
)

F64 = torch.float64


# --------------------------------------------------------------------------- plain-loop reference


def reference(name, rewards, group, valid, loss, kl, kl_coef):
    """The estimators written as loops over Python floats, straight from notes §3."""
    B, T = len(rewards), len(valid[0])
    groups = {}
    for i, g in enumerate(group):
        groups.setdefault(g, []).append(rewards[i])
    r = []
    for i in range(B):
        vals = groups[group[i]]
        mean = sum(vals) / len(vals)
        if name == "reinforce_pp_baseline":
            r.append(rewards[i] - mean)
        elif name == "grpo":
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            r.append((rewards[i] - mean) / (std + 1e-9))
        else:
            r.append(rewards[i])
    returns = [[0.0] * T for _ in range(B)]
    for i in range(B):
        last = max([t for t in range(T) if valid[i][t] and loss[i][t]], default=-1)
        running = 0.0
        for t in reversed(range(T)):
            if not valid[i][t]:
                continue  # padding: no reward, return stays 0 there
            rew = -kl_coef * kl[i][t] if loss[i][t] else 0.0
            if t == last:
                rew += r[i]
            running += rew  # gamma = 1, never reset at inserted tokens
            returns[i][t] = running
    if name == "grpo":
        return returns
    toks = [returns[i][t] for i in range(B) for t in range(T) if valid[i][t] and loss[i][t]]
    mean = sum(toks) / max(len(toks), 1)
    var = sum((x - mean) ** 2 for x in toks) / max(len(toks), 1)
    rstd = 1.0 / math.sqrt(max(var, 1e-8))
    return [[(returns[i][t] - mean) * rstd if valid[i][t] else 0.0 for t in range(T)] for i in range(B)]


@st.composite
def batches(draw):
    n = draw(st.integers(1, 4))
    n_groups = draw(st.integers(1, 3))
    B = n * n_groups
    T = draw(st.integers(1, 9))
    group = [g for g in range(n_groups) for _ in range(n)]
    perm = draw(st.permutations(list(range(B))))
    group = [group[p] * 7 + 3 for p in perm]  # arbitrary, unsorted ids
    rewards = [draw(st.sampled_from([-2.0, -1.0, 0.0, 0.25, 0.5, 1.0])) for _ in range(B)]
    lengths = [draw(st.integers(0, T)) for _ in range(B)]
    valid = [[t < lengths[i] for t in range(T)] for i in range(B)]
    loss = [[draw(st.booleans()) and valid[i][t] for t in range(T)] for i in range(B)]
    kl = [[draw(st.floats(-1, 1)) for _ in range(T)] for _ in range(B)]
    return rewards, group, valid, loss, kl


@settings(max_examples=150, deadline=None)
@given(batches(), st.sampled_from(sorted(ESTIMATORS)), st.sampled_from([0.0, 0.1]))
def test_vectorised_matches_loop(batch, name, kl_coef):
    rewards, group, valid, loss, kl = batch
    adv, _ = get_estimator(name)(
        torch.tensor(rewards, dtype=F64), torch.tensor(group), torch.tensor(valid), torch.tensor(loss),
        torch.tensor(kl, dtype=F64), kl_coef,
    )
    ref = torch.tensor(reference(name, rewards, group, valid, loss, kl, kl_coef), dtype=F64)
    torch.testing.assert_close(adv, ref, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- hand-computed cases


def test_returns_hand_computed():
    r = torch.tensor([[0.0, 1.0, 0.0, 2.0, 5.0]])
    valid = torch.tensor([[True, True, True, True, False]])
    assert returns_to_go(r, valid).tolist() == [[3.0, 3.0, 2.0, 2.0, 0.0]]
    assert returns_to_go(r, valid, gamma=0.5).tolist() == [[0.75, 1.5, 1.0, 2.0, 0.0]]


def test_reinforce_pp_baseline_hand_computed():
    # two samples of one question, rewards 1 and 0 -> group-centred +0.5 / -0.5 on every token
    rewards = torch.tensor([1.0, 0.0])
    valid = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    adv, ret = reinforce_pp_baseline(rewards, torch.tensor([0, 0]), valid, valid)
    assert ret.tolist() == [[0.5, 0.5, 0.5], [-0.5, -0.5, 0.0]]
    # whitening over 5 tokens: mean 0.1, biased var 0.24
    m, s = 0.1, math.sqrt(0.24)
    expect = [[(0.5 - m) / s] * 3, [(-0.5 - m) / s] * 2 + [0.0]]
    torch.testing.assert_close(adv, torch.tensor(expect))


def test_grpo_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5])
    group = torch.tensor([0, 0, 1, 1])
    valid = torch.ones(4, 2, dtype=torch.bool)
    adv, _ = grpo(rewards, group, valid, valid)
    s = math.sqrt(0.5)  # unbiased std of {1, 0}
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.5 / s, -0.5 / s, 0.0, 0.0]), rtol=1e-6, atol=1e-6)
    assert torch.equal(adv[:, 0], adv[:, 1])


def test_kl_folded_into_reward_hand_computed():
    rewards = torch.tensor([1.0])
    valid = torch.ones(1, 3, dtype=torch.bool)
    loss = torch.tensor([[True, False, True]])
    kl = torch.tensor([[0.2, 9.0, 0.4]])  # 9.0 sits on an inserted token: ignored
    _, ret = reinforce_pp(rewards, torch.tensor([0]), valid, loss, kl, kl_coef=0.5)
    torch.testing.assert_close(ret, torch.tensor([[1.0 - 0.1 - 0.2, 1.0 - 0.2, 1.0 - 0.2]]))


def test_group_mean_std_and_singletons():
    mean, std = group_mean_std(torch.tensor([1.0, 3.0, 7.0]), torch.tensor([5, 5, 2]))
    assert mean.tolist() == [2.0, 2.0, 7.0]
    torch.testing.assert_close(std, torch.tensor([math.sqrt(2.0), math.sqrt(2.0), 0.0]))


def test_whiten_ignores_unmasked_values():
    x = torch.tensor([[1.0, 1e9, 3.0]])
    m = torch.tensor([[True, False, True]])
    out = masked_whiten(x, m)
    torch.testing.assert_close(out[m], torch.tensor([-1.0, 1.0]))


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", ["reinforce_pp_baseline", "grpo"])
def test_all_equal_rewards_give_zero_advantage(name):
    rewards = torch.tensor([0.5, 0.5, 0.5, -2.0, -2.0, -2.0])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    valid = torch.ones(6, 4, dtype=torch.bool)
    loss = torch.rand(6, 4) > 0.3
    adv, _ = get_estimator(name)(rewards, group, valid, loss)
    assert torch.count_nonzero(adv) == 0
    assert uniform_groups(rewards, group).all()
    assert not uniform_groups(torch.tensor([0.5, 0.5, 1.0]), torch.tensor([0, 0, 0])).any()


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(ESTIMATORS)),
    st.integers(1, 6),  # policy tokens before the block
    st.integers(1, 6),  # policy tokens after it
    st.integers(1, 8),  # inserted tokens
    st.integers(0, 2**31 - 1),
)
def test_document_block_leaves_policy_advantages_unchanged(name, before, after, doc, seed):
    """The verl#7278 test: the same trajectory with and without a document block in the middle."""
    g = torch.Generator().manual_seed(seed)
    B, n = 4, 2
    rewards = torch.randn(B, generator=g)
    group = torch.tensor([0, 0, 1, 1])
    kl = torch.randn(B, before + after, generator=g) * 0.1
    L = before + after
    valid = torch.ones(B, L, dtype=torch.bool)
    plain, _ = get_estimator(name)(rewards, group, valid, valid, kl, 0.05)

    # row 0 gets an inserted block (valid, loss 0, arbitrary KL that must be ignored)
    ins = lambda x, fill: torch.cat([x[:, :before], fill, x[:, before:]], 1)  # noqa: E731
    valid2 = torch.ones(B, L + doc, dtype=torch.bool)
    loss2 = valid2.clone()
    loss2[0, before : before + doc] = False
    kl2 = ins(kl, torch.randn(B, doc, generator=g))
    kl2[1:, before : before + doc] = 0
    # rows 1.. get the same number of padding tokens at the end, so the shapes agree
    kl2[1:] = torch.cat([kl[1:], torch.zeros(B - 1, doc)], 1)
    valid2[1:, L:] = False
    loss2[1:, L:] = False
    with_doc, _ = get_estimator(name)(rewards, group, valid2, loss2, kl2, 0.05)

    pol0 = loss2[0]
    torch.testing.assert_close(with_doc[0][pol0], plain[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_doc[1:, :L], plain[1:], rtol=1e-5, atol=1e-6)


def test_verl_bug_would_fail_this_check():
    """Sanity of the test above: resetting the return at inserted tokens changes the advantage
    of the tokens before the block, which is exactly what the invariance test catches."""
    r = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    loss = torch.tensor([[True, False, True, True]])
    ours = returns_to_go(r, torch.ones_like(loss))
    buggy, running = torch.zeros_like(r), torch.zeros(1)
    for t in reversed(range(r.shape[1])):  # verl b178a3c core_algos.py 612-613
        running = r[:, t] + running
        buggy[:, t] = running
        running = running * loss[:, t]
    assert ours[0, 0] == 1.0 and buggy[0, 0] == 0.0


def test_registry_error_lists_valid_names():
    with pytest.raises(ValueError, match="grpo.*reinforce_pp.*reinforce_pp_baseline"):
        get_estimator("ppo")
