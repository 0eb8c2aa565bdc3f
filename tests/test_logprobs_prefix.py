"""The shared-prefix training forward equals the plain forward: log-probs, entropies and gradients
(full model and LoRA), for rows that share an instruction, share a whole prompt, or share nothing."""

import pytest
import torch

from r1searcher.rl.logprobs import collate, shared_prefix_len, token_logprobs
from r1searcher.rollout.trajectory import Trajectory
from tests.conftest import make_tiny_causal_lm


def _trajs(vocab: int, seed: int, shared: int) -> list[Trajectory]:
    g = torch.Generator().manual_seed(seed)
    instr = torch.randint(5, vocab, (shared,), generator=g).tolist()
    out = []
    for q in range(3):  # three questions × two samples, prompts of different lengths
        question = torch.randint(5, vocab, (3 + 2 * q,), generator=g).tolist()
        for s in range(2):
            R = 4 + 3 * q + s
            resp = torch.randint(5, vocab, (R,), generator=g).tolist()
            mask = [1] * R
            mask[2:4] = [0, 0]  # an inserted "document"
            out.append(Trajectory(instr + question, resp, mask, [], group=q, sample=s))
    return out


def test_shared_prefix_len_stops_at_first_difference_and_padding():
    ids = torch.tensor([[1, 2, 3, 4, 0], [1, 2, 3, 5, 6], [1, 2, 3, 4, 6]])
    attn = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert shared_prefix_len(ids, attn) == 3
    same = torch.tensor([[1, 2, 3], [1, 2, 3]])
    assert shared_prefix_len(same, torch.ones_like(same)) == 2  # one column left for the per-row pass
    attn2 = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert shared_prefix_len(same, attn2) == 2


@pytest.mark.parametrize("shared", [0, 24])
@pytest.mark.parametrize("lora", [False, True])
def test_prefix_forward_matches_plain_forward(smollm_tokenizer, one_thread, shared, lora):
    model = make_tiny_causal_lm(smollm_tokenizer, layers=3)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.train()
    batch = collate(_trajs(len(smollm_tokenizer), 0, shared), pad_id=smollm_tokenizer.pad_token_id)
    params = [p for p in model.parameters() if p.requires_grad]

    results = []
    for share in (False, True):
        model.zero_grad()
        lp, ent = token_logprobs(model, batch, temperature=0.9, with_entropy=True, share_prefix=share)
        (lp.sum() * 0.37).backward()
        results.append((lp.detach(), ent, [p.grad.clone() for p in params]))
    (lp0, e0, g0), (lp1, e1, g1) = results
    assert lp0.abs().sum() > 0
    torch.testing.assert_close(lp1, lp0, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(e1, e0, atol=2e-5, rtol=1e-4)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)
    # masked positions stay exactly zero
    assert (lp1[~(batch.valid & batch.loss_mask)] == 0).all()


def test_prefix_forward_is_used_and_cheaper(smollm_tokenizer, one_thread):
    """The decoder sees the shared prefix once: count the tokens each layer-0 call receives."""
    model = make_tiny_causal_lm(smollm_tokenizer, layers=2)
    batch = collate(_trajs(len(smollm_tokenizer), 1, 40), pad_id=smollm_tokenizer.pad_token_id)
    seen = []
    h = model.model.layers[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0] * i[0].shape[1]))
    with torch.no_grad():
        token_logprobs(model, batch, share_prefix=False)
        plain = sum(seen)
        seen.clear()
        token_logprobs(model, batch, share_prefix=True)
        shared = sum(seen)
    h.remove()
    B, L = batch.input_ids.shape
    assert plain == B * L
    real = int(batch.attention_mask.sum())
    assert shared == 40 + real - B * 40  # on a CPU: the prefix once, each row at its own length (no padding)
    assert shared < 40 + B * (L - 40)  # the batched remainder would also run the padding


@pytest.mark.parametrize("shared", [0, 24])
def test_unpadded_and_batched_remainders_agree_with_the_plain_forward(smollm_tokenizer, one_thread, shared):
    from r1searcher.rl.logprobs import decoder_hidden

    model = make_tiny_causal_lm(smollm_tokenizer, layers=2)
    batch = collate(_trajs(len(smollm_tokenizer), 2, shared), pad_id=smollm_tokenizer.pad_token_id)
    dec, ids, attn = model.get_decoder(), batch.input_ids, batch.attention_mask
    with torch.no_grad():
        plain = dec(input_ids=ids, attention_mask=attn).last_hidden_state
        real = attn.bool()
        for unpadded in (False, True):
            h = decoder_hidden(dec, ids, attn, min_shared=8, unpadded=unpadded)
            assert h.shape == plain.shape
            torch.testing.assert_close(h[real], plain[real], atol=2e-5, rtol=1e-4)
        assert (decoder_hidden(dec, ids, attn, min_shared=8, unpadded=True)[~real] == 0).all()
