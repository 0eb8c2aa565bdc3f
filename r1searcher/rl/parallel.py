"""One parallelism wrapper for the training loop: one process, replicas, or FSDP shards.

The loop and the policy update call the same methods whatever the layout, so they read the same
for all three; what differs lives here (and in ``rl/distributed.py`` / ``rl/fsdp.py`` below it):

    kind     the model                      gradients                     checkpoint
    none     whole, one process             as computed                   the model's own state
    ddp      whole on every rank            summed by all-reduce          rank 0 writes its copy
    fsdp     sharded over ranks (FSDP2)     summed in the reduce-scatter  gathered to rank 0 first

``Parallel.start(device, fsdp)`` joins the process group (under torchrun) and returns
:class:`Parallel` (none / ddp) or :class:`Sharded` (fsdp with more than one rank). Every collective
method must be called on every rank; with one process they are identities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import torch

from r1searcher.rl import distributed as D
from r1searcher.rl import fsdp as fsdp_shards

T = TypeVar("T")


class Parallel:
    """One process, or data-parallel replicas under torchrun: every rank holds the whole model and
    gradients are summed with explicit all-reduces (``rl/distributed.py`` says why not DDP's wrapper)."""

    sharded = False

    def __init__(self, dist: D.Dist | None = None):
        self.dist = dist or D.Dist()

    @staticmethod
    def start(device: str = "auto", fsdp: bool = False) -> "Parallel":
        """Join the process group when launched by torchrun (else one process) and pick the layout."""
        dist = D.init(device)
        if fsdp and dist.world_size > 1:
            return Sharded(dist)
        par = Parallel(dist)
        if fsdp:
            par.say("train.fsdp: one process, nothing to shard (launch with torchrun --nproc_per_node N)")
        return par

    # ------------------------------------------------------------------ who am I
    @property
    def kind(self) -> str:
        return "ddp" if self.dist.world_size > 1 else "none"

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def say(self, message: str) -> None:
        """Print ``message`` once (on rank 0)."""
        if self.is_main:
            print(message, flush=True)

    # ------------------------------------------------------------------ the model
    def wrap(self, model):
        """The model as the loop uses it (sharded in place under FSDP); call after loading its weights."""
        return model

    def gathered(self, model) -> AbstractContextManager:
        """Whole weights on every rank for the duration (rollouts, no-grad passes)."""
        return nullcontext()

    def share_prompt(self, wanted: bool) -> bool:
        """Whether the update's forward may share a group's prompt (``train.share_prompt``)."""
        return wanted

    @property
    def loss_scale(self) -> float:
        """What each micro-batch's loss is multiplied by before backward, so that gradients are sums."""
        return 1.0

    def pad_passes(self, model, n_micro_batches: int, pad_id: int, temperature: float) -> None:
        """Zero-loss forward/backward passes so that every rank runs as many as the busiest one."""

    def sync_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum every gradient over ranks (a rank with no backward pass contributes zeros)."""
        D.sum_gradients(params)

    def clip_gradients(self, params: Sequence[torch.nn.Parameter], max_norm: float) -> float:
        """Clip the summed gradients to ``max_norm`` (≤ 0: no clipping); their total norm before it."""
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
        return fsdp_shards.total_norm(norm)  # identical on every rank (gradients were summed first)

    # ------------------------------------------------------------------ checkpoints
    def full_state(self, model, optimizer) -> tuple[dict | None, dict | None]:
        """Model and optimizer state dicts to save, gathered where they are sharded (None: their own)."""
        return None, None

    def load_optimizer(self, model, optimizer, path: str | Path) -> None:
        """Restore the optimizer state a checkpoint saved (``optimizer.pt``)."""
        from r1searcher.rl.checkpoint import load_optimizer_state

        load_optimizer_state(optimizer, Path(path))

    # ------------------------------------------------------------------ collectives
    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous share of ``items`` (the same list on every rank)."""
        return D.shard(items, self.rank, self.world_size)

    def reduce(self, sums: dict[str, float]) -> dict[str, float]:
        """Sum dictionaries of numbers over ranks (keys may differ between ranks)."""
        return D.gather_sums(sums)

    def reduce_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over ranks (a copy)."""
        return D.all_reduce_sum(x)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        return D.any_rank(flag)

    def on_main(self, what: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` on rank 0 (None elsewhere), as a section every rank leaves together:
        if it fails there, every rank raises (``distributed.all_or_none``), none is left waiting."""
        with D.all_or_none(what):
            return fn(*args, **kwargs) if self.is_main else None

    def agree(self, error: BaseException | None) -> None:
        """Raise on every rank when ``error`` is set on any (``distributed.agree``)."""
        D.agree(error)

    def barrier(self) -> None:
        D.barrier()


class Sharded(Parallel):
    """FSDP over two or more ranks (``train.fsdp=true`` under torchrun); ``rl/fsdp.py`` explains each part."""

    sharded = True

    @property
    def kind(self) -> str:
        return "fsdp"

    def wrap(self, model):
        return fsdp_shards.shard(model)

    def gathered(self, model) -> AbstractContextManager:
        return fsdp_shards.gathered(model)

    def share_prompt(self, wanted: bool) -> bool:
        # whether a micro-batch shares a prefix depends on its rows, and the prefix pass is one more
        # all-gather per layer, so ranks could disagree on the number of collectives: off
        return False

    @property
    def loss_scale(self) -> float:
        return float(self.world_size)  # FSDP's reduce-scatter averages; the loss is a share of the sum

    def pad_passes(self, model, n_micro_batches: int, pad_id: int, temperature: float) -> None:
        busiest = int(D.all_reduce_max(torch.tensor([float(n_micro_batches)])).item())
        fsdp_shards.zero_loss_passes(model, busiest - n_micro_batches, pad_id, temperature)

    def sync_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        pass  # FSDP summed them in its reduce-scatter

    def full_state(self, model, optimizer) -> tuple[dict | None, dict | None]:
        return fsdp_shards.full_state(model, optimizer)

    def load_optimizer(self, model, optimizer, path: str | Path) -> None:
        fsdp_shards.load_optimizer(model, optimizer, path)
