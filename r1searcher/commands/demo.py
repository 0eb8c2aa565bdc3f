"""``r1searcher demo``: the whole loop on the embedded model, before/after, in a time budget.

Each flag's default and help are the ``demo`` section's (:class:`r1searcher.config.DemoSpec`): written once.
"""

from __future__ import annotations

import argparse
import dataclasses

HELP = "train and evaluate a small model end to end (world, index, baselines, RL stages 1+2, after, report)"

#: flag → DemoSpec field (the flags the demo has always had)
FLAGS = {"--task": "task", "--minutes": "minutes", "--out": "out", "--entities": "entities",
         "--eval-questions": "eval_questions", "--eval-one-hop": "eval_one_hop", "--seed": "seed",
         "--stage2-weights": "stage2_weights", "--model": "model"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r1searcher.config import DemoSpec
    from r1searcher.settings.fields import field_help

    fields = {f.name: f for f in dataclasses.fields(DemoSpec)}
    for flag, name in FLAGS.items():
        f = fields[name]
        kw = {"choices": list(f.metadata["choices"])} if f.metadata.get("choices") else {"type": type(f.default)}
        p.add_argument(flag, default=f.default, help=f"{field_help(f)} (default {f.default})", **kw)
    p.add_argument("overrides", nargs="*", help="training config overrides key=value (e.g. train.lr=2e-5)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.config import DemoSpec
    from r1searcher.demo.run import run_demo

    spec = DemoSpec(**{name: getattr(args, name) for name in FLAGS.values()}, overrides=tuple(args.overrides))
    run_demo(spec)
    return 0
