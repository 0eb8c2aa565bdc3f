"""``r1searcher select-data``: label questions easy / medium / difficult by rollouts needed (paper §2.1)."""

from __future__ import annotations

import argparse

HELP = "label training questions easy/medium/difficult by the rollouts a model needs to answer them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2")
    p.add_argument("--data", required=True, help="QA JSONL file or dataset name")
    from r1searcher.commands._common import add_retriever_arguments

    add_retriever_arguments(p)
    p.add_argument("--rollouts", type=int, default=32, help="samples per question (the paper's scale: >20)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--out", required=True, help="output JSONL with a 'difficulty' field")
    p.add_argument("--config")
    p.add_argument("overrides", nargs="*")


def run(args: argparse.Namespace) -> int:
    from r1searcher.commands._common import open_retriever
    from r1searcher.config import load_config
    from r1searcher.data.qa import load_qa, resolve_dataset
    from r1searcher.models.loading import load_policy
    from r1searcher.rollout.engine import RolloutEngine
    from r1searcher.eval.select_data import select

    cfg = load_config(args.config, list(args.overrides)).derive({"model.name": args.model})
    records = load_qa(resolve_dataset(args.data), limit=args.limit or None)
    model, tok = load_policy(cfg.model)
    engine = RolloutEngine(model, tok, open_retriever(args, cfg), cfg.rollout, cfg.retrieval)
    counts = select(engine, records, args.out, n=args.rollouts, seed=cfg.rollout.seed)
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), f"→ {args.out}")
    return 0
