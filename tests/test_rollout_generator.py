"""HFGenerator's cache bookkeeping against fresh forward passes of the same tokens."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_causal_lm
from r1searcher.rollout.generator import HFGenerator
from r1searcher.rollout.sampler import SamplingParams, sample_next


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(smollm_tokenizer):
    return make_tiny_causal_lm(smollm_tokenizer, seed=1)


def _last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def _check(model, state, seqs: list[list[int]]) -> None:
    for row, ids in enumerate(seqs):
        assert torch.allclose(state.logits[row], _last_logits(model, ids), atol=1e-4), f"row {row}"


def test_prefill_shared_prefix_select_concat_feed(model):
    gen = HFGenerator(model, pad_token_id=2)
    prefix = list(range(100, 120))
    prompts = [prefix + [5, 6, 7], prefix + [8], prefix + [9, 10]]
    state = gen.prefill(prompts, repeats=2)
    seqs = [p for p in prompts for _ in range(2)]
    assert state.batch_size == 6
    _check(model, state, seqs)

    # split the batch three ways, grow the parts differently, merge back, feed uneven chunks
    a, b = gen.select(state, [0, 3]), gen.select(state, [5, 1, 2])
    seq_a, seq_b = [seqs[0], seqs[3]], [seqs[5], seqs[1], seqs[2]]
    for step in range(3):
        gen.feed(a, torch.tensor([40 + step, 50 + step]))
        seq_a = [s + [t] for s, t in zip(seq_a, [40 + step, 50 + step])]
    _check(model, a, seq_a)
    merged = gen.concat([a, b])
    gen.feed(merged, [[1], [2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13], [14]])
    seqs2 = [s + c for s, c in zip(seq_a + seq_b, [[1], [2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13], [14]])]
    _check(model, merged, seqs2)
    # rows are packed right: padding only on the left, no column that is padding everywhere
    lens = merged.mask.sum(1)
    assert merged.n_columns == int(lens.max())
    for row in range(merged.batch_size):
        assert merged.mask[row, merged.n_columns - int(lens[row]) :].all()
    assert merged.next_pos.tolist() == [len(s) for s in seqs2]
    # dropping the longest row trims the columns nobody needs any more
    longest = int(lens.argmax())
    kept = [r for r in range(5) if r != longest]
    small = gen.select(merged, kept)
    assert small.n_columns == int(small.mask.sum(1).max()) < merged.n_columns
    gen.feed(small, torch.tensor([77] * 4))
    _check(model, small, [seqs2[r] + [77] for r in kept])


def test_prefix_sharing_matches_separate_prefill(model):
    prompts = [list(range(200, 240)) + [i] * (i + 1) for i in range(3)]
    shared = HFGenerator(model, share_prefix=True).prefill(prompts)
    separate = HFGenerator(model, share_prefix=False).prefill(prompts)
    assert torch.allclose(shared.logits, separate.logits, atol=1e-4)


def test_vocabulary_projection_gets_contiguous_rows(model):
    """Every feed hands the lm_head contiguous rows (one position each): a strided [B, 1, H] view
    makes torch's CPU bf16 linear copy the whole projection once per row (300x slower, measured)."""
    seen = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda mod, args, out: seen.append((tuple(args[0].shape), args[0].is_contiguous())))
    try:
        gen = HFGenerator(model, pad_token_id=2, share_prefix=False)
        state = gen.prefill([[5, 6, 7, 8], [9, 10]])
        gen.feed(state, [[11, 12, 13], [14]])
        gen.feed(state, torch.tensor([15, 16]))
    finally:
        hook.remove()
    assert seen == [((2, 1, model.config.hidden_size), True)] * 3
    _check(model, state, [[5, 6, 7, 8, 11, 12, 13, 15], [9, 10, 14, 16]])


def test_feed_rejects_empty_chunks(model):
    gen = HFGenerator(model)
    state = gen.prefill([[1, 2, 3], [4, 5]])
    with pytest.raises(ValueError, match="at least one token"):
        gen.feed(state, [[1], []])


def test_top_p_draws_stay_in_the_nucleus_and_logprobs_are_full_distribution():
    torch.manual_seed(0)
    logits = torch.randn(64, 500) * 3
    params = SamplingParams(temperature=0.8, top_p=0.5)
    toks, lps = sample_next(logits, params, torch.Generator().manual_seed(0))
    probs = torch.softmax(logits / 0.8, -1)
    for row in range(64):
        p = probs[row, toks[row]]
        assert probs[row][probs[row] > p].sum() < 0.5  # inside the nucleus
    assert torch.allclose(lps, torch.log_softmax(logits / 0.8, -1).gather(-1, toks[:, None]).squeeze(-1))
    forced = torch.full((64,), -1)
    forced[3] = 7
    toks2, lps2 = sample_next(logits, params, torch.Generator().manual_seed(0), forced)
    assert toks2[3] == 7 and lps2[3] == torch.log_softmax(logits[3] / 0.8, -1)[7]
    with pytest.raises(ValueError):
        SamplingParams(temperature=0.0)


def test_banned_tokens_are_never_drawn_and_logprobs_stay_the_full_distribution():
    torch.manual_seed(1)
    logits = torch.randn(256, 50)
    logits[:, 3] = 8.0  # the end-of-turn token, by far the likeliest
    full = torch.log_softmax(logits / 0.9, -1)
    for greedy in (False, True):
        params = SamplingParams(temperature=0.9, top_p=0.95, greedy=greedy, banned=(3, 4))
        toks, lps = sample_next(logits, params, torch.Generator().manual_seed(0))
        assert not ((toks == 3) | (toks == 4)).any()
        ref = full if not greedy else torch.log_softmax(logits, -1)
        assert torch.allclose(lps, ref.gather(-1, toks[:, None]).squeeze(-1))
    # without the ban the same rows draw token 3 nearly always
    toks, _ = sample_next(logits, SamplingParams(temperature=0.9, top_p=0.95), torch.Generator().manual_seed(0))
    assert (toks == 3).float().mean() > 0.9


def test_nucleus_sampling_frequencies():
    """Rejection sampling gives the renormalised nucleus distribution."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20000, 1)
    toks, _ = sample_next(logits, SamplingParams(top_p=0.75), torch.Generator().manual_seed(1))
    freq = torch.bincount(toks, minlength=4).float() / len(toks)
    assert freq[2:].sum() == 0  # 0.5 + 0.3 reach 0.75: the rest is cut
    assert abs(freq[0].item() - 0.625) < 0.02 and abs(freq[1].item() - 0.375) < 0.02
