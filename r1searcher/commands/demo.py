"""``r1searcher demo``: the whole loop on the embedded model, before/after, in a time budget."""

from __future__ import annotations

import argparse

HELP = "train and evaluate the embedded model end to end (world, index, before, RL stages 1+2, after, report)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="synthetic", choices=["synthetic", "hotpotqa"])
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget for the whole demo")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--entities", type=int, default=120, help="synthetic world size")
    p.add_argument("--eval-questions", type=int, default=40, help="held-out questions per method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="smollm2")
    p.add_argument("overrides", nargs="*", help="training config overrides key=value (e.g. train.lr=2e-5)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.demo import DemoSpec, run_demo

    spec = DemoSpec(task=args.task, minutes=args.minutes, out=args.out, entities=args.entities,
                    eval_questions=args.eval_questions, seed=args.seed, model=args.model,
                    overrides=tuple(args.overrides))
    run_demo(spec)
    return 0
