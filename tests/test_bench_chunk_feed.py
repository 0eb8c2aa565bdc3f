"""bench chunk_feed: its two paths run the same rollout, and the old path is put back afterwards."""

from __future__ import annotations

import torch

from r1searcher.benchmarks import chunk_feed
from r1searcher.config import RetrievalConfig, RolloutConfig
from r1searcher.rollout import generator as G
from tests.conftest import make_tiny_causal_lm


def test_projection_paths_and_rollout_phases(smollm_tokenizer, one_thread):
    head = torch.nn.Linear(16, 40, bias=False)
    p = chunk_feed.projection_seconds(head, rows=3, T=5, repeats=1)
    assert set(p) == {"strided", "gathered"} and all(v > 0 for v in p.values())

    model = make_tiny_causal_lm(smollm_tokenizer, seed=3)
    cfg = RolloutConfig(temperature=1.0, n_samples=2, max_searches=0, max_new_tokens_per_turn=5,
                        max_response_tokens=5, few_shot=False)
    runs = [chunk_feed.rollout_seconds(model, smollm_tokenizer, None, ["Who wrote it?"], cfg, RetrievalConfig(),
                                       seed=0, strided=s) for s in (True, False)]
    assert G.last_position(3, "cpu").tolist() == [2]  # the current path is back
    for r in runs:
        assert r["chunk_tokens"] > 0 and r["policy_tokens"] > 0 and r["chunk_s"] > 0 and r["decode_s"] > 0
    # fp32: both paths compute the same logits, so the same seed draws the same tokens
    assert runs[0]["policy_tokens"] == runs[1]["policy_tokens"]
