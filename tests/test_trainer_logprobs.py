"""Log-probs at policy positions only: the same numbers as the full-vocabulary computation."""

from __future__ import annotations

import torch

from r1searcher.rl.logprobs import collate, token_logprobs
from r1searcher.rollout.trajectory import Trajectory
from tests.conftest import make_tiny_causal_lm


def test_matches_full_logits_and_skips_inserted(smollm_tokenizer):
    model = make_tiny_causal_lm(smollm_tokenizer, seed=1, hidden=32)
    g = torch.Generator().manual_seed(0)
    trajs = []
    for P, R in [(5, 7), (9, 3), (3, 10)]:
        prompt = torch.randint(0, 5000, (P,), generator=g).tolist()
        resp = torch.randint(0, 5000, (R,), generator=g).tolist()
        mask = [int(x) for x in (torch.rand(R, generator=g) > 0.3).tolist()]
        trajs.append(Trajectory(prompt_ids=prompt, response_ids=resp, loss_mask=mask, logprobs=[]))
    batch = collate(trajs, pad_id=smollm_tokenizer.pad_token_id)
    temp = 0.7
    with torch.no_grad():
        lp, ent = token_logprobs(model, batch, temperature=temp, with_entropy=True)
    assert lp.shape == (3, 10)
    for i, t in enumerate(trajs):
        ids = torch.tensor([t.prompt_ids + t.response_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0] / temp
        P = len(t.prompt_ids)
        full = torch.log_softmax(logits, -1)
        for j, (tok, m) in enumerate(zip(t.response_ids, t.loss_mask)):
            if m:
                torch.testing.assert_close(lp[i, j], full[P + j - 1, tok], rtol=1e-4, atol=1e-5)
                h = -(full[P + j - 1].exp() * full[P + j - 1]).sum()
                torch.testing.assert_close(ent[i, j], h, rtol=1e-4, atol=1e-5)
            else:
                assert lp[i, j] == 0 and ent[i, j] == 0
        assert torch.all(lp[i, len(t.response_ids):] == 0)


def test_differentiable(smollm_tokenizer):
    model = make_tiny_causal_lm(smollm_tokenizer, seed=2, hidden=32)
    t = Trajectory(prompt_ids=[5, 6, 7], response_ids=[8, 9, 10, 11], loss_mask=[1, 0, 0, 1], logprobs=[])
    lp, _ = token_logprobs(model, collate([t], pad_id=0))
    lp.sum().backward()
    assert lp[0, 1] == 0 and lp[0, 2] == 0
    assert all(p.grad is not None for p in model.parameters())
