"""``r1searcher bench exploration``: what stage 2 can learn from at its first step, per rollout setting.

GRPO learns only from groups whose rewards differ, and it can only learn "search twice" from
groups in which some sample searched twice *and* scored better than its group-mates. This bench
samples the untrained (or any) policy on the demo world's 2-hop training questions, ``--n`` samples
a question, under each setting asked for (``--settings "rollout.temperature=1.0;rollout.shots=3"``:
semicolon-separated variants, each a comma-separated list of overrides; ``base`` = the demo recipe
as it is), and prints per setting, from the same questions and seed:

- ``signal``: share of groups whose stage-2 rewards are not all equal (the rest are dropped);
  ``f1_signal``: share whose F1 differs (signal about the answer, not only about the format);
- ``found_signal``: share of groups in which some samples retrieved a gold answer and others did not
  (what ``reward.found_bonus`` adds to the signal); ``found``: share of samples that retrieved it;
- ``two_search_wins``: share of groups in which a ≥2-search sample has the group's best reward
  and beats its mean (a positive advantage for searching twice);
- ``searches``: mean searches per sample; ``two_plus``: share of samples with ≥ 2 searches;
- ``f1``: mean F1; ``f1_1`` / ``f1_2``: mean F1 of 1-search and ≥2-search samples;
- ``closed``: share of samples with a well-formed answer (no format penalty), and ``closed_1`` /
  ``closed_2`` the same among 1-search and ≥2-search samples (the penalty is 2, F1 at most 1: a
  setting whose 2-search samples break the format more often teaches "search once");
- ``f1_explored`` / ``f1_stopped`` / ``f1_natural`` (with ``train.explore_share`` or
  ``train.stop_share`` in a setting): mean F1 of the exploring arm (made to search again,
  ``rollout/steer.ExploreSteer``), of the stopping arm (made to answer after ``train.stop_after``
  searches, ``StopSteer``) and of the samples that decide alone; ``explore_wins`` / ``stop_wins``:
  share of groups whose best F1 is in that arm only;
- wall seconds.

Rollouts only (no update): minutes per setting on a CPU, so recipe choices about exploration are
measured before hours of training are spent on them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

HELP = "stage-2 learning signal at step 0 per rollout setting (groups with signal, 2-search wins, F1 by searches)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="qwen-coder-0.5b", help="embedded model name, HF folder or run folder")
    p.add_argument("--questions", type=int, default=8, help="2-hop training questions of the demo world")
    p.add_argument("--hops", type=int, default=2, help="hop count of the questions sampled")
    p.add_argument("--n", type=int, default=8, help="samples per question (the group size)")
    p.add_argument("--seed", type=int, default=0, help="world seed and sampling seed")
    p.add_argument("--entities", type=int, default=120, help="world size (the demo's)")
    p.add_argument("--settings", default="base",
                   help="';'-separated variants of ','-separated overrides; 'base' = the demo recipe")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--save", help="folder: each setting's trajectories with rewards as samples-<i>.jsonl (r1searcher view)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def group_stats(rewards: list[float], searches: list[int], f1s: list[float], closed: list[bool], n: int,
                found: list[bool] | None = None) -> dict:
    """Statistics over groups of ``n`` consecutive samples (pure; lists of equal length)."""
    groups = [range(i, i + n) for i in range(0, len(rewards), n)]
    found = found if found is not None else [False] * len(rewards)
    signal = f1_signal = found_signal = two_wins = 0
    for g in groups:
        r = [rewards[i] for i in g]
        mean = sum(r) / len(r)
        if max(r) > min(r):
            signal += 1
        if max(f1s[i] for i in g) > min(f1s[i] for i in g):
            f1_signal += 1
        if len({found[i] for i in g}) > 1:
            found_signal += 1
        if any(searches[i] >= 2 and rewards[i] == max(r) and rewards[i] > mean for i in g):
            two_wins += 1
    one = [f for f, s in zip(f1s, searches) if s == 1]
    two = [f for f, s in zip(f1s, searches) if s >= 2]
    c1 = [c for c, s in zip(closed, searches) if s == 1]
    c2 = [c for c, s in zip(closed, searches) if s >= 2]
    k = max(1, len(rewards))
    return {
        "groups": len(groups), "signal": signal / max(1, len(groups)), "f1_signal": f1_signal / max(1, len(groups)),
        "found_signal": found_signal / max(1, len(groups)), "found": sum(found) / max(1, len(rewards)),
        "two_search_wins": two_wins / max(1, len(groups)),
        "searches": sum(searches) / k, "two_plus": sum(s >= 2 for s in searches) / k,
        "f1": sum(f1s) / k, "f1_1": sum(one) / len(one) if one else None, "f1_2": sum(two) / len(two) if two else None,
        "n_1": len(one), "n_2": len(two), "closed": sum(closed) / k,
        "closed_1": sum(c1) / len(c1) if c1 else None, "closed_2": sum(c2) / len(c2) if c2 else None,
    }


def arm_stats(f1s: list[float], samples: list[int], arm_of: Callable[[int], str] | None, n: int) -> dict:
    """With forced arms (``arm_of``: sample index → "explored", "stopped" or "natural",
    ``rollout/steer.arm``): mean F1 of each arm (None where no sample is in it), and per forced arm the
    share of groups of ``n`` whose best F1 is reached only in that arm (``explore_wins``,
    ``stop_wins``). Pure."""
    out: dict = {"f1_explored": None, "f1_stopped": None, "f1_natural": None, "explore_wins": None, "stop_wins": None}
    if arm_of is None:
        return out
    label = [arm_of(s) for s in samples]
    arms: dict[str, list[float]] = {}
    wins = {"explored": 0, "stopped": 0}
    for g in range(0, len(f1s), n):
        idx = range(g, min(g + n, len(f1s)))
        for a in wins:
            mine = [f1s[i] for i in idx if label[i] == a]
            rest = [f1s[i] for i in idx if label[i] != a]
            wins[a] += bool(mine) and max(mine) > max(rest, default=0.0)
        for i in idx:
            arms.setdefault(label[i], []).append(f1s[i])
    groups = max(1, -(-len(f1s) // n))
    for a, key in (("explored", "explore_wins"), ("stopped", "stop_wins")):
        if a in arms:
            out[key] = wins[a] / groups
    for a, xs in arms.items():
        out[f"f1_{a}"] = sum(xs) / len(xs)
    return out


def _save(path: Path, variant: str, trajs, rewards: list[float], qs, n: int) -> None:
    """One JSON line per trajectory: the setting, question, gold answers, reward, the trajectory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, (tr, r) in enumerate(zip(trajs, rewards)):
            q = qs[i // n]
            f.write(json.dumps({"setting": variant, "question": q.question, "answers": q.answers, "reward": r,
                                "n_searches": tr.n_searches, "sample": tr.sample, "queries": tr.queries,
                                "stop_reason": tr.stop_reason, "text": tr.text}) + "\n")


def run(args: argparse.Namespace) -> int:
    import torch

    from r1searcher.benchmarks import machine_info
    from r1searcher.config import apply_overrides
    from r1searcher.data.synthetic import generate_world
    from r1searcher.demo.run import DemoSpec, demo_config
    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.base import Passage
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.rl.rewards import answer_found, compute_reward
    from r1searcher.rollout.engine import RolloutEngine
    from r1searcher.rollout.steer import training_arms

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = DemoSpec(seed=args.seed, entities=args.entities, model=args.model)
    world = generate_world(spec.entities, seed=args.seed, prose=spec.prose)
    index = BM25Index.build([Passage(p["id"], p["title"], p["text"]) for p in world.passages])
    qs = [q for q in world.train if q.hops == args.hops][: args.questions]
    base = demo_config(spec, "unused.jsonl", "unused-index").derive({"reward.stage": 2})
    model, tok = load_policy(base.model)
    results = {}
    for variant in [v.strip() for v in args.settings.split(";") if v.strip()]:
        overrides = [] if variant == "base" else [o.strip() for o in variant.split(",") if o.strip()]
        cfg = apply_overrides(base, overrides)  # a new config
        engine = RolloutEngine(model, tok, index, cfg.rollout, cfg.retrieval)
        explore, arm_of = training_arms(tok, args.n, cfg.train)  # as the trainer forces and labels them
        t0 = time.perf_counter()
        trajs = engine.rollout([q.question for q in qs], n=args.n, seed=args.seed, steer=explore)
        wall = time.perf_counter() - t0
        rewards, searches, f1s, closed, found = [], [], [], [], []
        for i, tr in enumerate(trajs):
            r, info = compute_reward(tr, qs[i // args.n].answers, cfg.reward)
            rewards.append(r)
            searches.append(tr.n_searches)
            f1s.append(float(info.get("f1", 0.0)))
            closed.append(not info.get("reasons"))
            found.append(answer_found(tr, qs[i // args.n].answers))
        results[variant] = {**group_stats(rewards, searches, f1s, closed, args.n, found),
                            **arm_stats(f1s, [tr.sample for tr in trajs], arm_of, args.n),
                            "wall_s": round(wall, 1)}
        if args.save:
            _save(Path(args.save) / f"samples-{len(results)}.jsonl", variant, trajs, rewards, qs, args.n)
        print(f"[bench exploration] {variant}: {json.dumps(results[variant])}", flush=True)
    report = {"machine": machine_info(), "model": args.model, "seed": args.seed, "questions": len(qs),
              "hops": args.hops, "n": args.n, "results": results}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"machine: {report['machine']}")
    print(f"{args.model}, seed {args.seed}, {len(qs)} {args.hops}-hop training questions x {args.n} samples")
    cols = ["signal", "f1_signal", "found_signal", "found", "two_search_wins", "searches", "two_plus", "f1", "f1_1", "f1_2", "closed", "closed_1", "closed_2",
            "f1_explored", "f1_stopped", "f1_natural", "explore_wins", "stop_wins", "wall_s"]
    print("setting | " + " | ".join(cols))
    for v, r in results.items():
        print(f"{v} | " + " | ".join("-" if r[c] is None else f"{r[c]:.3g}" for c in cols))
    return 0
