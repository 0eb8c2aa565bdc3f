"""FSDP (``train.fsdp``): 2 sharded processes (torchrun, gloo on CPU) give the same update as 1
unsharded process on the same global batch, with uneven micro-batch counts, a rank whose groups
were all dropped, KL, and LoRA; and the whole loop (rollouts on gathered weights, checkpoints
gathered to rank 0) resumes bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import make_tiny_causal_lm
from tests.test_trainer_ddp import CASES, _batch

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import sys, torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import AutoModelForCausalLM
    from r1searcher.config import TrainConfig
    from r1searcher.models.loading import apply_lora
    from r1searcher.rl import distributed as D
    from r1searcher.rl.parallel import Parallel
    from r1searcher.rl.trainer import policy_update

    work = sys.argv[1]
    par = Parallel.start("cpu", fsdp=True)
    assert par.sharded == (par.world_size == 2) and par.kind == ("fsdp" if par.sharded else "none")
    data = torch.load(f"{work}/batch.pt", weights_only=False)
    out = {}
    for name, over, use_ref, split in data["cases"]:
        for lora in (False, True):
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_pretrained(f"{work}/model")
            if lora:
                model = apply_lora(model, r=4, alpha=8)
                for n, p in model.named_parameters():  # non-zero B: the update reaches A too
                    if "lora_B" in n:
                        torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(1))
            before = {k: v.clone() for k, v in model.state_dict().items()}
            model = par.wrap(model)
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
            t = TrainConfig(micro_batch_size=3, grad_clip=0.5, **over)
            if par.sharded:
                lo = 0 if par.rank == 0 else split[0]
                hi = split[0] if par.rank == 0 else 4
            else:
                lo, hi = 0, 4
            rows = [i for i, tr in enumerate(data["trajs"]) if lo <= tr.group < hi]
            trajs = [data["trajs"][i] for i in rows]
            ref = None
            if use_ref:
                T = max([len(x.response_ids) for x in trajs] + [1])
                ref = data["ref"][rows, :T]
            stats = policy_update(model, opt, trajs, data["rewards"][rows], t, pad_id=0, temperature=0.7, ref_logp=ref,
                                  par=par)
            stats = par.reduce(stats | {"grad_norm": 0.0}) | {"grad_norm": stats["grad_norm"]}
            after = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if par.is_main:
                out[f"{name}/lora={lora}"] = {"delta": {k: after[k] - before[k] for k in before}, "loss": stats["loss"],
                                              "grad_norm": stats["grad_norm"], "tokens": stats["tokens_sum"]}
    if par.is_main:
        torch.save(out, f"{work}/result_{par.world_size}.pt")
    D.shutdown()
    """
)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def test_sharded_update_matches_one_process(tmp_path, smollm_tokenizer):
    model = make_tiny_causal_lm(smollm_tokenizer, seed=0, hidden=32)
    model.save_pretrained(tmp_path / "model")
    trajs, rewards, ref = _batch(smollm_tokenizer, torch.Generator().manual_seed(0))
    torch.save({"trajs": trajs, "rewards": rewards, "ref": ref, "cases": CASES}, tmp_path / "batch.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    for cmd in ([sys.executable, str(tmp_path / "worker.py"), str(tmp_path)], _torchrun(str(tmp_path / "worker.py"), str(tmp_path))):
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    single = torch.load(tmp_path / "result_1.pt", weights_only=False)
    sharded = torch.load(tmp_path / "result_2.pt", weights_only=False)
    assert set(single) == set(sharded) and len(single) == 2 * len(CASES)
    for name, a in single.items():
        b = sharded[name]
        assert a["grad_norm"] > 0, name
        assert a["tokens"] == b["tokens"], name
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7), name
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5), name
        moved = 0
        for k in a["delta"]:
            torch.testing.assert_close(b["delta"][k], a["delta"][k], rtol=1e-4, atol=1e-7, msg=f"{name}: {k}")
            moved += int(a["delta"][k].abs().sum() > 0)
        assert moved > 0, name


def test_sharded_loop_checkpoints_and_resumes_exactly(tmp_path, smollm_tokenizer):
    from tests.test_trainer_loop import write_tiny_run

    write_tiny_run(tmp_path, smollm_tokenizer, micro_batch_size=1, save_every=1, keep_last=3, fsdp=True)

    def run(out: str, resume: bool, *over: str) -> None:
        cmd = _torchrun(str(tmp_path / "runner.py"), str(tmp_path / "tiny.yaml"), str(tmp_path / out),
                        "1" if resume else "0", *over)
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    run("full", False)
    run("split", False, "train.max_steps=2")
    run("split", True)
    ckpt = lambda out, step: tmp_path / out / "checkpoints" / f"step_{step:08d}"  # noqa: E731
    state = json.loads((ckpt("full", 3) / "state.json").read_text())
    assert state["fsdp"] is True and state["world_size"] == 2
    first, a, b = (load_file(ckpt(o, s) / "model" / "model.safetensors") for o, s in (("full", 1), ("full", 3), ("split", 3)))
    assert any(not torch.equal(first[k], a[k]) for k in a), "the weights never moved"
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # a sharded checkpoint is an ordinary one: it loads into an unsharded model
    from r1searcher.models.loading import load_policy

    load_policy(path=str(ckpt("full", 3) / "model"))
