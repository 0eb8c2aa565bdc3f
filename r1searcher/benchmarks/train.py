"""``r1searcher bench train``: seconds per RL step by phase, tokens/s, and two savings measured in one run.

(1) Steps of the real trainer (``rl/trainer.train``) on the embedded model, a BM25 index over a
    small synthetic world, every rollout row steered (``ScriptedSteer``) into the same well-formed
    shape (``--searches`` queries, then an answer) so token counts are identical between runs; the
    model still computes every step and the sampler still draws. Reported: median seconds per step
    of each phase (generate / retrieve / reward / reference / forward-backward) over the steps after
    the first, response tokens/s and trained tokens/s.
(2) On one batch of those trajectories, forward+backward of the RL loss with log-probs taken only
    at policy positions (the lm_head applied to the selected hidden states) against the same loss
    over full-vocabulary logits at every position: time ratio and peak-memory ratio.
(3) The no-grad forward pass that reusing the sampler's log-probs saves, as a share of a step.
(4) On the same batch, in micro-batches of ``--micro``: forward+backward with each micro-batch's
    common prompt prefix encoded once (``train.share_prompt``, the default) against every row
    encoding its whole prompt; alternated twice, the faster of each kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from r1searcher.util.files import read_jsonl

HELP = "RL training step: seconds per phase, tokens/s, policy-position log-probs vs full logits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=3, help="trainer steps (the first is reported apart as warm-up)")
    p.add_argument("--questions", type=int, default=2, help="questions per step")
    p.add_argument("--n", type=int, default=4, help="samples per question")
    p.add_argument("--searches", type=int, default=1, help="forced searches per trajectory")
    p.add_argument("--model", default="smollm2", help="embedded model name or HF folder")
    p.add_argument("--lora-layers", default="top:4", help="LoRA layers ('all', 'top:N') or 'full' for full fine-tuning")
    p.add_argument("--few-shot", action="store_true", help="use the worked examples (rollout.shots=2) (longer prompts)")
    p.add_argument("--skip-logits", action="store_true", help="skip the full-logits comparison (2)")
    p.add_argument("--micro", type=int, default=4, help="micro-batch size of the shared-prompt comparison (4)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


class PeakRSS:
    """Peak resident memory (bytes) of this process while the block runs (sampled every 10 ms)."""

    def __enter__(self):
        self.peak = self.start = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _steer(tok, searches: int):
    from r1searcher.rollout.steer import ScriptedSteer, script_tokens, search_script

    script = script_tokens(tok, search_script(["founder", "birthplace"], "Norland", "I will look this up.", searches))
    return ScriptedSteer(lambda row: script)


def _config(args, work: Path):
    from r1searcher.config import load_config
    from r1searcher.data.synthetic import generate_world

    paths = generate_world(entities=40, seed=0).save(work / "world")
    lora = args.lora_layers != "full"
    over = [
        f"model.name={args.model}", f"model.lora={str(lora).lower()}",
        *( [f"model.lora_layers={args.lora_layers}"] if lora else []),
        f"retrieval.index={paths['corpus']}", "retrieval.top_k=2", "retrieval.max_doc_words=40",
        f"rollout.n_samples={args.n}", f"rollout.few_shot={str(args.few_shot).lower()}", "rollout.prompt=chat",
        "rollout.max_new_tokens_per_turn=64", "rollout.max_response_tokens=512", f"rollout.max_searches={args.searches}",
        f"rollout.batch_size={args.questions * args.n}",
        f"data.path={paths['train']}", "reward.stage=1",
        f"train.max_steps={args.steps}", f"train.questions_per_step={args.questions}",
        f"train.micro_batch_size={args.n}", "train.save_every=1000", "train.progress=false", "train.log_samples=0",
        "train.lr=1e-5",
    ]
    return load_config(None, over)


def _logits_comparison(cfg, trajs) -> dict:
    """Forward+backward of the loss: policy positions only vs full logits everywhere, same batch."""
    import torch

    from r1searcher.models.loading import load_policy
    from r1searcher.rl.logprobs import collate, token_logprobs
    from r1searcher.rl.losses import rl_loss

    model, tok = load_policy(cfg.model)
    model.train()
    b = collate(trajs, tok.pad_token_id)
    adv = torch.randn(b.tokens.shape)
    temp = cfg.rollout.temperature

    def sliced():  # the prompt encoded per row, as in full(): this comparison isolates the slicing
        lp, _ = token_logprobs(model, b, temp, share_prefix=False)
        return lp

    def full():
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits.float() / temp  # [B, L, V]
        lps = torch.log_softmax(logits, -1)
        out = torch.zeros(b.tokens.shape)
        for i in range(b.tokens.shape[0]):  # response token t of row i is predicted at P_i + t - 1
            P = int(b.prompt_lens[i])
            R = int(b.valid[i].sum())
            out[i, :R] = lps[i, P - 1 : P - 1 + R].gather(-1, b.tokens[i, :R, None]).squeeze(-1)
        return out

    res = {}
    for name, fn in (("sliced", sliced), ("full", full), ("sliced_again", sliced)):
        model.zero_grad(set_to_none=True)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            lp = fn()
            loss, _ = rl_loss(lp, b.old_logp, adv, b.valid, b.loss_mask)
            loss.backward()
            res[name] = {"seconds": time.perf_counter() - t0, "peak_rss_delta_gb": (mem.peak - mem.start) / 2**30}
    s = min(res["sliced"]["seconds"], res["sliced_again"]["seconds"])
    return {
        "tokens": b.n_tokens,
        "policy_tokens": int((b.valid & b.loss_mask).sum()),
        "sliced_s": s,
        "full_s": res["full"]["seconds"],
        "full_over_sliced_time": res["full"]["seconds"] / s,
        "sliced_peak_gb": res["sliced_again"]["peak_rss_delta_gb"],
        "full_peak_gb": res["full"]["peak_rss_delta_gb"],
    }


def _prefix_comparison(model, trajs, pad_id: int, temperature: float, micro: int) -> dict:
    """Forward+backward over micro-batches: shared prompt prefix encoded once vs per row."""
    import torch

    from r1searcher.rl.logprobs import collate, shared_prefix_len, token_logprobs

    model.train()
    mbs = [collate(trajs[i : i + micro], pad_id) for i in range(0, len(trajs), micro)]
    times = {True: [], False: []}
    for share in (False, True, False, True):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        for b in mbs:
            lp, _ = token_logprobs(model, b, temperature, share_prefix=share)
            lp.sum().backward()
        times[share].append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    rows = sum(b.input_ids.shape[0] * b.input_ids.shape[1] for b in mbs)
    shared = sum(shared_prefix_len(b.input_ids, b.attention_mask) * (b.input_ids.shape[0] - 1) for b in mbs)
    return {"micro": micro, "encoded_tokens_plain": rows, "encoded_tokens_shared": rows - shared,
            "plain_s": min(times[False]), "shared_s": min(times[True]),
            "speedup": min(times[False]) / min(times[True])}


def run(args: argparse.Namespace) -> int:
    import torch

    from r1searcher.benchmarks import machine_info
    from r1searcher.models.loading import load_tokenizer, resolve_model_path
    from r1searcher.rl.logprobs import collate, token_logprobs
    from r1searcher.rl.trainer import train

    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        cfg = _config(args, work)
        tok = load_tokenizer(resolve_model_path(cfg.model.name, cfg.model.cache_dir))
        steer = _steer(tok, args.searches)
        t0 = time.perf_counter()
        run_dir = train(cfg, work / "run", steer=steer)
        wall = time.perf_counter() - t0
        log = read_jsonl(run_dir / "log.jsonl", on_bad="raise").values()
        steady = log[1:] or log
        phases = ["sec_generate", "sec_retrieve", "sec_reward", "sec_reference", "sec_fwd_bwd", "seconds"]
        med = {k: statistics.median(r[k] for r in steady) for k in phases}
        result = {
            "machine": info,
            "setup": {"model": cfg.model.name, "lora_layers": args.lora_layers, "questions": args.questions,
                      "n": args.n, "searches": args.searches, "few_shot": args.few_shot, "steps": args.steps},
            "response_len": steady[-1]["response_len"], "policy_tokens": steady[-1]["policy_tokens"],
            "first_step_s": log[0]["seconds"], "median": med,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
            "train_tokens": steady[-1]["train_tokens"],
            "train_tokens_per_s": sum(r["train_tokens"] for r in steady) / sum(r["sec_fwd_bwd"] for r in steady),
            "per_step": [{k: r[k] for k in phases + ["train_tokens"]} for r in log],
            "wall_s": wall,
        }
        # (3) and (2): one batch of the same steered trajectories
        from r1searcher.models.loading import load_policy
        from r1searcher.retrieval.index import open_retriever
        from r1searcher.rollout.engine import RolloutEngine
        from r1searcher.data.qa import load_qa

        model, _ = load_policy(cfg.model)
        qs = [r.question for r in load_qa(cfg.data.path)[: args.questions]]
        trajs = RolloutEngine(model, tok, open_retriever(cfg), cfg.rollout, cfg.retrieval, steer=steer).rollout(qs, seed=0)
        b = collate(trajs, tok.pad_token_id)
        t1 = time.perf_counter()
        with torch.no_grad():
            token_logprobs(model, b, cfg.rollout.temperature)
        result["old_logprob_forward_s"] = time.perf_counter() - t1
        result["old_logprob_forward_share_of_step"] = result["old_logprob_forward_s"] / med["seconds"]
        result["shared_prompt"] = _prefix_comparison(model, trajs, tok.pad_token_id, cfg.rollout.temperature, args.micro)
        del model
        if not args.skip_logits:
            result["logits"] = _logits_comparison(cfg, trajs)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"machine: {info.get('cpu')} ({info.get('torch_cpu_capability')}, {info.get('threads')} threads), "
          f"torch {info.get('torch')}")
    s = result["setup"]
    print(f"setup: {s['model']} LoRA {s['lora_layers']}, {s['questions']} questions × {s['n']} samples, "
          f"{s['searches']} forced search(es), response {result['response_len']:.0f} tokens "
          f"({result['policy_tokens']:.0f} policy)")
    print(f"first step {result['first_step_s']:.1f} s; median of steps 2..{args.steps}:")
    for k, v in med.items():
        print(f"  {k:<16} {v:8.2f} s  {100 * v / med['seconds']:5.1f}%")
    print(f"  response tokens/s {result['tokens_per_s']:.1f}; trained tokens/s (fwd+bwd, {result['train_tokens']} "
          f"prompt+response tokens per step) {result['train_tokens_per_s']:.1f}")
    print("  per step: " + "; ".join(f"{r['seconds']:.1f} s (gen {r['sec_generate']:.1f}, fwd+bwd {r['sec_fwd_bwd']:.1f})"
                                      for r in result["per_step"]))
    print(f"saved by reusing sampler log-probs: {result['old_logprob_forward_s']:.2f} s "
          f"({100 * result['old_logprob_forward_share_of_step']:.0f}% of a step)")
    sp = result["shared_prompt"]
    print(f"training forward+backward, micro-batches of {sp['micro']}: shared prompt prefix encoded once "
          f"{sp['shared_s']:.2f} s vs per row {sp['plain_s']:.2f} s (×{sp['speedup']:.2f}; encoded tokens "
          f"{sp['encoded_tokens_shared']} vs {sp['encoded_tokens_plain']})")
    if "logits" in result:
        lg = result["logits"]
        print(f"fwd+bwd over {lg['tokens']} tokens ({lg['policy_tokens']} policy): policy-position lm_head "
              f"{lg['sliced_s']:.2f} s vs full logits {lg['full_s']:.2f} s (×{lg['full_over_sliced_time']:.2f}); "
              f"peak RSS +{lg['sliced_peak_gb']:.2f} GB vs +{lg['full_peak_gb']:.2f} GB")
    return 0
