"""The training loop end to end on real parts: a tiny random Llama over the SmolLM2 tokenizer
(saved to a folder, loaded by ``model.name``), a real BM25 index over a tiny corpus, the real
rollout engine (steered so that the random model searches), the real rewards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from r1searcher.config import load_config
from tests.conftest import make_tiny_causal_lm

REPO = Path(__file__).resolve().parents[1]

PASSAGES = [
    ("Paris", "Paris is the capital and largest city of France."),
    ("Berlin", "Berlin is the capital of Germany and its largest city."),
    ("Alpha Centauri", "Alpha Centauri is the closest star system to the Sun."),
    ("Ada Lovelace", "Ada Lovelace was an English mathematician born in London."),
    ("Danube", "The Danube is the second-longest river in Europe."),
    ("Kelvara", "Kelvara is a town in Norland, known for its harbour."),
]
QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("Where was Ada Lovelace born?", "London"),
    ("Which country is Kelvara in?", "Norland"),
    ("What is the capital of Germany?", "Berlin"),
    ("What is the closest star system to the Sun?", "Alpha Centauri"),
    ("Which river is the second-longest in Europe?", "Danube"),
]

#: Row script: sample 0 of every question searches once and answers (well-formed, reward > 0);
#: the other samples are drawn freely by the random model (reward 0): groups are not uniform.
STEER = textwrap.dedent(
    """
    from r1searcher.models.loading import load_tokenizer
    from r1searcher.rollout.steer import ScriptedSteer, script_tokens, search_script

    def make_steer(model_dir):
        tok = load_tokenizer(model_dir)
        script = script_tokens(tok, search_script(["capital", "city"], "Paris", "Let me search.", 1))
        return ScriptedSteer(lambda row: script if row.sample == 0 else ())
    """
)

RUNNER = STEER + textwrap.dedent(
    """
    import sys
    from r1searcher.config import load_config
    from r1searcher.rl import distributed as D
    from r1searcher.rl.trainer import train

    cfg = load_config(sys.argv[1], sys.argv[4:])
    try:  # as `r1searcher train` does: leave the process group before the interpreter exits
        train(cfg, sys.argv[2], resume=sys.argv[3] == "1", steer=make_steer(cfg.model.name))
    finally:
        D.shutdown()
    """
)


def write_tiny_run(d: Path, tokenizer, **train) -> Path:
    """A tiny random model, corpus, QA file, ``tiny.yaml`` (``train`` keys override) and ``runner.py`` in ``d``."""
    model = make_tiny_causal_lm(tokenizer, seed=0, hidden=64)
    model.save_pretrained(d / "model")
    tokenizer.save_pretrained(d / "model")
    with open(d / "corpus.jsonl", "w") as f:
        for i, (title, text) in enumerate(PASSAGES):
            f.write(json.dumps({"id": f"p{i}", "title": title, "text": text}) + "\n")
    with open(d / "qa.jsonl", "w") as f:
        for i, (q, a) in enumerate(QUESTIONS):
            f.write(json.dumps({"id": f"q{i}", "question": q, "answer": a}) + "\n")
    cfg = {
        "model": {"name": str(d / "model"), "cache_dir": str(d / "cache")},
        "retrieval": {"index": str(d / "corpus.jsonl"), "top_k": 2, "max_doc_words": 20},
        "rollout": {"n_samples": 2, "max_new_tokens_per_turn": 24, "max_response_tokens": 96, "few_shot": False,
                    "batch_size": 8, "temperature": 1.0},
        "reward": {"stage": 1},
        "data": {"path": str(d / "qa.jsonl")},
        "train": {"max_steps": 3, "questions_per_step": 2, "micro_batch_size": 2, "lr": 1e-3, "save_every": 2,
                  "keep_last": 2, "seed": 7, "progress": False, **train},
    }
    (d / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    (d / "runner.py").write_text(RUNNER)
    (d / "steer_mod.py").write_text(STEER)
    return d


@pytest.fixture(scope="module")
def setup(tmp_path_factory, smollm_tokenizer) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("tiny_run"), smollm_tokenizer)


def _steer(setup):
    sys.path.insert(0, str(setup))
    try:
        from steer_mod import make_steer  # noqa: PLC0415
    finally:
        sys.path.remove(str(setup))
    return make_steer(str(setup / "model"))


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / f"step_{step:08d}" / "model" / "model.safetensors")


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


REQUIRED = ["step", "reward_mean", "reward_std", "reward_retrieval", "reward_format", "searches_per_trajectory",
            "frac_with_search", "f1", "acc", "response_len", "stop_answer", "stop_length", "kl", "entropy",
            "grad_norm", "clip_frac", "tokens_per_s", "sec_generate", "sec_retrieve", "sec_reward", "sec_fwd_bwd",
            "seconds", "groups_dropped", "lr"]


def test_loop_runs_logs_and_learns_something(setup, tmp_path):
    from r1searcher.rl.trainer import train

    cfg = load_config(setup / "tiny.yaml")
    run = train(cfg, tmp_path / "run", steer=_steer(setup))
    log = _log(run)
    assert [r["step"] for r in log] == [1, 2, 3]
    for key in REQUIRED:
        assert key in log[0], key
    first = log[0]
    assert first["searches_per_trajectory"] == pytest.approx(0.5)  # the steered half searched once
    assert first["frac_with_search"] == pytest.approx(0.5)
    assert first["reward_mean"] > 0 and first["grad_norm"] > 0
    # on-policy: the trainer's log-probs equal the sampler's (same temperature, same tokens)
    assert abs(first["approx_kl_sampler"]) < 1e-4
    assert (run / "config.yaml").exists() and (run / "samples.jsonl").exists()
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step_00000002", "step_00000003"]
    init = load_file(setup / "model" / "model.safetensors")
    final = _weights(run, 3)
    assert any(not torch.equal(final[k], init[k]) for k in init)


@pytest.mark.parametrize("lora", [False, True])
def test_kl_reference_and_dropping(setup, tmp_path, lora):
    """kl_coef > 0: a frozen copy (full) or the adapter-disabled model (LoRA); uniform groups dropped."""
    from r1searcher.rl.trainer import train

    over = ["train.max_steps=1", "train.kl_coef=0.1", "train.drop_uniform_groups=true", f"model.lora={lora}",
            "model.lora_r=4", "train.questions_per_step=2"]
    cfg = load_config(setup / "tiny.yaml", over)
    run = train(cfg, tmp_path / "run", steer=_steer(setup))
    rec = _log(run)[0]
    assert rec["kl"] is not None and abs(rec["kl"]) < 1e-4  # the policy starts at the reference
    assert rec["groups_dropped"] == 0  # steered sample 0 always differs from the free sample
    assert rec["grad_norm"] > 0


def test_kill_and_resume_is_bit_for_bit(setup, tmp_path):
    """SIGKILL during step 4 (checkpoint 2 on disk), resume: the same weights and log as a run
    that was never interrupted."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    steps = ["train.max_steps=5", "train.save_every=2", "train.questions_per_step=1"]

    def start(out, resume=False):
        cmd = [sys.executable, str(setup / "runner.py"), str(setup / "tiny.yaml"), str(out), "1" if resume else "0", *steps]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    full = start(tmp_path / "full")
    killed = start(tmp_path / "killed")
    # kill once step 3 is logged: checkpoint 2 exists, step 4 is running
    deadline = time.time() + 240
    log = tmp_path / "killed" / "log.jsonl"
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        assert killed.poll() is None, killed.stdout.read()
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert full.wait(timeout=300) == 0, full.stdout.read()

    assert len(log.read_text().splitlines()) >= 3
    resumed = start(tmp_path / "killed", resume=True)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()

    a, b = _weights(tmp_path / "full", 5), _weights(tmp_path / "killed", 5)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = _log(tmp_path / "full"), _log(tmp_path / "killed")
    assert [r["step"] for r in lb] == [1, 2, 3, 4, 5]
    for ra, rb in zip(la, lb):
        assert (ra["reward_mean"], ra["loss"], ra["grad_norm"]) == (rb["reward_mean"], rb["loss"], rb["grad_norm"])


def test_cli_stages_chain_checkpoints(setup, tmp_path):
    from r1searcher.cli import main

    s2 = yaml.safe_load((setup / "tiny.yaml").read_text())
    s2["reward"] = {"stage": 2}
    (tmp_path / "second.yaml").write_text(yaml.safe_dump(s2))
    rc = main(["train", "--stages", "--config", str(setup / "tiny.yaml"), "--config", str(tmp_path / "second.yaml"),
               "--out", str(tmp_path / "runs"), "train.max_steps=1"])
    assert rc == 0
    first, second = tmp_path / "runs" / "tiny", tmp_path / "runs" / "second"
    assert (first / "checkpoints" / "step_00000001").is_dir() and (second / "checkpoints" / "step_00000001").is_dir()
    resolved = yaml.safe_load((second / "config.yaml").read_text())
    assert resolved["train"]["init_from"] == str(first) and resolved["reward"]["stage"] == 2
    # a second start without --resume refuses to overwrite
    assert main(["train", "--config", str(setup / "tiny.yaml"), "--out", str(first), "train.max_steps=1"]) == 2


def test_drop_truncated_leaves_length_cut_trajectories_out(setup, tmp_path):
    from r1searcher.rl.trainer import drop_cut_by_length, train
    from r1searcher.rollout.trajectory import Trajectory

    trajs = [Trajectory([1], [2], [1], [0.0], stop_reason=r, group=g)
             for r, g in (("answer", 0), ("length", 0), ("eos", 1), ("max_searches", 1), ("length", 1))]
    kept, rewards, cut = drop_cut_by_length(trajs, torch.tensor([1.0, -2.0, 0.0, -2.0, -2.0]))
    assert cut == 2 and [t.stop_reason for t in kept] == ["answer", "eos", "max_searches"]
    assert rewards.tolist() == [1.0, 0.0, -2.0]

    cfg = load_config(setup / "tiny.yaml", ["train.max_steps=1", "train.drop_truncated=true"])
    rec = _log(train(cfg, tmp_path / "run", steer=_steer(setup)))[0]
    assert rec["length_cut_dropped"] == rec["stop_length"]


def test_fill_groups_rolls_out_more_questions_until_a_group_carries_signal(setup, tmp_path):
    """train.fill_groups (DAPO's dynamic sampling) with uniform_by=answer: the steered sample answers
    "Paris" to every question, so only the question about France has answers that score differently;
    the step rolls out further batches of 2 questions until that question comes, and trains on it alone."""
    from r1searcher.rl.trainer import train

    over = ["train.max_steps=1", "reward.stage=2", "train.drop_uniform_groups=true", "train.uniform_by=answer",
            "train.fill_groups=1", "train.fill_rounds=3", "train.log_samples=8"]
    run = train(load_config(setup / "tiny.yaml", over), tmp_path / "run", steer=_steer(setup))
    rec = _log(run)[0]
    rounds = rec["sample_rounds"]
    assert 1 <= rounds <= 4
    assert rec["trajectories"] == rounds * 2 * 2  # every round's samples are in the step's statistics
    assert rec["groups_dropped"] == rounds * 2 - 1 and rec["grad_norm"] > 0
    kept = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["question"] for s in kept} == {"What is the capital of France?"}
    assert {s["pred"] for s in kept if s["sample"] == 0} == {"Paris"}
    # without filling, the same first batch: one round, and a step with nothing to train when France is not in it
    plain = train(load_config(setup / "tiny.yaml", over[:4]), tmp_path / "plain", steer=_steer(setup))
    assert "sample_rounds" not in _log(plain)[0] and _log(plain)[0]["trajectories"] == 4
