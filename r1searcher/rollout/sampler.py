"""Next-token sampling with the log-probs the RL update needs.

The recorded log-prob of a token is ``log_softmax(logits / T)[token]`` over the FULL vocabulary,
before top-p truncation (``T = 1`` when greedy). The trainer recomputes log-probs the same way
(``logits / temperature``), so the importance ratio is exactly 1 at the start of an update. Top-p
only decides which token is drawn; it never renormalises what is recorded. ``banned`` tokens
(``rollout.end_at_answer``: the end-of-turn tokens) are never drawn, and likewise leave the recorded
log-probs alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False
    banned: tuple[int, ...] = ()  # token ids never drawn (their probability still counts in the log-probs)

    def __post_init__(self) -> None:
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling (got {self.temperature}); use greedy=True")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def logprob_temperature(self) -> float:
        return 1.0 if self.greedy else self.temperature


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    forced: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of ``logits`` (B, V).

    ``forced`` (B,) long: where ``>= 0``, that token is taken instead of the drawn one (steering for
    tests and benches); its log-prob is still the model's. Returns ``(tokens (B,), logprobs (B,))``.
    """
    logits = logits.float()
    logp = torch.log_softmax(logits / params.logprob_temperature, dim=-1)
    draw_logp = logp
    if params.banned:
        draw_logp = logp.clone()
        draw_logp[:, list(params.banned)] = float("-inf")
    if params.greedy:
        tokens = draw_logp.argmax(dim=-1)
    else:
        probs = draw_logp.exp() if draw_logp is logp else torch.softmax(draw_logp, dim=-1)  # renormalised
        tokens = _draw_nucleus(probs, params.top_p, generator)
    if forced is not None:
        forced = forced.to(tokens.device)
        tokens = torch.where(forced >= 0, forced, tokens)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverse-CDF draw, one uniform per row (cheaper than ``torch.multinomial`` on CPU)."""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


def _draw_nucleus(probs: torch.Tensor, top_p: float, generator: torch.Generator | None, tries: int = 16) -> torch.Tensor:
    """Sample from the top-p nucleus without sorting the vocabulary.

    A token is in the nucleus when the mass of the tokens strictly more probable than it is below
    ``top_p`` (the sort-and-cut definition, up to ties). Drawing from the full distribution and
    redrawing rows whose token falls outside is exact rejection sampling of the renormalised nucleus;
    a row is accepted with probability >= top_p per try. Rows still outside after ``tries`` draws
    (not seen in practice) fall back to sorting.
    """
    tokens = _draw(probs, generator)
    if top_p >= 1.0:
        return tokens
    rows = torch.arange(probs.shape[0], device=probs.device)
    for _ in range(tries):
        p_tok = probs[rows, tokens[rows]].unsqueeze(-1)
        above = torch.where(probs[rows] > p_tok, probs[rows], 0.0).sum(-1)
        rows = rows[above >= top_p]
        if rows.numel() == 0:
            return tokens
        tokens[rows] = _draw(probs[rows], generator)
    sorted_p, sorted_i = probs[rows].sort(dim=-1, descending=True)
    sorted_p = sorted_p.masked_fill((sorted_p.cumsum(-1) - sorted_p) >= top_p, 0.0)
    tokens[rows] = sorted_i.gather(-1, torch.multinomial(sorted_p, 1, generator=generator)).squeeze(-1)
    return tokens
