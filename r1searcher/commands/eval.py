"""``r1searcher eval``: a method (trained policy or baseline) over QA datasets → predictions + metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r1searcher.commands._common import int_at_least

HELP = "evaluate a policy or a baseline (rl, iterative, naive, rag, oracle) on QA datasets"

_count = int_at_least(0, "0 (all) or more")
_positive = int_at_least(1, "1 or more")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r1searcher.eval.baselines import METHODS
    from r1searcher.commands._common import add_retriever_arguments

    p.add_argument("--method", default=None, choices=list(METHODS), help="default: eval.method of --config, else rl")
    p.add_argument("--model", help="embedded name (smollm2, qwen-coder-0.5b), HF folder, LoRA adapter, checkpoint or "
                   "training run folder (its latest checkpoint); default: --config's model.name, else smollm2")
    p.add_argument("--data", nargs="+", required=True, help="dataset names (hotpotqa, 2wiki, musique, bamboogle) or JSONL files")
    add_retriever_arguments(p)
    p.add_argument("--corpus", help="corpus JSONL with the gold passages (oracle)")
    p.add_argument("--limit", type=_count, default=None, help="first N questions of each dataset (0 = all; default: "
                   "eval.limit, 0)")
    p.add_argument("--out", required=True, help="output folder: OUT/<dataset>/{predictions.jsonl,metrics.json,run.json}; "
                   "a rerun continues what is there (same setup and data only), one run at a time")
    p.add_argument("--restart", action="store_true",
                   help="discard what OUT/<dataset>/ holds (predictions, metrics, run.json) and evaluate from scratch, "
                        "e.g. after the data file, the index or the model changed")
    p.add_argument("-k", "--top-k", type=_positive, default=None,
                   help="passages per search (default: retrieval.top_k of --config or an override, else 5 as the paper)")
    p.add_argument("--batch-size", type=_positive, default=None, help="questions rolled out together (default: "
                   "eval.batch_size, 16)")
    p.add_argument("--config", help="YAML config (rollout limits, prompt style)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. rollout.max_searches=9)")


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from r1searcher.eval.baselines import get_method
    from r1searcher.commands._common import open_retriever
    from r1searcher.config import load_config, save_config
    from r1searcher.data.qa import resolve_dataset
    from r1searcher.eval.evaluate import PREDICTIONS, EvalSpec, check_provenance, evaluate_dataset, format_table
    from r1searcher.util.folderlock import folder_lock
    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.rollout.engine import RolloutEngine

    # Paper evaluation: up to eval.max_searches (9) searches, greedy; then the method's own defaults
    # (iterative: the untrained tag loop gets the worked example), then the user's overrides; the flags win.
    user = load_config(args.config, list(args.overrides)).eval
    method = get_method(args.method or user.method)
    defaults = [f"rollout.max_searches={user.max_searches}", *method.config_overrides]
    cfg = load_config(args.config, defaults + list(args.overrides))
    flags = {"model.name": args.model} if args.model else {}
    flags |= {f"eval.{k}": v for k, v in (("method", method.name), ("limit", args.limit), ("batch_size", args.batch_size))
              if v is not None}
    if args.top_k is not None:  # the flag wins; then --config / retrieval.top_k=; then the paper's 5
        flags["retrieval.top_k"] = args.top_k
    elif not args.config and not any(o.startswith("retrieval.top_k=") for o in args.overrides):
        flags["retrieval.top_k"] = cfg.eval.top_k
    cfg = cfg.derive(flags)
    args.model, args.top_k = cfg.model.name, cfg.retrieval.top_k
    args.method, args.limit, args.batch_size = cfg.eval.method, cfg.eval.limit, cfg.eval.batch_size
    retriever = open_retriever(args, cfg)
    gold = {}
    if method.needs_gold:
        if not args.corpus:
            raise ValueError(f"--method {method.name} needs --corpus FILE holding the gold passages")
        gold = {p.id: p for p in read_passages(args.corpus)}
    spec = EvalSpec(method=args.method, limit=args.limit, batch_size=args.batch_size, top_k=args.top_k,
                    max_doc_words=cfg.retrieval.max_doc_words, gold_passages=gold, provenance=provenance(args, cfg),
                    restart=args.restart)
    paths = [resolve_dataset(name) for name in args.data]
    stems = [p.stem for p in paths]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"two --data files share the name {', '.join(twice)} (each writes OUT/<name>/): "
                         f"evaluate them into different --out folders")
    results = {}
    with ExitStack() as held:
        for path in paths:  # one run per folder, for the whole run (another process is refused)
            held.enter_context(folder_lock(Path(args.out) / path.stem, "r1searcher eval"))
        for path in paths:  # refuse to continue another setup's predictions before loading the model
            out = Path(args.out) / path.stem
            pred = out / PREDICTIONS
            if not args.restart and pred.exists() and pred.stat().st_size:
                check_provenance(out, spec, True, path)
        model, tok = load_policy(cfg.model)
        engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval)
        for path in paths:
            results[path.stem] = evaluate_dataset(engine, retriever, path, Path(args.out) / path.stem, spec)
            save_config(cfg, Path(args.out) / path.stem / "config.yaml")  # the whole config, beside run.json
    if args.json:
        print(json.dumps(results))
    else:
        print(format_table(results))
    stuck = {name: m["retriever_errors"] for name, m in results.items() if m.get("retriever_errors")}
    if stuck:
        print(f"r1searcher eval: error: {sum(stuck.values())} question(s) ended with retriever_error "
              f"({', '.join(f'{k} {v}' for k, v in stuck.items())}): the retriever was unreachable; "
              f"rerun the same command once it is back to retry them", file=sys.stderr)
        return 3
    return 0


def _model_identity(name: str) -> dict:
    """The model as given, and for a local folder what its weights are (a checkpoint's manifest
    hashes, else the weight files' sizes), so retraining into the same path is noticed."""
    p = Path(name).expanduser()
    if not p.exists():
        return {"model": name}
    from r1searcher.models.runs import MANIFEST, resolve_model_dir

    d = resolve_model_dir(p)
    man = d.parent / MANIFEST
    if man.exists():
        files = json.loads(man.read_text()).get("files", {})
        weights = {k: v.get("sha256", v["bytes"]) for k, v in files.items() if k.startswith("model/") and "safetensors" in k}
    else:
        weights = {f.name: f.stat().st_size for f in sorted(d.glob("*.safetensors"))}
    return {"model": str(d.resolve()), "weights": weights}


def provenance(args: argparse.Namespace, cfg) -> dict:
    """What predictions depend on besides the questions (recorded in each dataset's run.json): the
    model (and its weights' hashes), the retriever and, for ``--index``, what the index holds
    (``retrieval.manifest.index_fingerprint``: its manifest's build, or a corpus file's sha256; a server or
    the web is recorded by name only), k, prompt and rollout limits."""
    from r1searcher.retrieval.manifest import index_fingerprint

    index = None
    if getattr(args, "web", False):
        source = "web"
    elif getattr(args, "index", None):
        source = str(Path(args.index).expanduser().resolve())
        index = index_fingerprint(args.index)
    else:
        source = args.server
    r = cfg.rollout
    return {
        **_model_identity(args.model), "retriever": source, "index": index, "top_k": args.top_k,
        "corpus": str(Path(args.corpus).resolve()) if getattr(args, "corpus", None) else None,
        "prompt": {"style": r.prompt, "few_shot": r.few_shot, "shots": r.shots},
        "limits": {"max_searches": r.max_searches, "max_new_tokens_per_turn": r.max_new_tokens_per_turn,
                   "max_response_tokens": r.max_response_tokens, "max_doc_words": cfg.retrieval.max_doc_words},
        "model_dtype": cfg.model.dtype,
    }
