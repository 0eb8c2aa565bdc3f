"""The demo: RL teaches the embedded model to search, end to end, on a laptop CPU.

    world (fictional, seeded) → BM25 index → evaluate before (naive, rag, iterative)
    → stage 1 RL (reward: use retrieval + format) → stage 2 RL (reward: answer F1 − format penalty)
    → evaluate after (the trained policy, and rag with the same base model) → report.md, metrics.json, PNGs

The wall-clock budget (``minutes``) is split between the phases; training stops at its share and
always leaves a checkpoint. Every number in the report is measured in this run.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

from r1searcher.config import Config, load_config


@dataclass
class DemoSpec:
    task: str = "synthetic"  # synthetic | hotpotqa
    minutes: float = 20.0
    out: str = "runs/demo"
    entities: int = 120
    seed: int = 0
    eval_questions: int = 40  # held-out questions per method (before and after): one batch of 40
    eval_hops: int = 2  # synthetic: evaluate on questions of this many hops (0 = all)
    stage1_share: float = 0.6  # of the training time (the rest goes to stage 2); stage 1 is where a
    # small model finds signal first: in our 22-min run every stage-2 group had the same reward (−2)
    model: str = "smollm2"
    overrides: tuple = ()


def demo_config(spec: DemoSpec, data_path: str, index_dir: str) -> Config:
    """The demo's training recipe (stage-independent part): small, fast, logged at every step."""
    cfg = load_config(None, [
        f"model.name={spec.model}",
        f"data.path={data_path}",
        f"retrieval.index={index_dir}",
        "retrieval.top_k=2",
        "retrieval.max_doc_words=40",
        "rollout.n_samples=8",  # groups of 8: at a ~10% starting search rate, most groups of 4 are all-zero
        "rollout.temperature=0.8",
        "rollout.top_p=0.95",
        "rollout.few_shot=true",
        "rollout.max_searches=4",
        "rollout.max_new_tokens_per_turn=64",
        "rollout.max_response_tokens=256",
        "rollout.batch_size=32",
        "train.questions_per_step=4",
        "train.micro_batch_size=8",  # one group per micro-batch: its prompt is encoded once (train.share_prompt)
        "model.lora=true",
        "model.lora_layers=top:8",  # the backward pass stops after the top 8 of 30 layers
        "train.algo=grpo",
        "train.lr=1e-3",  # LoRA on 135M: 2e-4 moved nothing in 3 steps; see configs/stage1-synthetic.yaml
        "train.drop_uniform_groups=true",  # all-equal groups carry no signal: skip their backward
        "train.kl_coef=0.0",
        "train.max_steps=1000",
        "train.save_every=5",
        "train.keep_last=1",
        f"train.seed={spec.seed}",
        *spec.overrides,
    ])
    return cfg


def _prepare_synthetic(spec: DemoSpec, out: Path) -> dict:
    from r1searcher.data.synthetic import generate_world
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages

    world = generate_world(spec.entities, spec.seed)
    paths = world.save(out / "world")
    held = [q for q in world.heldout if not spec.eval_hops or q.hops == spec.eval_hops][: spec.eval_questions]
    eval_path = out / "world" / "eval.jsonl"
    with open(eval_path, "w") as f:
        for q in held:
            f.write(json.dumps({"id": q.id, "question": q.question, "answers": q.answers, "hops": q.hops,
                                "supporting_ids": q.supporting_ids}) + "\n")
    index = BM25Index.build(list(read_passages(paths["corpus"])))
    index.save(out / "index")
    return {"train": str(paths["train"]), "eval": str(eval_path), "index": str(out / "index"),
            "corpus": str(paths["corpus"]), "n_passages": len(world.passages)}


def _prepare_hotpotqa(spec: DemoSpec, out: Path) -> dict:
    from r1searcher.data.qa import resolve_dataset
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages

    shared = resolve_dataset("hotpotqa").parent.parent  # …/shared/data
    corpus = shared / "corpus" / "passages.jsonl"
    if not corpus.exists():
        raise FileNotFoundError(f"--task hotpotqa needs the shared corpus at {corpus} (set R1SEARCHER_DATA)")
    index_dir = out / "index"
    if not (index_dir / "manifest.json").exists():
        BM25Index.build(list(read_passages(corpus))).save(index_dir)
    # Train on dev_extra/hotpotqa (disjoint from eval/, answerable in this corpus; see MANIFEST.md).
    return {"train": str(shared / "dev_extra" / "hotpotqa.jsonl"), "eval": str(resolve_dataset("hotpotqa")),
            "index": str(index_dir), "corpus": str(corpus)}


def _evaluate(model, tok, retriever, cfg: Config, method: str, data: str, out: Path, limit: int, gold=None) -> dict:
    from r1searcher.evaluate import EvalSpec, evaluate_dataset
    from r1searcher.rollout.engine import RolloutEngine

    engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval)
    spec = EvalSpec(method=method, limit=limit, batch_size=40, top_k=cfg.retrieval.top_k,
                    max_doc_words=cfg.retrieval.max_doc_words, gold_passages=gold or {})
    return evaluate_dataset(engine, retriever, data, out / method, spec)


def run_demo(spec: DemoSpec) -> dict:
    import torch

    from r1searcher.models import load_policy
    from r1searcher.retrieval.index import load_index
    from r1searcher.rl.checkpoint import latest_checkpoint, resolve_model_dir
    from r1searcher.rl.trainer import train

    t_start = time.perf_counter()
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[demo] task={spec.task} budget={spec.minutes} min → {out}")
    data = _prepare_synthetic(spec, out) if spec.task == "synthetic" else _prepare_hotpotqa(spec, out)
    cfg = demo_config(spec, data["train"], data["index"])
    if spec.task == "hotpotqa":  # real passages are longer: the settings of bench/eval_table.sh
        cfg.retrieval.top_k, cfg.retrieval.max_doc_words = 3, 60
        cfg.rollout.max_new_tokens_per_turn, cfg.rollout.max_response_tokens = 80, 320
    retriever = load_index(data["index"])
    budget_s = spec.minutes * 60
    limit = spec.eval_questions

    # 1. before: the untrained model, three ways
    model, tok = load_policy(cfg.model)
    before = {}
    for method in ("naive", "rag", "iterative"):
        with torch.no_grad():
            before[method] = _evaluate(model, tok, retriever, cfg, method, data["eval"], out / "before", limit)
        print(f"[demo] before {method}: F1 {before[method]['f1']}, searches/q {before[method]['searches_per_question']}")
    del model

    # 2. RL: stage 1 then stage 2, in what the budget leaves after set-up, the evaluations before and
    #    one more evaluation after (measured: a third of the three before), at least one minute.
    spent = time.perf_counter() - t_start
    eval_s = sum(m.get("seconds_per_question", 0.0) * m["n"] for m in before.values())
    train_s = max(60.0, budget_s - spent - eval_s / 3 - 20.0)
    runs = {}
    for stage, share in ((1, spec.stage1_share), (2, 1.0 - spec.stage1_share)):
        scfg = copy.deepcopy(cfg)
        scfg.reward.stage = stage
        scfg.train.max_minutes = train_s * share / 60
        if stage == 2:
            scfg.train.init_from = str(runs[1])
        run_dir = out / f"stage{stage}"
        resume = latest_checkpoint(run_dir) is not None
        print(f"[demo] stage {stage}: up to {scfg.train.max_minutes:.1f} min")
        runs[stage] = train(scfg, run_dir, resume=resume)
    final_model = resolve_model_dir(latest_checkpoint(runs[2]))

    # 3. after: the trained policy
    model, tok = load_policy(cfg.model, path=str(final_model))
    after = {}
    with torch.no_grad():
        after["rl"] = _evaluate(model, tok, retriever, cfg, "rl", data["eval"], out / "after", limit)
    print(f"[demo] after rl: F1 {after['rl']['f1']}, searches/q {after['rl']['searches_per_question']}")

    metrics = {
        "task": spec.task,
        "minutes": round((time.perf_counter() - t_start) / 60, 2),
        "setup_seconds": round(spent, 1),
        "before": {k: _short(v) for k, v in before.items()},
        "after": {k: _short(v) for k, v in after.items()},
        "runs": {str(k): str(v) for k, v in runs.items()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    from r1searcher.demo_report import write_report

    write_report(out, metrics, before, after, runs)
    print(f"[demo] report: {out / 'report.md'}")
    return metrics


def _short(m: dict) -> dict:
    keep = ("n", "em", "cover_em", "f1", "searches_per_question", "stop_reasons", "by_hops", "seconds_per_question")
    return {k: m[k] for k in keep if k in m}
