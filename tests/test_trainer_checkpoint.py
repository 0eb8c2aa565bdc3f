"""Checkpoint round trip (full model and LoRA), atomic rename, keep-last-N, RNG restore."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from r1searcher.rl.checkpoint import load_checkpoint, save_checkpoint
from r1searcher.models.runs import checkpoint_dirs, latest_checkpoint, resolve_model_dir
from tests.conftest import make_tiny_causal_lm


def _optim(model):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return opt, sched


def _train_a_bit(model, opt, sched, steps=2):
    for _ in range(steps):
        ids = torch.randint(0, 100, (2, 6))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()


@pytest.mark.parametrize("lora", [False, True])
def test_round_trip_restores_everything(tmp_path, smollm_tokenizer, lora):
    from r1searcher.models.loading import apply_lora

    def build():
        m = make_tiny_causal_lm(smollm_tokenizer, seed=0, hidden=32)
        return apply_lora(m, r=4, alpha=8) if lora else m

    model = build()
    opt, sched = _optim(model)
    _train_a_bit(model, opt, sched)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path, 2, model=model, optimizer=opt, scheduler=sched, state={"sampler": {"pos": 5}},
                    config_yaml="a: 1\n", tokenizer=smollm_tokenizer, keep_last=2)
    expect_rng = (random.random(), np.random.rand(), torch.rand(1))
    _train_a_bit(model, opt, sched)  # diverge after the save
    after_weights = {k: v.clone() for k, v in model.state_dict().items()}

    fresh = build()
    opt2, sched2 = _optim(fresh)
    state = load_checkpoint(latest_checkpoint(tmp_path), model=fresh, optimizer=opt2, scheduler=sched2)
    assert state["step"] == 2 and state["sampler"] == {"pos": 5}
    assert (random.random(), np.random.rand(), torch.rand(1)) == expect_rng
    assert sched2.last_epoch == 2
    _train_a_bit(fresh, opt2, sched2)  # same updates from the restored state -> identical weights
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, after_weights[k]), k


def test_atomic_and_keep_last(tmp_path, smollm_tokenizer):
    model = make_tiny_causal_lm(smollm_tokenizer, hidden=32)
    opt, sched = _optim(model)
    (tmp_path / "checkpoints" / ".tmp-step_00000009").mkdir(parents=True)  # debris of a killed save
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model=model, optimizer=opt, scheduler=sched, state={}, config_yaml="",
                        keep_last=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_00000002", "step_00000003"]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    # re-saving an existing step replaces it in place
    save_checkpoint(tmp_path, 3, model=model, optimizer=opt, scheduler=sched, state={"x": 1}, config_yaml="",
                    keep_last=2)
    assert resolve_model_dir(tmp_path) == tmp_path / "checkpoints" / "step_00000003" / "model"
    with pytest.raises(FileNotFoundError):
        resolve_model_dir(tmp_path / "nowhere")
