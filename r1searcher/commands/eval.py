"""``r1searcher eval``: a method (trained policy or baseline) over QA datasets → predictions + metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "evaluate a policy or a baseline (rl, iterative, naive, rag, oracle) on QA datasets"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r1searcher.baselines import METHODS
    from r1searcher.commands._common import add_retriever_arguments

    p.add_argument("--method", default="rl", choices=METHODS)
    p.add_argument("--model", default="smollm2", help="embedded name, HF folder or a checkpoint's model folder")
    p.add_argument("--data", nargs="+", required=True, help="dataset names (hotpotqa, 2wiki, musique, bamboogle) or JSONL files")
    add_retriever_arguments(p)
    p.add_argument("--corpus", help="corpus JSONL with the gold passages (oracle)")
    p.add_argument("--limit", type=int, default=0, help="first N questions of each dataset (0 = all)")
    p.add_argument("--out", required=True, help="output folder: OUT/<dataset>/{predictions.jsonl,metrics.json}")
    p.add_argument("-k", "--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--config", help="YAML config (rollout limits, prompt style)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. rollout.max_searches=9)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.commands._common import open_retriever
    from r1searcher.config import load_config
    from r1searcher.data.qa import resolve_dataset
    from r1searcher.evaluate import EvalSpec, evaluate_dataset, format_table
    from r1searcher.models import load_policy
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.rollout.engine import RolloutEngine

    # Paper evaluation: up to 9 searches, greedy; the untrained tag loop gets the worked example.
    defaults = ["rollout.max_searches=9"] + (["rollout.few_shot=true"] if args.method == "iterative" else [])
    cfg = load_config(args.config, defaults + list(args.overrides))
    cfg.model.name = args.model
    cfg.retrieval.top_k = args.top_k
    retriever = open_retriever(args, cfg)
    gold = {}
    if args.method == "oracle":
        if not args.corpus:
            raise ValueError("--method oracle needs --corpus FILE holding the gold passages")
        gold = {p.id: p for p in read_passages(args.corpus)}
    model, tok = load_policy(cfg.model)
    engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval)
    spec = EvalSpec(method=args.method, limit=args.limit, batch_size=args.batch_size, top_k=args.top_k,
                    max_doc_words=cfg.retrieval.max_doc_words, gold_passages=gold)
    results = {}
    for name in args.data:
        path = resolve_dataset(name)
        results[path.stem] = evaluate_dataset(engine, retriever, path, Path(args.out) / path.stem, spec)
    if args.json:
        print(json.dumps(results))
    else:
        print(format_table(results))
    return 0
