"""``r1searcher demo``: the whole loop on the embedded model, before/after, in a time budget."""

from __future__ import annotations

import argparse

HELP = "train and evaluate a small model end to end (world, index, baselines, RL stages 1+2, after, report)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="synthetic", choices=["synthetic", "hotpotqa"])
    from r1searcher.demo import DemoSpec

    p.add_argument("--minutes", type=float, default=DemoSpec.minutes, help=f"wall-clock budget of the whole demo, evaluations included (default {DemoSpec.minutes:g})")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--entities", type=int, default=120, help="synthetic world size")
    p.add_argument("--eval-questions", type=int, default=40,
                   help="held-out questions per method (synthetic: 2-hop ones, plus --eval-one-hop 1-hop ones)")
    p.add_argument("--eval-one-hop", type=int, default=20, help="synthetic: held-out 1-hop questions per method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage2-weights", default="1:1,2:3,3:1",
                   help="synthetic: times each h-hop training question appears in stage 2's data, hop:weight,...")
    p.add_argument("--model", default="qwen-coder-0.5b",
                   help="qwen-coder-0.5b (installed by make demo), smollm2 (embedded), or a local HF folder")
    p.add_argument("overrides", nargs="*", help="training config overrides key=value (e.g. train.lr=2e-5)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.demo import DemoSpec, run_demo

    spec = DemoSpec(task=args.task, minutes=args.minutes, out=args.out, entities=args.entities,
                    eval_questions=args.eval_questions, eval_one_hop=args.eval_one_hop, seed=args.seed, model=args.model,
                    stage2_weights=args.stage2_weights,
                    overrides=tuple(args.overrides))
    run_demo(spec)
    return 0
