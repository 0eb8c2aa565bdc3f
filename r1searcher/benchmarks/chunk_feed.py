"""``r1searcher bench chunk_feed``: a multi-token feed's last position, strided view vs gathered rows.

Every prompt and every inserted document reaches the model as a chunk of ``T > 1`` tokens per row,
of which only the last position's logits are needed. ``logits_to_keep=1`` makes transformers slice
``hidden[:, -1:, :]``, a strided ``[B, 1, H]`` view; torch's CPU linear on a strided 3-D input falls
back to a batched matmul that copies the vocabulary projection once per row (for bf16 on an
AVX512-BF16 CPU, Qwen-0.5B: ~0.6 s a row). The generator now passes an index tensor
(``rollout.generator.last_position``): the rows are gathered, contiguous, and the projection is one
matmul. This bench measures, for each dtype, in one run:

- the projection alone: ``F.linear`` of the last position of ``[B, T, H]`` hidden states, strided
  view against gathered rows;
- the demo recipe's whole rollout (as ``bench bf16_mismatch``: chat prompt with the worked example,
  4 questions x 8 samples, T 0.8, top-p 0.95, <= 4 searches) with the old path (``last_position``
  returning 1) against the current one, with the time in multi-token feeds and in decode steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

HELP = "a chunk's last-position logits: strided view (logits_to_keep=1) vs gathered rows, alone and in a rollout"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="qwen-coder-0.5b", help="embedded model name or HF folder (demo: qwen-coder-0.5b)")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated dtypes")
    p.add_argument("--rows", type=int, default=32, help="rows of the projection-only measurement")
    p.add_argument("--questions", type=int, default=4, help="held-out 2-hop questions of the synthetic world")
    p.add_argument("--n", type=int, default=8, help="samples per question")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-searches", type=int, default=4)
    p.add_argument("--max-new-tokens-per-turn", type=int, default=160)
    p.add_argument("--max-response-tokens", type=int, default=480)
    p.add_argument("--no-rollout", action="store_true", help="the projection only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def projection_seconds(head, rows: int, T: int = 64, repeats: int = 3) -> dict:
    """Median seconds of ``head`` on the last position of ``[rows, T, H]`` hidden states: the
    strided ``[:, -1:, :]`` view, and the same rows gathered by an index tensor."""
    import torch

    h = torch.randn(rows, T, head.in_features, dtype=head.weight.dtype)
    out = {}
    for name, pick in (("strided", lambda: h[:, -1:, :]), ("gathered", lambda: h[:, torch.tensor([T - 1]), :])):
        times = []
        with torch.no_grad():
            for _ in range(repeats + 1):
                x = pick()
                t0 = time.perf_counter()
                head(x)
                times.append(time.perf_counter() - t0)
        out[name] = sorted(times[1:])[repeats // 2]
    return out


@contextlib.contextmanager
def _feed_clock(acc: dict):
    """Time every ``HFGenerator.feed``: multi-token chunks and one-token decode steps apart."""
    import torch

    from r1searcher.rollout import generator as G

    orig = G.HFGenerator.feed

    def feed(self, state, chunks):
        t0 = time.perf_counter()
        orig(self, state, chunks)
        key = "decode_s" if isinstance(chunks, torch.Tensor) else "chunk_s"
        acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0

    G.HFGenerator.feed = feed
    try:
        yield
    finally:
        G.HFGenerator.feed = orig


@contextlib.contextmanager
def _strided_last_position():
    """The old path: ``logits_to_keep=1`` for every chunk."""
    from r1searcher.rollout import generator as G

    orig = G.last_position
    G.last_position = lambda T, device: 1
    try:
        yield
    finally:
        G.last_position = orig


def rollout_seconds(model, tok, index, questions, rcfg, retrieval_cfg, seed: int, strided: bool) -> dict:
    """One rollout of ``questions`` (the engine's batch), timed by phase."""
    import torch

    from r1searcher.rollout.engine import RolloutEngine

    engine = RolloutEngine(model, tok, index, rcfg, retrieval_cfg)
    acc: dict = {}
    with torch.no_grad(), _feed_clock(acc), (_strided_last_position() if strided else contextlib.nullcontext()):
        t0 = time.perf_counter()
        trajs = engine.rollout(questions, seed=seed)
        wall = time.perf_counter() - t0
    st = engine.stats
    return {"rollout_s": wall, "chunk_s": acc.get("chunk_s", 0.0), "decode_s": acc.get("decode_s", 0.0),
            "policy_tokens": st.policy_tokens,
            "chunk_tokens": st.prompt_tokens + st.inserted_tokens, "searches_per_seq": round(st.searches / max(1, len(trajs)), 2)}


def run(args: argparse.Namespace) -> int:
    import torch

    from r1searcher.benchmarks import machine_info
    from r1searcher.benchmarks.bf16_mismatch import demo_rollout_setup
    from r1searcher.config import ModelConfig
    from r1searcher.models.loading import load_policy

    if args.threads:
        torch.set_num_threads(args.threads)
    index, questions, rcfg, retrieval_cfg = demo_rollout_setup(args)
    results: dict[str, dict] = {}
    for dt in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        model, tok = load_policy(ModelConfig(name=args.model, dtype=dt, lora=True, lora_layers="top:8"), training=True)
        model.eval()
        r = {"projection_s": projection_seconds(model.get_output_embeddings(), args.rows)}
        if not args.no_rollout:
            for path in ("strided", "gathered"):
                r[path] = rollout_seconds(model, tok, index, questions, rcfg, retrieval_cfg, args.seed, path == "strided")
        results[dt] = r
        del model
    report = {"machine": machine_info(), "model": args.model, "rows": args.rows, "questions": len(questions),
              "n": args.n, "results": results}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"machine: {report['machine']}")
    for dt, r in results.items():
        p = r["projection_s"]
        print(f"{dt}: last-position projection, {args.rows} rows: strided {p['strided'] * 1e3:.0f} ms, gathered "
              f"{p['gathered'] * 1e3:.0f} ms ({p['strided'] / max(p['gathered'], 1e-9):.1f}x)")
        if "strided" in r:
            for path in ("strided", "gathered"):
                x = r[path]
                print(f"  rollout {path:>8}: {x['rollout_s']:.1f} s (chunks {x['chunk_s']:.1f} s for {x['chunk_tokens']} "
                      f"tokens, decode {x['decode_s']:.1f} s for {x['policy_tokens']} policy tokens, {x['searches_per_seq']} searches/seq)")
            print(f"  rollout speed-up {r['strided']['rollout_s'] / max(r['gathered']['rollout_s'], 1e-9):.2f}x, "
                  f"chunk feeds {r['strided']['chunk_s'] / max(r['gathered']['chunk_s'], 1e-9):.1f}x")
    return 0
