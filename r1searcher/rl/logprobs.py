"""Per-token log-probs of Trajectories under a model, computed only where they are needed.

A batch of trajectories becomes right-padded ``prompt + response`` rows. The model's decoder runs
over every token, but the vocabulary projection (49k × hidden for SmolLM2: the memory hog, 0.4 GB
of fp32 logits per 2k tokens) is applied only to the hidden states that predict a *selected*
response token (by default: the policy tokens). Log-probs use the same temperature as the
sampler, ``log_softmax(logits / T)[token]`` over the full vocabulary, so on-policy the ratio
against the sampler's recorded log-probs starts at 1.

Shared prefix: the rows of a micro-batch usually begin with the same tokens (the instruction and
worked example; within a GRPO group, the whole prompt). That prefix is encoded once, its keys and
values expanded to every row, and only the rest runs per row (:func:`decoder_hidden`). Gradients flow
through the shared keys and values, so the result is the same as the full forward, up to float
rounding (``tests/test_logprobs_prefix.py``); on CPU it saves most of the training forward's cost.

Response space: column ``t`` of a ``[B, T]`` tensor is response token ``t`` (left-aligned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from r1searcher.rollout.generator import cache_from, cache_kwarg
from r1searcher.rollout.trajectory import Trajectory


@dataclass
class Batch:
    """Tensors of a list of trajectories (B rows, L = longest prompt + response, T = longest response)."""

    input_ids: torch.Tensor  # [B, L] long, prompt then response, right-padded with pad_id
    attention_mask: torch.Tensor  # [B, L] long
    prompt_lens: torch.Tensor  # [B] long
    tokens: torch.Tensor  # [B, T] long, response tokens (pad after the end)
    valid: torch.Tensor  # [B, T] bool, a real response token (not padding)
    loss_mask: torch.Tensor  # [B, T] bool, sampled by the policy (documents: False)
    old_logp: torch.Tensor  # [B, T] float, the sampler's log-probs (0 where not recorded)

    def to(self, device) -> Batch:
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(trajs: Sequence[Trajectory], pad_id: int, T: int | None = None) -> Batch:
    """Trajectories -> :class:`Batch`. ``T`` pads the response space to a fixed width (≥ longest)."""
    B = len(trajs)
    T = max([len(t.response_ids) for t in trajs] + [T or 0, 1])
    L = max([len(t.prompt_ids) + len(t.response_ids) for t in trajs] + [1])
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros(B, L, dtype=torch.long)
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    loss = torch.zeros(B, T, dtype=torch.bool)
    old = torch.zeros(B, T, dtype=torch.float32)
    for i, t in enumerate(trajs):
        P, R = len(t.prompt_ids), len(t.response_ids)
        input_ids[i, : P + R] = torch.tensor(list(t.prompt_ids) + list(t.response_ids), dtype=torch.long)
        attn[i, : P + R] = 1
        if R:
            tokens[i, :R] = torch.tensor(t.response_ids, dtype=torch.long)
            valid[i, :R] = True
            loss[i, :R] = torch.tensor(t.loss_mask, dtype=torch.bool)
            if t.logprobs:
                old[i, :R] = torch.tensor(t.logprobs, dtype=torch.float32)
    prompt_lens = torch.tensor([len(t.prompt_ids) for t in trajs], dtype=torch.long)
    return Batch(input_ids, attn, prompt_lens, tokens, valid, loss, old)


def _unwrap(model):
    return getattr(model, "module", model)


def shared_prefix_len(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """Length of the token prefix common to every row of ``input_ids`` [B, L] and unpadded in all of
    them, capped at L − 1 (at least one column is left for the per-row pass)."""
    same = (input_ids == input_ids[:1]).all(0) & attention_mask.bool().all(0)  # [L]
    n = int(same.long().cumprod(0).sum())
    return min(n, input_ids.shape[1] - 1)


def decoder_hidden(decoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, min_shared: int = 16,
                   unpadded: bool = False) -> torch.Tensor:
    """Last hidden states ``[B, L, H]`` of ``decoder`` over right-padded rows, encoding the prefix
    the rows share once (``min_shared`` ≤ its length, B > 1), the remainder per row on its cache.

    ``unpadded``: the remainder runs row by row at its own length instead of as one ``[B, L − n]``
    batch, so no compute is spent on padding (hidden states there are 0). Group members differ in
    length by up to the response limit (a GRPO group of 8 at the demo's limits: about half of a
    padded batch is padding), and on a CPU a row of a few hundred tokens already fills the
    matrix units, so this is the faster path there; a GPU prefers the one batched call."""
    B, L = input_ids.shape
    n = shared_prefix_len(input_ids, attention_mask) if B > 1 else 0
    if getattr(decoder, "gradient_checkpointing", False) or (n < max(min_shared, 1) and not unpadded):
        return decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    from transformers import DynamicCache

    cache_kw = cache_kwarg(decoder)
    if n < max(min_shared, 1):
        n = 0
    pre = None
    if n:
        pre_cache = DynamicCache(config=decoder.config)
        pre = decoder(input_ids=input_ids[:1, :n], attention_mask=attention_mask[:1, :n], use_cache=True,
                      **{cache_kw: pre_cache}).last_hidden_state  # [1, n, H]
        kvs = [(layer.keys, layer.values) for layer in pre_cache.layers]
    if not unpadded:
        # expanded views: the gradients of the B rows sum back into the one prefix
        cache = cache_from(decoder.config, [(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in kvs])
        pos = torch.arange(n, L, device=input_ids.device).unsqueeze(0).expand(B, -1)
        rest = decoder(input_ids=input_ids[:, n:], attention_mask=attention_mask, position_ids=pos, use_cache=True,
                       **{cache_kw: cache}).last_hidden_state  # [B, L - n, H]
        return torch.cat([pre.expand(B, -1, -1), rest], dim=1)
    rows = []
    lengths = attention_mask.sum(1).tolist()
    for i, length in enumerate(int(x) for x in lengths):
        h = None
        if length > n:
            kw = {}
            if n:  # a fresh cache object per row over the shared prefix tensors (updates concatenate, never write)
                kw = {cache_kw: cache_from(decoder.config, kvs), "use_cache": True}
            pos = torch.arange(n, length, device=input_ids.device).unsqueeze(0)
            h = decoder(input_ids=input_ids[i : i + 1, n:length], attention_mask=attention_mask[i : i + 1, :length],
                        position_ids=pos, **kw).last_hidden_state[0]  # [length - n, H]
        parts = [pre[0]] if pre is not None else []
        if h is not None:
            parts.append(h)
        if not parts:  # an empty row (no tokens at all): only padding
            p0 = next(decoder.parameters())
            parts = [torch.zeros(0, decoder.config.hidden_size, dtype=p0.dtype, device=p0.device)]
        row = torch.cat(parts, 0)
        rows.append(torch.nn.functional.pad(row, (0, 0, 0, L - row.shape[0])))  # zeros at padding
    return torch.stack(rows)


#: name under which rl/fsdp.py registers :func:`selected_logits` as a forward method of a sharded model
FORWARD_METHOD = "r1_selected_logits"


def selected_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                    src: torch.Tensor, share_prefix: bool = True) -> torch.Tensor:
    """Logits ``[N, V]`` of the hidden states at ``(rows[i], src[i])`` of right-padded ``input_ids``
    ``[B, L]``: the decoder over every token, the vocabulary projection only where selected."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    if share_prefix:  # on a CPU also unpadded: rows at their own lengths (see decoder_hidden)
        hidden = decoder_hidden(decoder, input_ids, attention_mask, unpadded=input_ids.device.type == "cpu")  # [B, L, H]
    else:
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return head(hidden[rows, src])


def token_logprobs(
    model, batch: Batch, temperature: float = 1.0, select: torch.Tensor | None = None, with_entropy: bool = False,
    share_prefix: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the response tokens, ``[B, T]`` (0 where not selected), and optionally the
    entropy of the (temperature-scaled) next-token distribution there, ``[B, T]`` (no grad).

    ``select`` [B, T] bool picks the positions to project (default: ``valid & loss_mask``).
    ``share_prefix``: encode the rows' common prefix once (:func:`decoder_hidden`).
    Differentiable when called with grad enabled.
    """
    m = _unwrap(model)
    select = (batch.valid & batch.loss_mask) if select is None else select.bool()
    rows, cols = torch.nonzero(select, as_tuple=True)  # response token cols of rows
    src = batch.prompt_lens.to(rows.device)[rows] + cols - 1  # the hidden state that predicts it
    # a sharded model (rl/fsdp.py) runs this as one of its forward methods, so its weights are gathered
    compute = getattr(m, FORWARD_METHOD, None) or partial(selected_logits, m)
    logits = compute(batch.input_ids, batch.attention_mask, rows, src, share_prefix).float() / temperature  # [N, V]
    logz = torch.logsumexp(logits, dim=-1)
    target = batch.tokens[rows, cols]
    lp = logits.gather(-1, target[:, None]).squeeze(-1) - logz
    out = torch.zeros(select.shape, dtype=lp.dtype, device=lp.device).index_put((rows, cols), lp)
    ent = None
    if with_entropy:
        with torch.no_grad():
            p = torch.softmax(logits, -1)
            h = logz - (p * logits).sum(-1)
            ent = torch.zeros(select.shape, dtype=h.dtype, device=h.device).index_put((rows, cols), h)
    return out, ent


def micro_batches(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


@torch.no_grad()
def batched_logprobs(
    model, trajs: list[Trajectory], pad_id: int, temperature: float, size: int, T: int, share_prefix: bool = True
) -> torch.Tensor:
    """No-grad log-probs of all trajectories at policy tokens, ``[B, T]``."""
    out = torch.zeros(len(trajs), T)
    device = next(model.parameters()).device
    for rows in micro_batches(len(trajs), size):
        mb = collate([trajs[i] for i in rows], pad_id).to(device)
        lp, _ = token_logprobs(model, mb, temperature, share_prefix=share_prefix)
        out[rows, : lp.shape[1]] = lp.float().cpu()
    return out
