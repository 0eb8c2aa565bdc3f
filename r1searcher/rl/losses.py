"""Policy-gradient loss, KL estimators and masked reductions: pure tensor functions.

Shapes: token tensors are ``[B, T]`` in response space; ``mask`` is the *merged* mask
``valid & loss_mask`` (the only place the two masks meet). Masked positions contribute nothing:
no log-prob, no KL, no statistics, and exactly zero gradient, even when the unmasked inputs hold
garbage there (inputs are replaced with zeros by ``torch.where`` before any non-linearity, so a
``0 · inf`` can never turn into a NaN gradient).
"""

from __future__ import annotations

import torch

LOG_RATIO_CLAMP = 20.0  # exp(±20) stays finite in fp32; a larger log-ratio is a bug upstream anyway


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x over mask. x, mask [B, T] -> scalar, or [B] with dim=1."""
    x = torch.where(mask.bool(), x, 0.0)
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over mask (0 where the mask is empty). x, mask [B, T] -> scalar, or [B] with dim=1."""
    n = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(x, mask, dim) / n.clamp(min=1)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate from the sampled token's log-probs, 0 where masked.

    k1 = log π − log π_ref (unbiased, can be negative); k2 = ½ (log π − log π_ref)²;
    k3 = exp(r) − 1 − r with r = log π_ref − log π (unbiased, ≥ 0; Schulman's estimator).
    logp, ref_logp, mask [B, T] -> [B, T].
    """
    m = mask.bool()
    log_ratio = torch.where(m, logp - ref_logp, 0.0).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    if estimator == "k1":
        kl = log_ratio
    elif estimator == "k2":
        kl = 0.5 * log_ratio**2
    elif estimator == "k3":
        r = -log_ratio
        kl = torch.exp(r) - 1 - r
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}; valid: k1, k2, k3")
    return torch.where(m, kl, 0.0)


def policy_loss_per_token(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, per token: −min(ρ·A, clip(ρ, 1−ε, 1+ε)·A), ρ = exp(logp − old_logp).

    logp (with grad), old_logp, advantages, mask [B, T] -> (loss [B, T], clipped [B, T] bool,
    ratio [B, T]), all zero / False where masked.
    """
    m = mask.bool()
    log_ratio = torch.where(m, logp - old_logp, 0.0).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    adv = torch.where(m, advantages, 0.0)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss = torch.maximum(unclipped, clipped)
    return torch.where(m, loss, 0.0), m & (clipped > unclipped), torch.where(m, ratio, 0.0)


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str = "seq-mean-token-mean", denom: float | None = None) -> torch.Tensor:
    """Reduce a per-token loss [B, T] to a scalar.

    ``seq-mean-token-mean`` (OpenRLHF with micro-batch 1): each sequence's token mean, summed,
    divided by ``denom`` sequences; ``token-mean``: Σ over all masked tokens / ``denom`` tokens.
    ``denom`` defaults to this batch's count; pass the global count (all micro-batches, all ranks)
    so that accumulated micro-batch losses add up to the loss of the whole batch.
    """
    if mode == "seq-mean-token-mean":
        per_seq = masked_mean(loss, mask, dim=1)
        return per_seq.sum() / (denom if denom is not None else max(loss.shape[0], 1))
    if mode == "token-mean":
        return masked_sum(loss, mask) / (denom if denom is not None else mask.bool().sum().clamp(min=1))
    raise ValueError(f"unknown loss aggregation {mode!r}; valid: seq-mean-token-mean, token-mean")


def rl_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    agg: str = "seq-mean-token-mean",
    denom: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of one micro-batch: clipped policy-gradient loss, plus ``kl_coef`` × KL
    to the reference when ``ref_logp`` is given (KL as a loss term, not in the reward).

    The two masks are merged here and only here: ``mask = valid & loss_mask``. All inputs [B, T].
    Returns (scalar loss, detached statistics: sums over masked tokens for exact averaging later).
    """
    mask = valid.bool() & loss_mask.bool()
    pg, clipped, ratio = policy_loss_per_token(logp, old_logp, advantages, mask, clip_eps)
    loss = aggregate(pg, mask, agg, denom)
    stats = {"clipped": clipped.sum().detach().float(), "tokens": mask.sum().detach().float(),
             "ratio": masked_sum(ratio, mask).detach()}
    if ref_logp is not None and kl_coef:
        kl = kl_estimate(logp, ref_logp, mask, kl_estimator)
        loss = loss + kl_coef * aggregate(kl, mask, agg, denom)
        stats["kl_loss"] = masked_sum(kl, mask).detach()
    return loss, stats
