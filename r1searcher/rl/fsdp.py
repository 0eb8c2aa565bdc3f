"""FSDP sharding of the policy (``train.fsdp=true`` under torchrun): parameters, gradients and
optimizer state split across ranks, with torch's ``fully_shard`` (FSDP2) on each decoder layer and
then on the whole model. Everything FSDP changes in the trainer is here, called through
``rl/parallel.Sharded`` (the wrapper the loop sees):

- **Generation.** Ranks decode different numbers of steps (rows finish at different times), so no
  collective may run inside a decode step. :func:`gathered` all-gathers every layer once, keeps
  the whole weights while the rollout engine decodes (or a no-grad reference pass runs), then
  reshards. Peak memory during rollouts is one full copy of the weights, as with data parallelism;
  gradients and AdamW state (2-3× the weights in fp32) stay sharded.
- **Training.** Every forward all-gathers and every backward reduce-scatters, so all ranks run the
  same number of micro-batches: :func:`zero_loss_passes` pads a rank that has fewer (or none: all
  its groups dropped) with passes whose loss is multiplied by 0. FSDP averages gradients over
  ranks (gloo has no pre-scaled sum); the loss already divides by global token/sequence counts, so
  the trainer multiplies it by the world size (``rl/parallel.Sharded.loss_scale``) to get the sum.
  The shared-prompt forward (``train.share_prompt``) is off for the update: whether a micro-batch
  has a shared prefix depends on its rows, and the prefix pass is one more all-gather per layer.
- **Checkpoints.** :func:`full_state` gathers the whole model and optimizer state to rank 0, so a
  sharded run writes the same files as any other (``save_pretrained``); resuming loads the weights
  before sharding and the optimizer state by parameter name (:func:`load_optimizer`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MethodType

import torch

from r1searcher.rl.logprobs import FORWARD_METHOD, collate, selected_logits, token_logprobs
from r1searcher.rollout.trajectory import Trajectory


def _fsdp_modules(model) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def shard(model):
    """``fully_shard`` every decoder layer, then the root (in place); returns ``model``.

    Works for plain transformers models and PEFT-wrapped (LoRA) ones.
    """
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"train.fsdp: {type(decoder).__name__} has no .layers to shard")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    # The training forward calls the decoder and the lm_head itself (logprobs.selected_logits), not
    # model.forward: register it as a forward method so the root's weights are gathered around it.
    setattr(model, FORWARD_METHOD, MethodType(selected_logits, model))
    register_fsdp_forward_method(model, FORWARD_METHOD)
    return model


@contextmanager
def gathered(model) -> Iterator[None]:
    """Whole weights on every rank for the duration (no collectives per forward); no-op unsharded."""
    mods = _fsdp_modules(model)
    if not mods:
        yield
        return
    for m in mods:
        m.unshard()
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for m in mods:
            m.reshard()
            # the root keeps its weights after forward (they are needed at once in backward)
            m.set_reshard_after_forward(m is not model, recurse=False)


def zero_loss_batch(pad_id: int) -> list[Trajectory]:
    """One 2-token trajectory with one policy token: a forward/backward through every layer whose
    loss is multiplied by 0 keeps a rank in step with ranks that have more micro-batches."""
    return [Trajectory(prompt_ids=[pad_id], response_ids=[pad_id], loss_mask=[1], logprobs=[0.0])]


def zero_loss_passes(model, n: int, pad_id: int, temperature: float) -> None:
    """``n`` forward/backward passes of :func:`zero_loss_batch` (gradients unchanged: the loss is 0)."""
    device = next(model.parameters()).device
    for _ in range(n):
        mb = collate(zero_loss_batch(pad_id), pad_id).to(device)
        logp, _ = token_logprobs(model, mb, temperature, share_prefix=False)
        (logp.sum() * 0.0).backward()


def full_state(model, optimizer) -> tuple[dict, dict]:
    """The whole model and optimizer state dicts on rank 0 (CPU; empty dicts on other ranks).
    Collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def load_optimizer(model, optimizer, path: str | Path) -> None:
    """Restore an optimizer state written from :func:`full_state` into the sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    osd = torch.load(path, map_location="cpu", weights_only=False)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=osd, options=StateDictOptions(full_state_dict=True))


def total_norm(norm) -> float:
    """``clip_grad_norm_``'s result as a float (a DTensor under FSDP)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
