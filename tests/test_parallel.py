"""The parallelism wrapper (``rl/parallel.py``): one process, replicas (DDP) and FSDP shards behind
the same methods. Alone its collectives are identities; under torchrun (2 processes, gloo on CPU)
they sum, agree and pad as the loop needs, and a sharded model gathers, pads and saves whole."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from r1searcher.rl.parallel import Parallel, Sharded
from tests.conftest import make_tiny_causal_lm

REPO = Path(__file__).resolve().parents[1]


def test_one_process_is_the_identity(capsys):
    par = Parallel.start("cpu")
    assert (par.kind, par.rank, par.world_size, par.is_main, par.sharded) == ("none", 0, 1, True, False)
    assert par.share(list("abcdef")) == list("abcdef")
    assert par.reduce({"a": 1.5, "b": 2.0}) == {"a": 1.5, "b": 2.0}
    torch.testing.assert_close(par.reduce_tensor(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))
    assert par.any(True) and not par.any(False)
    assert par.share_prompt(True) and not par.share_prompt(False) and par.loss_scale == 1.0
    assert par.full_state(None, None) == (None, None)
    assert par.on_main("adding", lambda a, b: a + b, 2, b=3) == 5
    with pytest.raises(OSError, match="disk full"):
        par.on_main("writing", _fail)
    par.agree(None)
    with pytest.raises(ValueError, match="mine"):
        par.agree(ValueError("mine"))
    par.say("said once")
    par.barrier()
    assert capsys.readouterr().out == "said once\n"


def _fail():
    raise OSError("disk full")


def test_fsdp_with_one_process_says_so_and_shards_nothing(capsys):
    par = Parallel.start("cpu", fsdp=True)
    assert not isinstance(par, Sharded) and par.kind == "none"
    assert "train.fsdp: one process, nothing to shard" in capsys.readouterr().out
    model = torch.nn.Linear(3, 2)
    assert par.wrap(model) is model
    with par.gathered(model):
        pass


def test_clip_gradients_returns_the_norm_before_clipping():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    model(torch.randn(5, 4)).pow(2).sum().backward()
    params = list(model.parameters())
    grads = [p.grad.clone() for p in params]
    want = float(torch.cat([g.reshape(-1) for g in grads]).norm())
    par = Parallel()
    par.sync_gradients(params)  # alone: unchanged
    for p, g in zip(params, grads):
        assert torch.equal(p.grad, g)
    assert par.clip_gradients(params, 0.0) == pytest.approx(want)  # ≤ 0: no clipping
    for p, g in zip(params, grads):
        assert torch.equal(p.grad, g)
    assert par.clip_gradients(params, want / 4) == pytest.approx(want)
    after = float(torch.cat([p.grad.reshape(-1) for p in params]).norm())
    assert after == pytest.approx(want / 4, rel=1e-4)


def test_load_optimizer_restores_a_saved_state(tmp_path):
    from r1searcher.rl.checkpoint import CheckpointError

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
    Parallel().load_optimizer(model, fresh, tmp_path / "optimizer.pt")
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    (tmp_path / "optimizer.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="optimizer.pt: cannot be read"):
        Parallel().load_optimizer(model, fresh, tmp_path / "optimizer.pt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


WORKER = textwrap.dedent(
    """
    import sys, torch
    from transformers import AutoModelForCausalLM
    from r1searcher.rl import distributed as D, fsdp as fsdp_shards
    from r1searcher.rl.parallel import Parallel, Sharded

    work, fsdp = sys.argv[1], sys.argv[2] == "1"
    par = Parallel.start("cpu", fsdp=fsdp)
    out = {"kind": par.kind, "rank": par.rank, "sharded": isinstance(par, Sharded)}
    out["share"] = par.share(list(range(5)))
    out["reduce"] = par.reduce({"n": 1.0, f"only{par.rank}": 2.0})
    out["reduce_tensor"] = par.reduce_tensor(torch.tensor([float(par.rank + 1)])).tolist()
    out["any"] = [par.any(par.rank == 1), par.any(False)]
    out["on_main"] = par.on_main("counting", lambda: 42)
    try:  # rank 0 fails inside a section every rank must finish
        par.on_main("writing the log", lambda: (_ for _ in ()).throw(OSError("no space left")))
    except D.PeerError as e:
        out["peer_error"] = str(e)
    except OSError as e:
        out["own_error"] = str(e)
    model = AutoModelForCausalLM.from_pretrained(f"{work}/model")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model = par.wrap(model)
    out["loss_scale"] = par.loss_scale
    out["share_prompt"] = par.share_prompt(True)
    with torch.no_grad(), par.gathered(model):  # whole weights: a plain forward with no collective inside
        ids = torch.tensor([[5, 6, 7]])
        out["logits_sum"] = float(model(input_ids=ids).logits.sum())
    # rank r has r micro-batches of its own (zero-loss ones here): pad_passes first brings rank 0 level
    par.pad_passes(model, par.rank, pad_id=0, temperature=1.0)
    fsdp_shards.zero_loss_passes(model, par.rank, pad_id=0, temperature=1.0)
    params = [p for p in model.parameters() if p.requires_grad]
    par.sync_gradients(params)
    out["grad_norm"] = par.clip_gradients(params, 1.0)  # zero-loss passes leave zero gradients
    model_state, _ = par.full_state(model, torch.optim.SGD(params, lr=0.1))
    if par.sharded and par.is_main:
        out["full_state_equal"] = all(torch.equal(model_state[k], before[k]) for k in before)
    par.barrier()
    torch.save(out, f"{work}/rank{par.rank}.pt")
    D.shutdown()
    """
)


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_ranks_sum_agree_and_pad(tmp_path, smollm_tokenizer, fsdp):
    model = make_tiny_causal_lm(smollm_tokenizer, seed=0, hidden=32)
    model.save_pretrained(tmp_path / "model")
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        want_logits = float(model(input_ids=ids).logits.sum())
    (tmp_path / "worker.py").write_text(WORKER)
    # two ranks launched as torchrun would (RANK, WORLD_SIZE, …), so a hang can be ended rank by rank
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        cmd = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path), "1" if fsdp else "0"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:  # a rank left waiting in a collective
                proc.kill()
                proc.wait()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]
    ranks = [torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in (0, 1)]
    for i, out in enumerate(ranks):
        assert out["kind"] == ("fsdp" if fsdp else "ddp") and out["sharded"] is fsdp and out["rank"] == i
        assert out["reduce"] == {"n": 2.0, "only0": 2.0, "only1": 2.0}
        assert out["reduce_tensor"] == [3.0]
        assert out["any"] == [True, False]
        assert out["loss_scale"] == (2.0 if fsdp else 1.0)
        assert out["share_prompt"] is (not fsdp)
        assert out["logits_sum"] == pytest.approx(want_logits, rel=1e-5)
        assert out["grad_norm"] == 0.0
    assert ranks[0]["share"] == [0, 1] and ranks[1]["share"] == [2, 3, 4]
    assert ranks[0]["on_main"] == 42 and ranks[1]["on_main"] is None
    assert ranks[0]["own_error"] == "no space left"
    assert ranks[1]["peer_error"] == "writing the log: rank 0 failed: no space left"
    if fsdp:
        assert ranks[0]["full_state_equal"] is True
