"""``r1searcher bench train_forward``: the training forward+backward with the per-row remainder
(``unpadded``, the CPU default) against the one padded batch, on the same rows, in one run.

A GRPO group shares its prompt; the responses differ in length (the demo's cap is 480 tokens, the
mean about 250), so a padded batch spends about half of the remainder's compute on padding. The
rows are real token ids (the demo world's prompt, then response tokens of the given lengths, a
third of them policy tokens as in the demo's logs) through the real model with LoRA on the top
layers, as the trainer runs them: ``token_logprobs`` with entropies, then backward. Printed: seconds
per variant (median of ``--repeats``), the ratio, and the largest log-prob difference (exactness).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

HELP = "training forward+backward: rows at their own lengths vs one padded batch (seconds, ratio, exactness)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="qwen-coder-0.5b", help="embedded model name or HF folder")
    p.add_argument("--lengths", default="120,160,200,240,260,300,400,480",
                   help="response lengths of the group's rows (the demo: 8 samples, ≤ 480 tokens)")
    p.add_argument("--lora-layers", default="top:8")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    import r1searcher.rl.logprobs as L
    from r1searcher.benchmarks import machine_info
    from r1searcher.config import ModelConfig
    from r1searcher.demo.run import DemoSpec, demo_config
    from r1searcher.models.loading import load_policy
    from r1searcher.rollout.engine import RolloutEngine
    from r1searcher.rollout.trajectory import Trajectory

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = demo_config(DemoSpec(model=args.model), "unused.jsonl", "unused-index")
    model, tok = load_policy(ModelConfig(name=args.model, dtype="float32", lora=True, lora_layers=args.lora_layers),
                             training=True)
    prompt = RolloutEngine(model, tok, None, cfg.rollout, cfg.retrieval).prompt_ids("Where was the founder of Vozam Labs born?")
    g = torch.Generator().manual_seed(0)
    lengths = [int(x) for x in args.lengths.split(",")]
    trajs = []
    for i, n in enumerate(lengths):
        resp = torch.randint(100, 20000, (n,), generator=g).tolist()
        mask = [1 if (j // 40) % 3 == 0 else 0 for j in range(n)]  # a third policy tokens, in runs
        trajs.append(Trajectory(prompt, resp, mask, [], group=0, sample=i))
    batch = L.collate(trajs, tok.pad_token_id)
    decoder_hidden = L.decoder_hidden
    model.train()
    results, out = {}, {}
    for name, unpadded in (("padded", False), ("unpadded", True)):
        L.decoder_hidden = lambda d, i, a, flag=unpadded, **_: decoder_hidden(d, i, a, 16, flag)
        times = []
        try:
            for _ in range(args.repeats):
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                lp, _ = L.token_logprobs(model, batch, 0.8, with_entropy=True, share_prefix=True)
                lp.sum().backward()
                times.append(time.perf_counter() - t0)
        finally:
            L.decoder_hidden = decoder_hidden
        out[name] = lp.detach()
        results[name] = round(statistics.median(times), 2)
    real = int(batch.attention_mask.sum())
    report = {
        "machine": machine_info(), "model": args.model, "rows": len(lengths), "prompt_tokens": len(prompt),
        "response_tokens": sum(lengths), "padded_tokens": int(batch.input_ids.numel()), "real_tokens": real,
        "seconds": results, "speedup": round(results["padded"] / max(results["unpadded"], 1e-9), 2),
        "max_abs_logprob_diff": float((out["padded"] - out["unpadded"]).abs().max()),
    }
    print(json.dumps(report, indent=None if args.json else 1))
    return 0
