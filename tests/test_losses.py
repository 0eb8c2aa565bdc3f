"""Clipped policy-gradient loss, KL estimators, masked reductions: hand cases and the property that
masked positions get exactly zero gradient."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from r1searcher.rl.losses import aggregate, kl_estimate, masked_mean, policy_loss_per_token, rl_loss


def test_clipped_loss_hand_computed():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 1.5]]))  # ratios 1.5, 0.5, 1.1, 1.5
    adv = torch.tensor([[1.0, 1.0, -2.0, -1.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss, clipped, ratio = policy_loss_per_token(logp, old, adv, mask, clip_eps=0.2)
    # A>0, ρ=1.5: min(1.5, 1.2)·1 -> loss −1.2 (clipped); A>0, ρ=0.5: min(0.5, 0.8) -> −0.5 (not clipped)
    # A<0, ρ=1.1: min(−2.2, −2.2) -> 2.2; A<0, ρ=1.5: min(−1.5, −1.2) -> 1.5 (not clipped: pessimistic side)
    torch.testing.assert_close(loss, torch.tensor([[-1.2, -0.5, 2.2, 1.5]]))
    assert clipped.tolist() == [[True, False, False, False]]
    torch.testing.assert_close(ratio, torch.tensor([[1.5, 0.5, 1.1, 1.5]]))


def test_kl_estimators_hand_computed():
    logp = torch.tensor([[math.log(0.5), math.log(0.2), 0.0]])
    ref = torch.tensor([[math.log(0.25), math.log(0.4), -5.0]])
    mask = torch.tensor([[True, True, False]])
    d = math.log(2.0)
    torch.testing.assert_close(kl_estimate(logp, ref, mask, "k1"), torch.tensor([[d, -d, 0.0]]))
    torch.testing.assert_close(kl_estimate(logp, ref, mask, "k2"), torch.tensor([[d * d / 2, d * d / 2, 0.0]]))
    # k3 = ρ − 1 − log ρ with ρ = π_ref/π: 0.5 − 1 + ln2, and 2 − 1 − ln2
    torch.testing.assert_close(kl_estimate(logp, ref, mask, "k3"), torch.tensor([[d - 0.5, 1 - d, 0.0]]))
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(logp, ref, mask, "k4")


def test_aggregation_modes():
    loss = torch.tensor([[1.0, 3.0, 100.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(8.0 / 3)
    # a global denominator makes micro-batch losses add up to the whole batch's loss
    parts = [aggregate(loss[i : i + 1], mask[i : i + 1], "token-mean", denom=3) for i in range(2)]
    assert sum(parts).item() == pytest.approx(8.0 / 3)
    assert masked_mean(loss, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(loss, mask, "sum")


def test_on_policy_gradient_is_reinforce():
    """At ρ = 1 the clipped loss's gradient w.r.t. log π is −A / (tokens of the sequence)."""
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    adv = torch.tensor([[2.0, -1.0, 0.5]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    loss_mask = torch.tensor([[True, False, True]])
    loss, stats = rl_loss(logp, logp.detach(), adv, valid, loss_mask)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, 0.0, -0.25]]))
    assert stats["tokens"].item() == 2 and stats["clipped"].item() == 0


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 7),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["seq-mean-token-mean", "token-mean"]),
    st.sampled_from(["k1", "k2", "k3"]),
    st.booleans(),
)
def test_gradient_is_exactly_zero_at_masked_positions(B, T, seed, agg, est, garbage):
    g = torch.Generator().manual_seed(seed)
    V = 11
    logits = (torch.randn(B, T, V, generator=g) * 3).requires_grad_(True)
    tokens = torch.randint(0, V, (B, T), generator=g)
    valid = torch.rand(B, T, generator=g) > 0.2
    loss_mask = (torch.rand(B, T, generator=g) > 0.4) & valid
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    old = logp.detach() + torch.randn(B, T, generator=g) * 0.3
    ref = logp.detach() + torch.randn(B, T, generator=g) * 0.3
    adv = torch.randn(B, T, generator=g)
    if garbage:  # what sits at masked positions must not matter, not even inf/nan
        off = ~(valid & loss_mask)
        old = torch.where(off, torch.full_like(old, -1e30), old)
        ref = torch.where(off, torch.full_like(ref, float("inf")), ref)
        adv = torch.where(off, torch.full_like(adv, float("nan")), adv)
    loss, _ = rl_loss(logp, old, adv, valid, loss_mask, ref_logp=ref, kl_coef=0.1, kl_estimator=est, agg=agg)
    loss.backward()
    off = ~(valid & loss_mask)
    assert torch.isfinite(loss)
    assert torch.all(logits.grad[off] == 0.0)
    assert torch.isfinite(logits.grad).all()
