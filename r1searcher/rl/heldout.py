"""A fixed held-out slice evaluated greedily during training, so learning is visible as it happens.

    train.eval_every: 4          # every 4 optimizer steps (and before the first, and after the last)
    train.eval_data: PATH.jsonl  # held-out questions (any QA shape data/qa.py reads); "hops" kept
    train.eval_limit: 24         # the first N questions: the same slice every time

Each evaluation is the same computation as ``r1searcher eval --method rl`` on those questions (same
engine, greedy, one trajectory each, the same scoring), and appends one line to ``RUN/eval.jsonl``::

    {"step": 8, "n": 24, "f1": 41.2, "cover_em": 45.8, "em": 37.5, "searches_per_question": 1.9,
     "answered": 0.96, "by_hops": {"1": {...}, "2": {...}}, "seconds": 61.3}

Metrics are percentages with one decimal, as in evaluation (``metrics.aggregate_sums``). Under
torchrun each rank evaluates its share and the sums are reduced, so every rank gets the same numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from r1searcher.util.files import append_jsonl
from r1searcher.eval.metrics import SCORES, aggregate_sums, per_question, score_sums
from r1searcher.rl import distributed as D
from r1searcher.rl import fsdp as fsdp_shards


def heldout_sums(engine, records, batch_size: int) -> dict[str, float]:
    """Sums over ``records`` of :func:`metrics.score_sums` (``n``, ``f1``/``cover_em``/``em`` in
    [0, 1]) plus ``searches`` and ``answered``, overall and per hop count (keys ``h<hops>:<name>``),
    so ranks can add them up."""
    from r1searcher.eval.evaluate import prediction_row

    sums: dict[str, float] = {"n": 0.0}
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        trajs = engine.rollout([r.question for r in chunk], n=1, greedy=True)
        for rec, tr in zip(chunk, trajs):
            row = prediction_row(rec, tr)
            keys = [""] + ([f"h{row['hops']}:"] if "hops" in row else [])
            values = {**score_sums([row]), "searches": float(tr.n_searches), "answered": float(tr.answer is not None)}
            for prefix in keys:
                for k, v in values.items():
                    sums[prefix + k] = sums.get(prefix + k, 0.0) + v
    return sums


def summarize_sums(sums: dict[str, float]) -> dict:
    """Percentages (f1, cover_em, em: :func:`metrics.aggregate_sums`, the rounding of every
    evaluation), searches per question and the answered share, overall and per hop."""

    def block(prefix: str) -> dict:
        n = sums.get(prefix + "n", 0.0)
        if not n:
            return {"n": 0}
        out = aggregate_sums({k: sums[prefix + k] for k in ("n", *SCORES)})
        out["searches_per_question"] = per_question(sums[prefix + "searches"], n)
        out["answered"] = per_question(sums[prefix + "answered"], n)
        return out

    out = block("")
    hops = sorted({k.split(":", 1)[0][1:] for k in sums if k.startswith("h") and ":" in k}, key=int)
    if hops:
        out["by_hops"] = {h: block(f"h{h}:") for h in hops}
    return out


def evaluate_heldout(engine, records, batch_size: int, dist=None) -> dict:
    """Greedy evaluation of this rank's share of ``records``; the summary is the same on every rank."""
    t0 = time.perf_counter()
    mine = records if dist is None else [records[i] for i in D.shard(list(range(len(records))), dist.rank, dist.world_size)]
    sums = heldout_sums(engine, mine, batch_size)
    if dist is not None and dist.world_size > 1:
        sums = D.gather_sums(sums)  # keys may differ between ranks (hop counts)
    out = summarize_sums(sums)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def load_heldout(cfg) -> list:
    """The held-out slice ``train.eval_data`` (first ``train.eval_limit`` questions); clear errors when unusable."""
    from r1searcher.data.qa import load_qa, resolve_dataset

    t = cfg.train  # train.eval_data is set: the config tree refuses eval_every without it at load
    recs = load_qa(resolve_dataset(t.eval_data), on_error=cfg.data.on_error, limit=t.eval_limit or None)
    if not recs:
        raise ValueError(f"train.eval_data {t.eval_data}: no usable question")
    return recs


def run_heldout(engine, model, records, cfg, dist, run: Path, step: int) -> dict:
    """Greedy held-out evaluation at ``step`` (weights gathered under FSDP); appended to RUN/eval.jsonl
    and printed on the main rank."""
    model.eval()
    with torch.no_grad(), fsdp_shards.gathered(model):
        ho = evaluate_heldout(engine, records, cfg.rollout.batch_size, dist)
    with D.all_or_none(f"writing {run / 'eval.jsonl'}"):  # rank 0 writes; every rank hears if it could not
        if dist.is_main:
            append_jsonl(run / "eval.jsonl", [{"step": step, **ho}], ensure_ascii=True)
            hops = " ".join(f"{h}-hop {b['f1']:.1f}" for h, b in ho.get("by_hops", {}).items())
            print(f"held-out @ step {step}: F1 {ho['f1']:.1f} cover-EM {ho['cover_em']:.1f} "
                  f"searches/q {ho['searches_per_question']:.2f} {hops} ({ho['seconds']:.0f} s)", flush=True)
    return ho
