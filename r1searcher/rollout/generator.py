"""The model-specific half of the rollout: a KV cache over a batch of rows.

The engine (``engine.py``) owns the loop and every decision (stops, retrieval, masks); a
:class:`Generator` only turns token ids into next-token distributions and keeps the cache. Another
backend (vLLM, llama.cpp, …) implements the same five methods.

:class:`HFGenerator` keeps a transformers ``DynamicCache``. Rows have different lengths, so the
cache is a rectangle with padding columns that the attention mask hides::

    columns →     0   1   2   3   4   5   6   7
    row 0  mask   0   0   1   1   1   1   1   1     (6 real tokens, 2 pads on the left)
    row 1  mask   1   1   1   1   1   1   1   1
    next_pos      row 0: 6, row 1: 8               (RoPE positions count real tokens only)

Keys are rotated by their own position ids, not by their column, so columns may be moved freely:
after every operation that could leave padding in the middle (a padded chunk, a merge of batches
paused at different steps) the rows are re-packed to the right, so a row never carries more than
``max_len - own_len`` padding columns. Selecting rows (dropping finished ones) trims columns that
became padding for every row.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from r1searcher.rollout.sampler import SamplingParams, sample_next


class Generator(Protocol):
    """Batched incremental decoding. A state holds B rows, each with its cache and the
    distribution of its next token; rows are addressed by their index in the state."""

    def prefill(self, prompts: Sequence[Sequence[int]], repeats: int = 1) -> Any:
        """Encode ``prompts``; return a state with ``len(prompts) * repeats`` rows, prompt i's copies
        at rows ``[i*repeats, (i+1)*repeats)`` (each prompt encoded once)."""

    def sample(
        self, state: Any, params: SamplingParams, generator: torch.Generator | None, forced: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw each row's next token: ``(tokens (B,), logprobs (B,))`` (see ``sampler.sample_next``).
        Drawing does not add the token to the cache; :meth:`feed` does."""

    def feed(self, state: Any, chunks: Sequence[Sequence[int]] | torch.Tensor) -> None:
        """Append one non-empty chunk of tokens to every row (a (B,) tensor: one token each) and
        compute the next-token distribution after it."""

    def select(self, state: Any, rows: Sequence[int]) -> Any:
        """A state with only ``rows`` (in that order)."""

    def concat(self, states: Sequence[Any]) -> Any:
        """One state with the rows of ``states`` in order."""


@dataclass
class KVState:
    """B rows: cache (layers of (B, heads, L, head_dim)), mask (B, L), positions, next logits."""

    cache: Any
    mask: torch.Tensor  # (B, L) long: 1 real column, 0 padding
    next_pos: torch.Tensor  # (B,) long: position id of each row's next token
    logits: torch.Tensor | None  # (B, V) float32: next-token logits (None before any feed)

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self.mask.shape[1])


def _layers(cache) -> list:
    return list(cache.layers)


def _kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_kwarg(module) -> str:
    """The name ``module.forward`` takes its KV cache under: transformers 5.x renamed
    ``past_key_values`` → ``cache``; PEFT wrappers take ``**kwargs``."""
    params = inspect.signature(module.forward).parameters
    return "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"


def cache_from(config, kvs: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """A ``DynamicCache`` holding the given per-layer (keys, values), which it uses as they are
    (views stay views: expanded tensors share storage, and gradients flow back through them)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    for layer, (k, v) in zip(cache.layers, kvs):
        layer.lazy_initialization(k, v)
        layer.keys, layer.values = k, v
    return cache


def last_position(T: int, device) -> int | torch.Tensor:
    """``logits_to_keep`` for a chunk of ``T`` tokens per row: its last position only.

    For ``T > 1`` an index tensor, not the int 1: transformers slices ``hidden[:, -1:, :]`` for an
    int, a strided ``[B, 1, H]`` view, and torch's CPU linear on a strided 3-D bf16 input copies the
    whole vocabulary projection once per row (measured, Qwen-0.5B, 16 rows: 10.2 s against 0.03 s for
    the gathered, contiguous rows an index tensor gives; fp32 0.39 s against 0.12). Every prompt and
    inserted document went through that path (BENCHMARKS.md, "A chunk's last position").
    """
    return 1 if T == 1 else torch.tensor([T - 1], device=device)


class HFGenerator:
    """:class:`Generator` over any transformers causal LM (``model(input_ids, attention_mask,
    position_ids, cache, logits_to_keep=1)``).

    ``share_prefix``: in :meth:`prefill`, the longest token prefix common to all prompts (the
    instruction and worked example) is encoded once and its cache shared by every row.

    ``decoder``: a module with the same cache layout that runs the one-token decode steps (the int8
    shadow of ``models/quantize.py``); chunks of several tokens (prompts, documents) still go
    through ``model``; ``use_decoder = False`` sends every step through ``model``.
    """

    def __init__(self, model, pad_token_id: int = 0, share_prefix: bool = True, min_shared_prefix: int = 8,
                 decoder=None):
        self.model = model
        self.decoder = decoder
        self.use_decoder = True
        self.pad_token_id = int(pad_token_id)
        self.share_prefix = share_prefix
        self.min_shared_prefix = min_shared_prefix
        self.device = next(model.parameters()).device
        self._cache_kw = cache_kwarg(model)
        self.forward_calls = 0
        self.fed_tokens = 0  # real (non-padding) tokens encoded, for benchmarks

    # ------------------------------------------------------------------ state construction
    def _empty(self, batch: int) -> KVState:
        from transformers import DynamicCache

        return KVState(
            cache=DynamicCache(config=self.model.config),
            mask=torch.zeros(batch, 0, dtype=torch.long, device=self.device),
            next_pos=torch.zeros(batch, dtype=torch.long, device=self.device),
            logits=None,
        )

    def prefill(self, prompts: Sequence[Sequence[int]], repeats: int = 1) -> KVState:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prefill needs at least one prompt and no empty prompt")
        shared = self._common_prefix(prompts) if self.share_prefix and len(prompts) > 1 else 0
        if shared >= self.min_shared_prefix:
            state = self._empty(1)
            self.feed(state, [list(prompts[0][:shared])])
            state = self._expand(state, len(prompts))
            self.feed(state, [list(p[shared:]) for p in prompts])
        else:
            state = self._empty(len(prompts))
            self.feed(state, [list(p) for p in prompts])
        if repeats > 1:
            state = self._repeat(state, repeats)
        return state

    @staticmethod
    def _common_prefix(prompts: Sequence[Sequence[int]]) -> int:
        """Longest common token prefix, leaving at least one token of each prompt to encode."""
        first = prompts[0]
        n = min(len(p) for p in prompts) - 1
        for i in range(n):
            t = first[i]
            if any(p[i] != t for p in prompts):
                return i
        return max(n, 0)

    # ------------------------------------------------------------------ decoding
    def sample(self, state, params, generator=None, forced=None):
        if state.logits is None:
            raise RuntimeError("sample() before any token was fed")
        return sample_next(state.logits, params, generator, forced)

    @torch.inference_mode()
    def feed(self, state: KVState, chunks) -> None:
        B = state.batch_size
        if isinstance(chunks, torch.Tensor):  # one token per row: the decode step, no padding
            ids = chunks.to(self.device).view(B, 1)
            lens = torch.ones(B, dtype=torch.long, device=self.device)
            chunk_mask = torch.ones(B, 1, dtype=torch.long, device=self.device)
            T = 1
        else:
            if len(chunks) != B:
                raise ValueError(f"feed got {len(chunks)} chunks for {B} rows")
            lengths = [len(c) for c in chunks]
            if min(lengths) == 0:
                raise ValueError("every row needs at least one token to feed (its next distribution comes from it)")
            T = max(lengths)
            ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
            chunk_mask = torch.zeros(B, T, dtype=torch.long)
            for b, c in enumerate(chunks):  # left-pad inside the chunk: every row ends at the last column
                ids[b, T - len(c) :] = torch.as_tensor(list(c), dtype=torch.long)
                chunk_mask[b, T - len(c) :] = 1
            ids, chunk_mask = ids.to(self.device), chunk_mask.to(self.device)
            lens = torch.as_tensor(lengths, dtype=torch.long, device=self.device)
        offsets = torch.arange(T, device=self.device).unsqueeze(0) - (T - lens).unsqueeze(1)
        position_ids = (state.next_pos.unsqueeze(1) + offsets).clamp(min=0)
        attention_mask = torch.cat([state.mask, chunk_mask], dim=1)
        net = self.decoder if T == 1 and self.decoder is not None and self.use_decoder else self.model
        out = net(
            input_ids=ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=last_position(T, self.device),
            **{self._cache_kw: state.cache},
        )
        self.forward_calls += 1
        self.fed_tokens += int(lens.sum())
        state.mask = attention_mask
        state.next_pos = state.next_pos + lens
        state.logits = out.logits[:, -1, :].float()
        if T > 1 and bool((lens < T).any()):
            self._pack(state)

    # ------------------------------------------------------------------ row bookkeeping
    # These build new caches and leave their inputs intact (a state may be split several ways).
    def _cache_from(self, kvs: list[tuple[torch.Tensor, torch.Tensor]]):
        return cache_from(self.model.config, kvs)

    def select(self, state: KVState, rows: Sequence[int]) -> KVState:
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        new = KVState(
            cache=self._cache_from([(k.index_select(0, idx), v.index_select(0, idx)) for k, v in _kv(state.cache)]),
            mask=state.mask.index_select(0, idx),
            next_pos=state.next_pos.index_select(0, idx),
            logits=None if state.logits is None else state.logits.index_select(0, idx),
        )
        self._trim(new)
        return new

    def concat(self, states: Sequence[KVState]) -> KVState:
        states = [s for s in states if s.batch_size > 0]
        if not states:
            raise ValueError("concat needs at least one non-empty state")
        if len(states) == 1:
            return states[0]
        L = max(s.n_columns for s in states)
        pad = torch.nn.functional.pad
        per_state = [_kv(s.cache) for s in states]
        kvs = []
        for li in range(len(per_state[0])):
            ks = [pad(kv[li][0], (0, 0, L - kv[li][0].shape[2], 0)) for kv in per_state]  # left-pad columns
            vs = [pad(kv[li][1], (0, 0, L - kv[li][1].shape[2], 0)) for kv in per_state]
            kvs.append((torch.cat(ks, 0), torch.cat(vs, 0)))
        logits = None if any(s.logits is None for s in states) else torch.cat([s.logits for s in states], 0)
        return KVState(
            self._cache_from(kvs),
            torch.cat([pad(s.mask, (L - s.n_columns, 0)) for s in states], 0),
            torch.cat([s.next_pos for s in states], 0),
            logits,
        )

    def _expand(self, state: KVState, batch: int) -> KVState:
        """One row → ``batch`` identical rows, as views (the next feed materialises them)."""
        return KVState(
            self._cache_from([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in _kv(state.cache)]),
            state.mask.expand(batch, -1).contiguous(),
            state.next_pos.expand(batch).contiguous(),
            None if state.logits is None else state.logits.expand(batch, -1).contiguous(),
        )

    def _repeat(self, state: KVState, repeats: int) -> KVState:
        r = repeats
        return KVState(
            self._cache_from([(k.repeat_interleave(r, 0), v.repeat_interleave(r, 0)) for k, v in _kv(state.cache)]),
            state.mask.repeat_interleave(r, dim=0),
            state.next_pos.repeat_interleave(r, dim=0),
            None if state.logits is None else state.logits.repeat_interleave(r, dim=0),
        )

    def _trim(self, state: KVState) -> None:
        """Drop leading columns that are padding in every row (rows are packed to the right)."""
        if state.n_columns == 0 or state.batch_size == 0:
            return
        keep = int(state.mask.sum(1).max())
        cut = state.n_columns - keep
        if cut <= 0:
            return
        for layer in _layers(state.cache):
            layer.keys = layer.keys[:, :, cut:, :]
            layer.values = layer.values[:, :, cut:, :]
        state.mask = state.mask[:, cut:]

    def _pack(self, state: KVState) -> None:
        """Move each row's real columns to the right end (order kept), padding to the left."""
        mask = state.mask
        lens = mask.sum(1)
        L = int(lens.max())
        # Stable sort of the 0/1 mask puts a row's padding columns first, its real columns after, in order.
        order = torch.sort(mask, dim=1, stable=True).indices[:, mask.shape[1] - L :]
        for layer in _layers(state.cache):
            B, H, _, D = layer.keys.shape
            idx = order.view(B, 1, L, 1).expand(B, H, L, D)
            layer.keys = layer.keys.gather(2, idx)
            layer.values = layer.values.gather(2, idx)
        cols = torch.arange(L, device=mask.device).unsqueeze(0)
        state.mask = (cols >= (L - lens).unsqueeze(1)).long()
