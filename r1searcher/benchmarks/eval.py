"""``r1searcher bench eval``: the evaluation harness's overhead over the rollout engine's raw throughput.

The same questions, the same greedy engine, the same batch size, two ways, alternated twice (the
faster of each kept): (a) raw ``engine.rollout`` over the batches, nothing else; (b)
``evaluate_dataset`` (load the QA file, build prompts, roll out, score every prediction, append and
fsync each batch, the progress bar, metrics.json). Greedy decoding makes both produce the same
tokens (checked), so the difference is the harness. Goal: overhead ≤ 10%.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from r1searcher.util.files import read_jsonl

HELP = "eval harness: questions/s of `eval` vs the rollout engine's raw throughput (overhead %)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", type=int, default=40, help="held-out synthetic questions")
    p.add_argument("--batch", type=int, default=20, help="questions per engine call (EvalSpec.batch_size)")
    p.add_argument("--method", default="iterative", help="iterative (searches) or rag/naive")
    p.add_argument("--model", default="smollm2", help="embedded model name or HF folder")
    p.add_argument("--max-response", type=int, default=256, help="rollout.max_response_tokens")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    from r1searcher.benchmarks import machine_info
    from r1searcher.config import load_config
    from r1searcher.data.qa import load_qa
    from r1searcher.data.synthetic import generate_world
    from r1searcher.eval.evaluate import EvalSpec, evaluate_dataset, run_method
    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.rollout.engine import RolloutEngine

    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        work = Path(tmp)
        world = generate_world(120, 0)
        paths = world.save(work / "world")
        data = work / "eval.jsonl"
        data.write_text("".join(json.dumps({"id": q.id, "question": q.question, "answers": q.answers}) + "\n"
                                for q in world.heldout[: args.questions]))
        retriever = BM25Index.build(list(read_passages(paths["corpus"])))
        cfg = load_config(None, [f"model.name={args.model}", "rollout.few_shot=true", "rollout.max_searches=4",
                                 "rollout.max_new_tokens_per_turn=80", f"rollout.max_response_tokens={args.max_response}",
                                 "retrieval.top_k=2", "retrieval.max_doc_words=40"])
        model, tok = load_policy(cfg.model)
        engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval)
        spec = EvalSpec(method=args.method, batch_size=args.batch, top_k=2, max_doc_words=40)
        records = load_qa(data)

        def raw() -> list[str]:
            texts = []
            for i in range(0, len(records), args.batch):
                batch = records[i : i + args.batch]
                texts += [t.text for t in run_method(engine, retriever, batch, spec)]
            return texts

        def harness(k: int) -> list[str]:
            out = work / f"eval{k}"
            evaluate_dataset(engine, retriever, data, out, spec, progress=True)
            return [r["gen_text_store"] for r in read_jsonl(out / "predictions.jsonl", on_bad="raise").values()]

        times: dict[str, list[float]] = {"raw": [], "eval": []}
        texts = {}
        with torch.no_grad():
            for k in range(2):
                for name in ("raw", "eval"):
                    t0 = time.perf_counter()
                    texts[name] = raw() if name == "raw" else harness(k)
                    times[name].append(time.perf_counter() - t0)
    raw_s, eval_s = min(times["raw"]), min(times["eval"])
    n = len(records)
    result = {
        "machine": info, "method": args.method, "questions": n, "batch": args.batch,
        "raw_s": raw_s, "eval_s": eval_s, "raw_q_per_s": n / raw_s, "eval_q_per_s": n / eval_s,
        "overhead": eval_s / raw_s - 1, "same_outputs": texts["raw"] == texts["eval"], "all_times": times,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"machine: {info.get('cpu')} ({info.get('torch_cpu_capability')}, {info.get('threads')} threads)")
    print(f"{args.method}, {n} questions in batches of {args.batch}, greedy: raw engine {n / raw_s:.2f} q/s "
          f"({raw_s:.1f} s), eval harness {n / eval_s:.2f} q/s ({eval_s:.1f} s): overhead "
          f"{100 * result['overhead']:+.1f}% (goal ≤ 10%); identical outputs: {result['same_outputs']}")
    print("  all runs: " + ", ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)} s" for k, vs in times.items()))
    return 0
