"""``r1searcher bench bf16_mismatch``: how far the sampler's log-probs are from the training forward's.

The trainer uses the log-probs recorded during the rollout as the "old" log-probs of the PPO ratio
(``train.recompute_old_logprobs=false``, the default). In fp32 the rollout's KV-cached decoding
and the training forward agree to ~1e-5; in bf16 each path rounds its activations differently, so
the ratio ``exp(logp_train - logp_sampler)`` is not 1 at the start of an update (the
training-inference mismatch, arXiv 2510.26788). This bench measures it per token, in one run, for
each dtype asked for, on the same questions, retriever, prompt and sampling settings:

- the rollout (the demo recipe's prompt, temperature, top-p and limits by default) records the
  sampler's log-probs at every policy token;
- the trainer's own no-grad forward (``rl.trainer.batched_logprobs``, the path that
  ``recompute_old_logprobs`` takes, LoRA adapters attached as in training) scores the same tokens;
- printed: the distribution of ``|Δ log-prob|`` per token (mean, p50, p90, p99, max), the fraction
  of tokens whose ratio lies outside ``[1 - clip_eps, 1 + clip_eps]`` (what PPO would clip at the
  first micro-batch of an update, before any weight changed), and per sequence ``|Σ Δ|``.

fp32 is the baseline measured beside bf16. On a CPU without native bf16 (AVX2 only) bf16 is
emulated and far slower than fp32 (see BENCHMARKS.md, "bf16 training-inference mismatch"): keep
``--questions`` and the token limits small there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

HELP = "bf16 vs fp32: sampler log-probs against the training forward, per token (PPO ratio at step start)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="qwen-coder-0.5b", help="embedded model name or HF folder (demo: qwen-coder-0.5b)")
    p.add_argument("--dtypes", default="fp32,bf16",
                   help="comma-separated variants to measure, each DTYPE[+int8] (fp32 is the baseline; +int8: "
                        "the sampler decodes with rollout.sampler_quant=int8, e.g. fp32,fp32+int8,bf16,bf16+int8)")
    p.add_argument("--questions", type=int, default=4, help="held-out questions of the synthetic world")
    p.add_argument("--n", type=int, default=2, help="samples per question")
    p.add_argument("--lora-layers", default="top:8", help="LoRA placement, as in the demo recipe")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-searches", type=int, default=4)
    p.add_argument("--max-new-tokens-per-turn", type=int, default=160)
    p.add_argument("--max-response-tokens", type=int, default=480)
    p.add_argument("--clip-eps", type=float, default=0.2)
    p.add_argument("--micro-batch", type=int, default=8, help="training forward micro-batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def mismatch_stats(sampler: torch.Tensor, train: torch.Tensor, mask: torch.Tensor, clip_eps: float) -> dict:
    """Per-token statistics of ``Δ = train - sampler`` at ``mask`` positions.

    ``sampler``, ``train``: [B, T] log-probs; ``mask``: [B, T] bool (policy tokens).
    """
    import torch

    d = (train - sampler)[mask].double()
    a = d.abs()
    ratio = torch.exp(d)
    seq = ((train - sampler) * mask).sum(-1).abs()
    q = torch.quantile(a, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)) if a.numel() else torch.zeros(3)
    return {
        "tokens": int(a.numel()),
        "mean_abs": float(a.mean()) if a.numel() else 0.0,
        "p50_abs": float(q[0]), "p90_abs": float(q[1]), "p99_abs": float(q[2]),
        "max_abs": float(a.max()) if a.numel() else 0.0,
        "mean_signed": float(d.mean()) if d.numel() else 0.0,
        "clip_frac": float(((ratio < 1 - clip_eps) | (ratio > 1 + clip_eps)).double().mean()) if a.numel() else 0.0,
        "frac_abs_gt_0.01": float((a > 0.01).double().mean()) if a.numel() else 0.0,
        "frac_abs_gt_0.1": float((a > 0.1).double().mean()) if a.numel() else 0.0,
        "seq_abs_sum_mean": float(seq.mean()) if seq.numel() else 0.0,
        "seq_abs_sum_max": float(seq.max()) if seq.numel() else 0.0,
    }


def measure(model, tok, retriever, questions: list[str], rcfg, retrieval_cfg, *, clip_eps: float, micro_batch: int,
            seed: int) -> dict:
    """One dtype: rollout (sampler log-probs), then the trainer's forward over the same tokens."""
    from r1searcher.rl.logprobs import collate
    from r1searcher.rl.trainer import batched_logprobs
    from r1searcher.rollout.engine import RolloutEngine

    engine = RolloutEngine(model, tok, retriever, rcfg, retrieval_cfg)
    t0 = time.perf_counter()
    trajs = engine.rollout(questions, seed=seed)
    t_roll = time.perf_counter() - t0
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    full = collate(trajs, pad)
    T = full.tokens.shape[1]
    t0 = time.perf_counter()
    model.train()  # as in the update (LoRA dropout is 0: same function as eval)
    train = batched_logprobs(model, trajs, pad, rcfg.temperature, micro_batch, T)
    t_fwd = time.perf_counter() - t0
    mask = (full.valid & full.loss_mask).cpu()
    out = mismatch_stats(full.old_logp.float().cpu(), train[:, :T], mask, clip_eps)
    out.update(
        sequences=len(trajs), searches_per_seq=sum(t.n_searches for t in trajs) / max(1, len(trajs)),
        rollout_s=round(t_roll, 1), forward_s=round(t_fwd, 1),
        policy_tokens_per_s=round(int(mask.sum()) / max(t_roll, 1e-9), 1),
    )
    return out


def demo_rollout_setup(args: argparse.Namespace):
    """The demo recipe's rollout on a 200-entity synthetic world (seed ``args.seed``): its BM25
    index, ``args.questions`` held-out 2-hop questions, the rollout and retrieval settings (``args``:
    n, temperature, top_p, max_searches, max_new_tokens_per_turn, max_response_tokens)."""
    from r1searcher.config import RetrievalConfig, RolloutConfig
    from r1searcher.data.synthetic import generate_world
    from r1searcher.retrieval.base import Passage
    from r1searcher.retrieval.bm25 import BM25Index

    world = generate_world(200, seed=args.seed, prose="varied")
    index = BM25Index.build([Passage(p["id"], p["title"], p["text"]) for p in world.passages])
    questions = [q.question for q in world.heldout if q.hops == 2][: args.questions]
    rcfg = RolloutConfig(
        n_samples=args.n, temperature=args.temperature, top_p=args.top_p, max_searches=args.max_searches,
        max_new_tokens_per_turn=args.max_new_tokens_per_turn, max_response_tokens=args.max_response_tokens,
        prompt="chat", few_shot=True, batch_size=max(1, args.n * len(questions)), seed=args.seed,
    )
    return index, questions, rcfg, RetrievalConfig(top_k=2, max_doc_words=40)


def run(args: argparse.Namespace) -> int:
    import torch

    from r1searcher.benchmarks import machine_info
    from r1searcher.config import ModelConfig
    from r1searcher.models.loading import load_policy

    if args.threads:
        torch.set_num_threads(args.threads)
    index, questions, rcfg, retrieval_cfg = demo_rollout_setup(args)
    results: dict[str, dict] = {}
    for variant in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        dt, _, quant = variant.partition("+")
        if quant not in ("", "int8"):
            raise SystemExit(f"--dtypes: {variant!r} is not DTYPE or DTYPE+int8")
        mcfg = ModelConfig(name=args.model, dtype=dt, lora=True, lora_layers=args.lora_layers)
        model, tok = load_policy(mcfg, training=True)
        results[variant] = measure(model, tok, index, questions, dataclasses.replace(rcfg, sampler_quant=quant or "none"),
                                   retrieval_cfg, clip_eps=args.clip_eps, micro_batch=args.micro_batch, seed=args.seed)
        results[variant]["param_dtype"] = str(next(p for p in model.parameters() if not p.requires_grad).dtype)
        del model
    report = {"machine": machine_info(), "model": args.model, "questions": len(questions), "n": args.n,
              "rollout": {k: getattr(rcfg, k) for k in ("temperature", "top_p", "max_searches",
                                                          "max_new_tokens_per_turn", "max_response_tokens")},
              "clip_eps": args.clip_eps, "results": results}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"machine: {report['machine']}")
    print(f"model {args.model}, {len(questions)} questions x {args.n} samples, rollout {report['rollout']}")
    cols = ["tokens", "mean_abs", "p50_abs", "p90_abs", "p99_abs", "max_abs", "mean_signed", "clip_frac",
            "frac_abs_gt_0.01", "frac_abs_gt_0.1", "seq_abs_sum_mean", "seq_abs_sum_max", "rollout_s", "forward_s",
            "policy_tokens_per_s"]
    width = max(6, *(len(v) for v in results))
    print(f"{'variant':<{width}} " + "  ".join(cols))
    for dt, r in results.items():
        print(f"{dt:<{width}} " + "  ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    base = results.get("fp32")
    for dt, r in results.items():
        if base and dt != "fp32" and base["mean_abs"] > 0:
            print(f"{dt}/fp32 mean |Δ|: {r['mean_abs'] / base['mean_abs']:.0f}x; "
                  f"policy tokens/s {r['policy_tokens_per_s'] / max(base['policy_tokens_per_s'], 1e-9):.2f}x fp32's")
    return 0
