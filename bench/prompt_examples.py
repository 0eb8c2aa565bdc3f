"""The untrained loop's F1 per question kind under each set of worked examples (BENCHMARKS.md,
"Worked examples whose documents state one fact").

    python bench/prompt_examples.py SEEDS VARIANTS [N]
    python bench/prompt_examples.py 0,1 old,2,3 16

A variant is a ``rollout.shots`` value (prompts.SHOTS) or ``old``: the single worked example the
prompt had before (its birthplace passage also named the town's country, kept here verbatim). The
demo's world and recipe for each seed (``demo_config`` as it is now: Qwen2.5-0.5B, chat prompt, BM25
top 2 of ≤48 words, 160 tokens a turn, 640 a response ending at ``</answer>``; the BENCHMARKS table was
measured before that recipe, with 480 tokens and no ``end_at_answer``), greedy; the first N training questions of three kinds: 2-hop whose answer is a
country, other 2-hop, 1-hop. Writes runs/bench-prompt-examples/s<seed>/<variant>/ and prints, per
kind, F1 (points), searches per question and the count.
"""
import json, sys, time
from pathlib import Path

import torch

from r1searcher.config import DemoSpec, derive
from r1searcher.data.synthetic import generate_world
from r1searcher.demo.run import _build_index, _write_questions, demo_config
from r1searcher.eval.evaluate import EvalSpec, evaluate_dataset
from r1searcher.models.loading import load_policy
from r1searcher.retrieval.corpus import read_passages
from r1searcher.retrieval.index import load_index
from r1searcher.rollout import prompts
from r1searcher.rollout.engine import RolloutEngine
from r1searcher.rollout.tags import DOCS_CLOSE, DOCS_OPEN, QUERY_CLOSE, QUERY_OPEN

OLD = [("In which country was the founder of Veltrix Labs born?", (
    " I need to find who founded Veltrix Labs, then where that person was born. "
    f"{QUERY_OPEN} Veltrix Labs founder {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Veltrix Labs: Veltrix Labs is a robotics company founded by Maren Oduya in 2004.\n{DOCS_CLOSE}\n\n"
    "Veltrix Labs was founded by Maren Oduya. Now I need where Maren Oduya was born. "
    f"{QUERY_OPEN} Maren Oduya birthplace {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Maren Oduya: Maren Oduya is an engineer who was born in Kelvara, a town in Norland.\n{DOCS_CLOSE}\n\n"
    "Maren Oduya was born in Kelvara, which is in Norland. </think>\n\n<answer> Norland </answer>"))]

seeds = [int(s) for s in sys.argv[1].split(",")]
variants = sys.argv[2].split(",")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 16
current = prompts.examples
for seed in seeds:
    out = Path(f"runs/bench-prompt-examples/s{seed}")
    spec = DemoSpec(seed=seed)
    world = generate_world(spec.entities, seed, prose=spec.prose)
    paths = world.save(out / "world")
    countries = {e.name for e in world.entities if e.kind == "country"}
    two = [q for q in world.train if q.hops == 2]
    kinds = {"country 2-hop": [q for q in two if q.answers[0] in countries][:n],
             "other 2-hop": [q for q in two if q.answers[0] not in countries][:n],
             "1-hop": [q for q in world.train if q.hops == 1][:n]}
    _write_questions([q for qs in kinds.values() for q in qs], out / "questions.jsonl")
    kind_of = {q.id: k for k, qs in kinds.items() for q in qs}
    _build_index(list(read_passages(paths["corpus"])), out / "index")
    cfg = demo_config(spec, str(out / "questions.jsonl"), str(out / "index"))
    retriever = load_index(str(out / "index"))
    model, tok = load_policy(cfg.model)
    for v in variants:
        prompts.examples = (lambda shots=1: OLD) if v == "old" else current
        vcfg = cfg if v == "old" else derive(cfg, {"rollout.shots": int(v)})
        engine = RolloutEngine(model, tok, retriever, vcfg.rollout, vcfg.retrieval)
        t0 = time.time()
        with torch.no_grad():
            evaluate_dataset(engine, retriever, str(out / "questions.jsonl"), out / v,
                             EvalSpec(method="iterative", batch_size=64, top_k=2, max_doc_words=48, restart=True), progress=False)
        agg: dict[str, list] = {}
        for r in map(json.loads, open(out / v / "predictions.jsonl")):
            a = agg.setdefault(kind_of[r["id"]], [0.0, 0, 0])
            a[0] += r["f1"]; a[1] += r["n_searches"]; a[2] += 1
        cells = "  ".join(f"{k}: F1 {100 * f / c:.1f}, {s / c:.2f} s/q (n={c})" for k, (f, s, c) in agg.items())
        print(f"seed {seed} shots {v}: {cells}  [{time.time() - t0:.0f}s]", flush=True)
    prompts.examples = current
