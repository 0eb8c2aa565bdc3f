"""The int8 decoder (``rollout.sampler_quant=int8``) and the free old log-probs (``train.recompute_old_logprobs`` without a reference model).

Real small parts: a tiny Llama over SmolLM2's tokenizer with LoRA on its top layer, the real
generator and trainer."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from r1searcher.config import RolloutConfig, TrainConfig
from r1searcher.models.loading import apply_lora
from r1searcher.models.quantize import Int8Linear, int8_shadow
from r1searcher.rl.parallel import Parallel
from r1searcher.rl.trainer import batched_logprobs, policy_update
from r1searcher.rollout.generator import HFGenerator
from r1searcher.rollout.trajectory import Trajectory
from r1searcher.settings.fields import ConfigError
from tests.conftest import make_tiny_causal_lm


@pytest.fixture
def lora_model(smollm_tokenizer, one_thread):
    model = apply_lora(make_tiny_causal_lm(smollm_tokenizer, seed=0, layers=2, hidden=64), r=4, alpha=8, layers="top:1")
    for name, p in model.named_parameters():
        if "lora_B" in name:  # LoRA starts at B = 0; make the adapter matter
            torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def test_shadow_shares_weights_and_quantizes_only_frozen_linears(lora_model):
    shadow = int8_shadow(lora_model)
    own = {id(p) for p in lora_model.parameters()}
    shared = [p for p in shadow.parameters() if p.requires_grad]
    assert shared and all(id(p) in own for p in shared)  # the adapters are the policy's own tensors
    n_int8 = sum(isinstance(m, Int8Linear) for m in shadow.modules())
    assert n_int8 == shadow.int8_layers > 0
    assert not any(isinstance(m, Int8Linear) for m in lora_model.modules())  # the policy is untouched
    ids = torch.randint(10, 2000, (3, 12))
    with torch.no_grad():
        ref = lora_model(input_ids=ids).logits.log_softmax(-1)
        q = shadow(input_ids=ids).logits.log_softmax(-1)
        assert (q.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
        assert (ref.exp() * (ref - q)).sum(-1).mean() < 0.01  # KL(policy || int8) per position
        # an optimizer step on the adapter is seen by the shadow with nothing to refresh
        for name, p in lora_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
        ref2 = lora_model(input_ids=ids).logits.log_softmax(-1)
        q2 = shadow(input_ids=ids).logits.log_softmax(-1)
    assert (ref2 - ref).abs().max() > 0.1
    assert (q2 - ref2).abs().mean() < (q - ref2).abs().mean()


def test_shadow_refuses_a_model_off_the_cpu(lora_model):
    with pytest.raises(ValueError, match="runs on the CPU"):
        int8_shadow(copy.deepcopy(lora_model).to("meta"))


def test_generator_decodes_with_the_decoder_and_encodes_chunks_with_the_policy(lora_model):
    shadow = int8_shadow(lora_model)
    calls = {"policy": [], "decoder": []}
    h1 = lora_model.register_forward_pre_hook(lambda m, a, kw: calls["policy"].append(kw["input_ids"].shape[1]),
                                              with_kwargs=True)
    h2 = shadow.register_forward_pre_hook(lambda m, a, kw: calls["decoder"].append(kw["input_ids"].shape[1]),
                                          with_kwargs=True)
    try:
        gen = HFGenerator(lora_model, pad_token_id=0, decoder=shadow)
        state = gen.prefill([[5, 6, 7, 8], [9, 10, 11]])
        gen.feed(state, torch.tensor([12, 13]))  # a decode step
        gen.feed(state, [[14, 15, 16], [17, 18]])  # inserted documents
        gen.feed(state, torch.tensor([19, 20]))
    finally:
        h1.remove()
        h2.remove()
    assert calls["decoder"] == [1, 1]
    assert calls["policy"] and all(t > 1 for t in calls["policy"])


def test_engine_builds_the_int8_decoder_only_when_asked(lora_model, smollm_tokenizer):
    from r1searcher.rollout.engine import RolloutEngine

    plain = RolloutEngine(lora_model, smollm_tokenizer, None, RolloutConfig())
    assert plain.generator.decoder is None
    cfg = RolloutConfig(sampler_quant="int8", temperature=1.0, max_searches=0, max_new_tokens_per_turn=6,
                        max_response_tokens=6, few_shot=False)
    quant = RolloutEngine(lora_model, smollm_tokenizer, None, cfg)
    quant.rollout(["Who wrote it?"], n=2, greedy=True)
    assert quant.generator.decoder is None  # an engine that only evaluates never builds it
    quant.rollout(["Who wrote it?"], n=2, greedy=False, seed=1)
    assert quant.generator.decoder is not None and quant.generator.decoder.int8_layers > 0
    steps = []
    hook = quant.generator.decoder.register_forward_pre_hook(lambda *a: steps.append(1))
    try:
        greedy = quant.rollout(["Who wrote it?"], n=2, greedy=True)
        assert not steps  # evaluation decodes with the policy itself
        sampled = quant.rollout(["Who wrote it?"], n=2, greedy=False, seed=0)
        assert steps  # training samples with the int8 decoder
    finally:
        hook.remove()
    exact = RolloutEngine(lora_model, smollm_tokenizer, None, dataclasses.replace(cfg, sampler_quant="none"))
    ref = exact.rollout(["Who wrote it?"], n=2, greedy=True)
    assert [t.response_ids for t in greedy] == [t.response_ids for t in ref]
    assert [t.logprobs for t in greedy] == [t.logprobs for t in ref]
    assert all(len(t.response_ids) > 0 and len(t.logprobs) == len(t.response_ids) for t in sampled)


def test_int8_on_a_gpu_is_a_config_error():
    from r1searcher.config import Config, derive

    with pytest.raises(ConfigError, match="rollout.sampler_quant"):
        derive(Config(), {"rollout.sampler_quant": "int8", "model.device": "cuda"})


def _batch(g: torch.Generator) -> tuple[list[Trajectory], torch.Tensor]:
    """2 questions × 3 samples, the sampler's log-probs made up (as an int8 sampler's would differ)."""
    trajs = []
    for q in range(2):
        prompt = torch.randint(10, 2000, (6,), generator=g).tolist()
        for s in range(3):
            n = int(torch.randint(4, 9, (1,), generator=g))
            resp = torch.randint(10, 2000, (n,), generator=g).tolist()
            mask = [1, 1] + [0] * 2 + [1] * (n - 4) if s == 1 else [1] * n
            lps = [(-float(torch.rand(1, generator=g)) * 3 if m else 0.0) for m in mask]
            trajs.append(Trajectory(prompt_ids=prompt, response_ids=resp, loss_mask=mask, logprobs=lps, group=q, sample=s))
    return trajs, torch.randn(len(trajs), generator=g)


def test_free_old_logprobs_equal_the_extra_forward(lora_model):
    """recompute_old_logprobs without a reference: the update equals the one whose old log-probs
    came from a separate no-grad forward of the same weights (and differs from the sampler's)."""
    trajs, rewards = _batch(torch.Generator().manual_seed(0))
    par = Parallel.start("cpu")
    T = max(len(t.response_ids) for t in trajs)
    recomputed = batched_logprobs(lora_model, trajs, 0, 0.7, 3, T)
    as_sampled = [copy.deepcopy(t) for t in trajs]
    for i, t in enumerate(as_sampled):  # the trajectories as if the sampler had been exact
        t.logprobs = [float(recomputed[i, j]) if m else 0.0 for j, m in enumerate(t.loss_mask)]
    deltas = {}
    for name, batch, recompute in (("free", trajs, True), ("exact_sampler", as_sampled, False),
                                   ("mismatched_sampler", trajs, False)):
        model = copy.deepcopy(lora_model)
        params = [p for p in model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        opt = torch.optim.SGD(params, lr=1.0)
        t = TrainConfig(micro_batch_size=3, algo="grpo", clip_eps=0.2, recompute_old_logprobs=recompute)
        policy_update(model, opt, batch, rewards, t, pad_id=0, temperature=0.7, par=par)
        deltas[name] = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before)])
    assert deltas["free"].abs().max() > 0
    torch.testing.assert_close(deltas["free"], deltas["exact_sampler"], rtol=1e-4, atol=1e-6)
    assert (deltas["free"] - deltas["mismatched_sampler"]).abs().max() > 1e-4
