"""Data parallelism at the edges of the loop: process group, sharding, gradient and stats reduction.
The loop reaches these through the parallelism wrapper (``rl/parallel.py``).

The same script runs alone or under ``torchrun`` / ``accelerate launch`` (both set RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): gloo on CPU, nccl on GPU. Every rank holds a full
replica; the step's questions are split across ranks (a question's n samples stay on one rank,
so group baselines are local); advantage whitening and logged statistics are reduced over ranks.

Gradients are summed with explicit all-reduces after the micro-batches, not by wrapping the model
in ``DistributedDataParallel``: in RL the number of micro-batches differs between ranks (groups
dropped, different lengths), and DDP's wrapper needs every rank to run the same number of backward
passes. Each rank's loss is already its share of the global loss (global denominators), so the sum
over ranks is the gradient of the whole batch, the same as one process computing it alone.

Failures: a section where only some ranks can fail (rank 0 writing a checkpoint or the log) is
wrapped in :class:`all_or_none`, which ends with a collective where every rank says whether it
failed; if any did, every rank raises (the failing one its own error, the others a
:class:`PeerError` naming it). Without that, the other ranks learn of it only when their next
collective breaks: with gloo as a bare "connection closed by peer", with NCCL not at all until the
process group's timeout (tens of minutes) unless a launcher kills them.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from r1searcher.util.errors import describe_error


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun/accelerate (WORLD_SIZE > 1); else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local)  # so that device "cuda" means this rank's GPU
    else:  # share the CPU cores between the local ranks instead of oversubscribing them
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local)


def shutdown() -> None:
    """Leave the process group. What only a reference cycle keeps alive is freed first: an FSDP model
    (its hooks and state point at each other) outlives ``train()`` until the garbage collector runs, and
    freed at interpreter exit, after the group is gone and a peer may have left, its shards' teardown
    could abort the process in gloo's threads ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Contiguous share of ``items`` for ``rank`` (sizes differ by at most one)."""
    n = len(items)
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    return list(items[lo:hi])


def _all_reduce(t: torch.Tensor, op) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()):
        return t
    out = t.clone()
    dist.all_reduce(out, op=op)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; identity when not distributed)."""
    return _all_reduce(t, dist.ReduceOp.SUM)


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Element-wise max over ranks (a copy; identity when not distributed)."""
    return _all_reduce(t, dist.ReduceOp.MAX)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def sum_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over ranks, in one flat buffer per dtype/device.

    A rank that did no backward pass (all its groups dropped) contributes zeros.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    buckets: dict[tuple, list[torch.nn.Parameter]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in buckets.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def gather_sums(stats: dict[str, float]) -> dict[str, float]:
    """Sum dictionaries of numbers over ranks (keys may differ between ranks)."""
    if not (dist.is_available() and dist.is_initialized()):
        return dict(stats)
    everyone: list[dict[str, float]] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(everyone, stats)
    out: dict[str, float] = {}
    for d in everyone:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + v
    return out


class PeerError(RuntimeError):
    """Another rank failed in a section every rank had to finish; the message names it and its error."""


def agree(error: BaseException | None, what: str = "") -> None:
    """Collective: raise on every rank if ``error`` is set on any.

    The failing rank re-raises ``error``; the others raise :class:`PeerError` with the failing
    rank's one-line message. Every rank must call it (one ``all_gather_object`` of a short string);
    alone, it just raises ``error``.
    """
    failed = _failures(error)
    if error is not None:
        raise error
    _raise_peer(failed, what)


class all_or_none:
    """``with all_or_none("saving checkpoint step 3"):`` a section without collectives inside, that
    some ranks may fail; on leaving it every rank raises if any failed (:func:`agree`).

    KeyboardInterrupt and other non-``Exception`` errors skip the collective (the process is going away).
    """

    def __init__(self, what: str = ""):
        self.what = what

    def __enter__(self) -> "all_or_none":
        return self

    def __exit__(self, typ, exc, tb) -> bool:
        if exc is not None and not isinstance(exc, Exception):
            return False
        failed = _failures(exc)
        if exc is None:
            _raise_peer(failed, self.what)
        return False  # this rank's own error propagates unchanged


def _failures(error: BaseException | None) -> list[tuple[int, str]]:
    """(rank, one-line message) of every rank whose ``error`` is set; a collective when distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return [] if error is None else [(0, describe_error(error))]
    everyone: list[str | None] = [None] * dist.get_world_size()
    try:
        dist.all_gather_object(everyone, None if error is None else describe_error(error))
    except Exception:
        # a peer that learned of the failure may exit before this rank has read its last bytes (the
        # connection is reset under them): this rank's own error is still the cause to report
        if error is not None:
            return [(dist.get_rank(), describe_error(error))]
        raise
    return [(r, m) for r, m in enumerate(everyone) if m is not None]


def _raise_peer(failed: list[tuple[int, str]], what: str) -> None:
    if failed:
        rank, msg = failed[0]
        raise PeerError(f"{what + ': ' if what else ''}rank {rank} failed: {msg}")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (ranks time themselves; stopping must agree)."""
    return bool(all_reduce_sum(torch.tensor([float(flag)])).item() > 0)
