"""Data parallelism: 2 processes (torchrun, gloo on CPU) give the same update as 1 process on the
same global batch, including a rank whose groups were all dropped (it holds no trajectory); and a
checkpoint that rank 0 cannot save ends every rank with that error instead of leaving one waiting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from r1searcher.config import TrainConfig
from r1searcher.rollout.trajectory import Trajectory
from tests.conftest import make_tiny_causal_lm

REPO = Path(__file__).resolve().parents[1]

#: (name, TrainConfig overrides, whether a reference is used, how the 4 groups split over 2 ranks)
CASES = [
    ("rfpp_baseline", dict(algo="reinforce_pp_baseline", loss_agg="seq-mean-token-mean"), False, (2, 2)),
    ("grpo_kl_loss", dict(algo="grpo", loss_agg="token-mean", kl_coef=0.1, kl_in_reward=False, kl_estimator="k3"), True, (3, 1)),
    ("rfpp_kl_reward_empty_rank", dict(algo="reinforce_pp", kl_coef=0.05, kl_estimator="k1"), True, (4, 0)),
]

WORKER = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoModelForCausalLM
    from r1searcher.config import TrainConfig
    from r1searcher.rl import distributed as D
    from r1searcher.rl.parallel import Parallel
    from r1searcher.rl.trainer import policy_update

    work = sys.argv[1]
    par = Parallel.start("cpu")
    assert par.kind == ("ddp" if par.world_size == 2 else "none")
    data = torch.load(f"{work}/batch.pt", weights_only=False)
    out = {}
    for name, over, use_ref, split in data["cases"]:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(f"{work}/model")
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        t = TrainConfig(micro_batch_size=3, grad_clip=0.5, **over)
        if par.world_size > 1:  # groups 0..split[0]-1 on rank 0, the rest on rank 1
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
        before = {k: v.clone() for k, v in model.state_dict().items()}
        stats = policy_update(model, opt, trajs, data["rewards"][rows], t, pad_id=0, temperature=0.7, ref_logp=ref, par=par)
        stats = par.reduce(stats | {"grad_norm": 0.0}) | {"grad_norm": stats["grad_norm"]}
        delta = {k: v - before[k] for k, v in model.state_dict().items()}
        out[name] = {"delta": delta, "loss": stats["loss"], "grad_norm": stats["grad_norm"],
                     "tokens": stats["tokens_sum"]}
    if par.is_main:
        torch.save(out, f"{work}/result_{par.world_size}.pt")
    D.shutdown()
    """
)


def _batch(tok, g: torch.Generator) -> tuple[list[Trajectory], torch.Tensor, torch.Tensor]:
    """4 questions × 2 samples; odd samples carry an inserted document block in the middle."""
    trajs = []
    V = 2000
    for q in range(4):
        prompt = torch.randint(10, V, (int(torch.randint(4, 9, (1,), generator=g)),), generator=g).tolist()
        for s in range(2):
            n = int(torch.randint(3, 9, (1,), generator=g))
            resp = torch.randint(10, V, (n,), generator=g).tolist()
            mask = [1] * n
            if s == 1:
                doc = torch.randint(10, V, (5,), generator=g).tolist()
                resp = resp[:2] + doc + resp[2:]
                mask = [1, 1] + [0] * 5 + [1] * (n - 2)
            lps = [(-float(torch.rand(1, generator=g)) * 3 if m else 0.0) for m in mask]
            trajs.append(Trajectory(prompt_ids=prompt, response_ids=resp, loss_mask=mask, logprobs=lps, group=q))
    rewards = torch.randn(len(trajs), generator=g)
    T = max(len(t.response_ids) for t in trajs)
    ref = -torch.rand(len(trajs), T, generator=g) * 3
    return trajs, rewards, ref


def test_two_processes_match_one(tmp_path, smollm_tokenizer):
    model = make_tiny_causal_lm(smollm_tokenizer, seed=0, hidden=32)
    model.save_pretrained(tmp_path / "model")
    trajs, rewards, ref = _batch(smollm_tokenizer, torch.Generator().manual_seed(0))
    torch.save({"trajs": trajs, "rewards": rewards, "ref": ref, "cases": CASES}, tmp_path / "batch.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    one = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path)]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(tmp_path / "worker.py"), str(tmp_path)]
    for cmd in (one, two):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    single = torch.load(tmp_path / "result_1.pt", weights_only=False)
    double = torch.load(tmp_path / "result_2.pt", weights_only=False)
    for name, *_ in CASES:
        a, b = single[name], double[name]
        assert a["grad_norm"] > 0, name
        assert a["tokens"] == b["tokens"], name
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7), name
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5), name
        moved = 0
        for k in a["delta"]:
            torch.testing.assert_close(b["delta"][k], a["delta"][k], rtol=1e-4, atol=1e-7, msg=f"{name}: {k}")
            moved += int(a["delta"][k].abs().sum() > 0)
        assert moved > 0, name


#: ``r1searcher train`` whose rank-0 process stays alive after its error until the file ``argv[1]``
#: exists (as one kept by a tracker still uploading): the other rank must not need that process
#: to die (closing its connections) to learn that the save failed.
LINGER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from r1searcher.cli import main

    rc = main(sys.argv[2:])
    for _ in range(600):
        if rc == 0 or os.environ["RANK"] != "0" or Path(sys.argv[1]).exists():
            break
        time.sleep(0.5)
    sys.exit(rc)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("linger,fsdp", [(False, False), (True, False), (True, True)], ids=["exits", "lingers", "fsdp"])
def test_a_save_failure_on_rank_0_ends_every_rank_with_its_cause(tmp_path, smollm_tokenizer, linger, fsdp):
    """Two training processes (gloo, launched as a cluster scheduler does: RANK/WORLD_SIZE, no
    torchrun agent to kill the survivor); a file is in the way of rank 0's checkpoints folder, so its
    first save fails (replicas, or sharded with train.fsdp). Both processes end non-zero within the
    subprocess timeout, each naming the cause."""
    from tests.test_trainer_loop import write_tiny_run

    d = write_tiny_run(tmp_path, smollm_tokenizer, max_steps=2, save_every=1, fsdp=fsdp)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("a file where the checkpoints folder goes\n")
    (tmp_path / "linger.py").write_text(LINGER)
    flag = tmp_path / "rank1-done"
    train = ["train", "--config", str(d / "tiny.yaml"), "--out", str(run)]
    cmd = [sys.executable, str(tmp_path / "linger.py"), str(flag)] if linger else [sys.executable, "-m", "r1searcher.cli"]
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(cmd + train, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        _, err1 = procs[1].communicate(timeout=120)  # the rank whose own save had nothing wrong
        flag.touch()
        _, err0 = procs[0].communicate(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rank, proc, err in ((0, procs[0], err0), (1, procs[1], err1)):
        assert proc.returncode == 2, f"rank {rank}: {err[-3000:]}"
        line = err.strip().splitlines()[-1]
        assert line.startswith("r1searcher train: error: "), f"rank {rank}: {err[-3000:]}"
        assert "cannot save checkpoint step 1" in line and "File exists" in line, f"rank {rank}: {line}"
    assert "rank 0 failed" in err1.strip().splitlines()[-1]
    assert not (run / "log.jsonl").read_text().count('"step": 2')  # no rank went on to step 2
