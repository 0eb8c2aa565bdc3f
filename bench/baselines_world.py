"""Baselines on the fictional world, per hop count (BENCHMARKS.md "Competent baselines").

    python bench/baselines_world.py MODEL METHODS [THREADS] [overrides…]
    python bench/baselines_world.py smollm2 naive,rag,oracle 1
    python bench/baselines_world.py qwen-coder-0.5b rag,oracle,iterative 1

World generate_world(120, 0), the first 40 held-out 1-hop and 40 2-hop questions, BM25 top-2 of ≤40
words, greedy; writes runs/bench-baselines-MODEL/<method>-<hops>/ and prints F1, cover-EM,
searches per question and stop reasons per cell.
"""
import json, sys, time, torch
from pathlib import Path
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
from r1searcher.data.synthetic import generate_world
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.retrieval.corpus import read_passages
from r1searcher.config import load_config
from r1searcher.models.loading import load_policy
from r1searcher.rollout.engine import RolloutEngine
from r1searcher.eval.evaluate import EvalSpec, evaluate_dataset
model_name = sys.argv[1]; methods = sys.argv[2].split(",")
out = Path(f"runs/bench-baselines-{model_name}"); out.mkdir(exist_ok=True, parents=True)
world = generate_world(120, 0); paths = world.save(out / "world")
for hops in (1, 2):
    held = [q for q in world.heldout if q.hops == hops][:40]
    with open(out / f"eval{hops}.jsonl", "w") as f:
        for q in held:
            f.write(json.dumps({"id": q.id, "question": q.question, "answers": q.answers, "hops": q.hops, "supporting_ids": q.supporting_ids}) + "\n")
passages = list(read_passages(paths["corpus"]))
gold = {p.id: p for p in passages}
retr = BM25Index.build(passages)
extra = sys.argv[4:] if len(sys.argv) > 4 else []
cfg = load_config(None, [f"model.name={model_name}", "rollout.prompt=chat", "rollout.few_shot=true", "rollout.max_searches=4",
    "rollout.max_new_tokens_per_turn=160", "rollout.max_response_tokens=480", "retrieval.top_k=2", "retrieval.max_doc_words=40", "rollout.batch_size=40"] + extra)
model, tok = load_policy(cfg.model)
eng = RolloutEngine(model, tok, retr, cfg.rollout, cfg.retrieval)
for m in methods:
    for hops in (1, 2):
        t0 = time.time()
        spec = EvalSpec(method=m, batch_size=40, top_k=2, max_doc_words=40, gold_passages=gold)
        with torch.no_grad():
            r = evaluate_dataset(eng, retr, out / f"eval{hops}.jsonl", out / f"{m}-{hops}", spec, progress=False)
        print(m, hops, "f1", r["f1"], "cem", r["cover_em"], "s/q", r["searches_per_question"], r["stop_reasons"], f"{time.time()-t0:.0f}s", flush=True)
