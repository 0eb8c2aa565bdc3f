"""An int8 decoder for a CPU policy: the same model, its frozen linear layers in int8.

On a CPU, a decode step is matrix products with few rows (a batch of 32 multiplies ``[32, 896]``
by ``[896, 4864]`` and so on), bound by multiply-add throughput. ``torch``'s dynamic int8 linear
(fbgemm: int8 weights per output channel, the activation quantized per call) does those products
2.6-3x faster than fp32 on 2 cores, AVX2 or AVX512, and 1.5x faster than native bf16
(BENCHMARKS.md, "An int8 decoder").

:func:`int8_shadow` builds a second module tree over the policy that **shares every parameter and
buffer** with it (no copy of the weights) and replaces only the *frozen* ``nn.Linear`` layers by
int8 ones: the LoRA adapters (trainable) stay the policy's own tensors, so each optimizer step is
seen by the next rollout with nothing to refresh. Frozen weights never change, so they are
quantized once. A fully trained layer (no LoRA) stays as it is in the shadow too.

Where it is used (``rollout.sampler_quant=int8``): the generator decodes one token per row with
the shadow and encodes prompts and inserted documents (chunks of several tokens) with the policy
itself. A long prefill is where int8 loses most (the activation's one scale per call is set by a
few outlier channels over hundreds of positions): measured on Qwen2.5-0.5B, the shadow's own
400-token prefill is KL 0.27 from fp32, its decode steps over an fp32 cache KL 0.02.

The sampler's log-probs are then those of the int8 decoder. ``train.recompute_old_logprobs=true``
takes the PPO ratio's old log-probs from the training forward instead (free without a reference
model, see ``rl/trainer.py``), so the ratio starts at 1 and the sampler's rounding only shifts
which samples are drawn.
"""

from __future__ import annotations

import copy
import warnings

import torch

__all__ = ["Int8Linear", "int8_shadow"]


def _frozen_linears(model: torch.nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` modules whose weight is frozen (exact class: LoRA's own A/B
    layers are trainable, peft's wrapped layers are not ``nn.Linear``)."""
    return [name for name, m in model.named_modules()
            if type(m) is torch.nn.Linear and not m.weight.requires_grad]


class Int8Linear(torch.nn.Module):
    """``y = W x + b`` with ``W`` in int8 per output channel and ``x`` quantized per call; the
    input and output keep the caller's dtype (the int8 kernel reads and writes fp32)."""

    def __init__(self, lin: torch.nn.Linear):
        from torch.ao.nn.quantized.dynamic import Linear as QLinear

        super().__init__()
        float_lin = torch.nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
        float_lin.weight = torch.nn.Parameter(lin.weight.detach().float(), requires_grad=False)
        if lin.bias is not None:
            float_lin.bias = torch.nn.Parameter(lin.bias.detach().float(), requires_grad=False)
        float_lin.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's notice that eager quantization moves to torchao
            self.q = QLinear.from_float(float_lin)
        self.in_features, self.out_features = lin.in_features, lin.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x.float()).to(x.dtype)


def int8_shadow(model: torch.nn.Module) -> torch.nn.Module:
    """A decoding copy of ``model`` (on the CPU): shared parameters and buffers, frozen linears in
    int8. Raises ``ValueError`` for a model that is not on the CPU (the int8 kernels are CPU ones)."""
    dev = next(model.parameters()).device
    if dev.type != "cpu":
        raise ValueError(f"rollout.sampler_quant=int8 runs on the CPU; the policy is on {dev}")
    names = _frozen_linears(model)
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    shadow = copy.deepcopy(model, memo)  # new modules, the same tensors
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = shadow.get_submodule(parent_name) if parent_name else shadow
        setattr(parent, child, Int8Linear(getattr(parent, child)))
    shadow.eval()
    shadow.int8_layers = len(names)
    return shadow
