"""Advantage estimators of the REINFORCE++ family, as OpenRLHF computes them.

Every estimator is a pure function of tensors in *response space* (token ``t`` of row ``b`` is
response token ``t`` of trajectory ``b``; the prompt is not here)::

    rewards   [B]     float  outcome reward of each trajectory (one scalar)
    group     [B]     long   which question a trajectory answers (its n samples share the id)
    valid     [B, T]  bool   not padding: rewards and returns flow along it
    loss_mask [B, T]  bool   sampled by the policy (gets gradient, whitening statistics, KL)
    kl        [B, T]  float  per-token KL estimate (0 at inserted tokens) or None
    -> (advantages [B, T], returns [B, T]), zero on padding

Two masks, never merged early: an inserted document block is ``valid`` but not ``loss``. The
return is accumulated along ``valid`` so the outcome reward reaches every policy token before a
document block; zeroing the return at document tokens first (verl#7278) would drop it.

The reward is placed on the *last policy token* of a trajectory. With γ = 1 its position only
matters for tokens after it, which are inserted tokens (a rollout cut off inside a document
block) and never get gradient.

``allreduce`` (optional, every estimator) sums a 1-D tensor over data-parallel ranks, so batch
whitening uses the statistics of the global batch; groups must not straddle ranks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

AllReduce = Callable[[torch.Tensor], torch.Tensor] | None


# --------------------------------------------------------------------------- building blocks


def group_mean_std(rewards: torch.Tensor, group: torch.Tensor, unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of each trajectory's group, broadcast back to the trajectories.

    rewards [B] float, group [B] long (any ids) -> (mean [B], std [B]). ``unbiased`` uses n − 1
    (torch.std's default, as OpenRLHF/verl); a group of one sample has std 0.
    """
    _, inv = torch.unique(group, return_inverse=True)
    g = int(inv.max()) + 1 if inv.numel() else 0
    count = torch.zeros(g, dtype=rewards.dtype, device=rewards.device).index_add_(0, inv, torch.ones_like(rewards))
    total = torch.zeros(g, dtype=rewards.dtype, device=rewards.device).index_add_(0, inv, rewards)
    mean = (total / count)[inv]
    sq = torch.zeros(g, dtype=rewards.dtype, device=rewards.device).index_add_(0, inv, (rewards - mean) ** 2)
    dof = (count - 1).clamp(min=1) if unbiased else count
    std = torch.where(count[inv] > 1, (sq / dof)[inv].sqrt(), torch.zeros_like(rewards))
    return mean, std


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True of each row; -1 for an all-False row. mask [B, T] -> [B] long."""
    T = mask.shape[1]
    pos = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), pos, -1).max(dim=1).values


def token_rewards(
    rewards: torch.Tensor, valid: torch.Tensor, loss_mask: torch.Tensor, kl: torch.Tensor | None, kl_coef: float
) -> torch.Tensor:
    """Per-token reward: ``−kl_coef · kl_t`` everywhere, plus the outcome reward on the last policy token.

    rewards [B], valid/loss_mask [B, T], kl [B, T] or None -> [B, T] (zero on padding). A row with
    no policy token gets no outcome reward (nothing could be credited with it).
    """
    valid = valid.bool()
    policy = loss_mask.bool() & valid
    out = torch.zeros(valid.shape, dtype=rewards.dtype, device=rewards.device)
    if kl is not None and kl_coef:
        out = out - kl_coef * torch.where(policy, kl.to(rewards.dtype), 0.0)
    last = last_token_index(policy)
    rows = torch.nonzero(last >= 0).squeeze(1)
    out[rows, last[rows]] += rewards[rows]
    return out


def returns_to_go(token_reward: torch.Tensor, valid: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{t' ≥ t, valid} γ^(t'−t) r_t' along each row, zero on padding. [B, T] -> [B, T].

    Accumulated over *valid* tokens, never reset at inserted (loss-mask 0) tokens.
    """
    r = torch.where(valid.bool(), token_reward, 0.0)
    if gamma == 1.0:
        g = r.flip(1).cumsum(1).flip(1)
    else:
        g = torch.zeros_like(r)
        running = torch.zeros_like(r[:, 0])
        for t in range(r.shape[1] - 1, -1, -1):
            running = r[:, t] + gamma * running
            g[:, t] = running
    return torch.where(valid.bool(), g, 0.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, allreduce: AllReduce = None, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std with mean and (biased) variance over ``mask`` tokens only, as OpenRLHF's
    replay-buffer normalisation (variance clamped at ``eps``). x, mask [B, T] -> [B, T]; the
    statistics are summed over ranks with ``allreduce`` when given."""
    m = mask.bool()
    xm = torch.where(m, x, 0.0)
    stats = torch.stack([xm.sum(), m.sum().to(x.dtype)])
    if allreduce is not None:
        stats = allreduce(stats)
    mean = stats[0] / stats[1].clamp(min=1)
    sq = torch.where(m, (x - mean) ** 2, 0.0).sum().reshape(1)
    if allreduce is not None:
        sq = allreduce(sq)
    var = sq[0] / stats[1].clamp(min=1)
    return (x - mean) * var.clamp(min=eps).rsqrt()


# --------------------------------------------------------------------------- estimators


def reinforce_pp_baseline(
    rewards: torch.Tensor,
    group: torch.Tensor,
    valid: torch.Tensor,
    loss_mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    allreduce: AllReduce = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline: r − mean(group r) (no /std), on the last policy token, −β·kl per
    token, γ = 1 returns, then whitening over the policy tokens of the (global) batch.

    Shapes as in the module docstring. Returns (advantages, returns) [B, T], zero on padding.
    """
    mean, _ = group_mean_std(rewards, group)
    ret = returns_to_go(token_rewards(rewards - mean, valid, loss_mask, kl, kl_coef), valid)
    adv = masked_whiten(ret, valid.bool() & loss_mask.bool(), allreduce)
    return torch.where(valid.bool(), adv, 0.0), ret


def reinforce_pp(
    rewards: torch.Tensor,
    group: torch.Tensor,
    valid: torch.Tensor,
    loss_mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    allreduce: AllReduce = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain REINFORCE++: the raw reward (no baseline), −β·kl per token, γ = 1 returns, batch whitening.

    Shapes as in the module docstring; ``group`` is unused (kept for one signature).
    """
    ret = returns_to_go(token_rewards(rewards, valid, loss_mask, kl, kl_coef), valid)
    adv = masked_whiten(ret, valid.bool() & loss_mask.bool(), allreduce)
    return torch.where(valid.bool(), adv, 0.0), ret


def grpo(
    rewards: torch.Tensor,
    group: torch.Tensor,
    valid: torch.Tensor,
    loss_mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    allreduce: AllReduce = None,
    eps: float = 1e-9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO (OpenRLHF ``group_norm``): (r − mean) / (std + 1e-9) within each group (unbiased std),
    on the last policy token, −β·kl per token, γ = 1 returns; no batch whitening.

    Shapes as in the module docstring; ``allreduce`` is unused (groups are rank-local).
    """
    mean, std = group_mean_std(rewards, group)
    ret = returns_to_go(token_rewards((rewards - mean) / (std + eps), valid, loss_mask, kl, kl_coef), valid)
    return ret, ret


# --------------------------------------------------------------------------- registry

ESTIMATORS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {}


def register(name: str, fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    if name in ESTIMATORS:
        raise ValueError(f"advantage estimator {name!r} is already registered")
    ESTIMATORS[name] = fn


def get_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The estimator called ``name``; a ValueError lists the valid names."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown advantage estimator {name!r}; valid: {', '.join(sorted(ESTIMATORS))}") from None


register("reinforce_pp_baseline", reinforce_pp_baseline)
register("reinforce_pp", reinforce_pp)
register("grpo", grpo)


def uniform_groups(rewards: torch.Tensor, group: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
    """True for every trajectory whose group's rewards are all equal (no outcome signal).

    rewards [B], group [B] -> [B] bool. Groups of one sample count as uniform.
    """
    _, inv = torch.unique(group, return_inverse=True)
    g = int(inv.max()) + 1 if inv.numel() else 0
    hi = torch.full((g,), -float("inf"), dtype=rewards.dtype, device=rewards.device).scatter_reduce(0, inv, rewards, "amax")
    lo = torch.full((g,), float("inf"), dtype=rewards.dtype, device=rewards.device).scatter_reduce(0, inv, rewards, "amin")
    return ((hi - lo) <= atol)[inv]
