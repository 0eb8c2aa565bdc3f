"""The rows the trajectory viewer shows, read from training runs and eval runs.

A training run's ``samples.jsonl`` is written by the trainer with :func:`sample_record` (question,
gold, prediction, reward and its parts, scores, and the character spans the loss mask left
untrained). An eval run's ``predictions.jsonl`` (``r1searcher eval``) has no token ids: there the
untrained spans are the document blocks, found by their tags (``mask: "tags"``).

Every source becomes the same compact row (short keys: 10k rows are embedded in one page)::

    s source index   ds dataset   st step (training) or None   id question id (eval)
    q question   gold [aliases]   pred prediction or None   r reward or None   parts {component: value}
    f1 / em / cem scores or None   ok correct (cover-EM, the paper's accuracy) or None
    stop stop reason   ns searches   text response   um [[start, end), …] untrained chars   mask "recorded" | "tags"
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from r1searcher.tags import DOCS_CLOSE, DOCS_OPEN


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a torn last line of a killed run
                    break
    return rows


def untrained_spans(tokenizer, response_ids: list[int], loss_mask: list[int], text: str) -> list[list[int]] | None:
    """Character spans ``[start, end)`` of ``text`` whose tokens have loss-mask 0, from the recorded mask.

    Each run of equal mask bits is decoded on its own and found in ``text`` in order; None when a run
    cannot be placed (the viewer then falls back to the document tags).
    """
    from r1searcher.rollout.stops import decode

    runs, start = [], 0
    for i in range(1, len(loss_mask) + 1):
        if i == len(loss_mask) or loss_mask[i] != loss_mask[start]:
            runs.append((loss_mask[start], response_ids[start:i]))
            start = i
    spans, pos = [], 0
    for bit, ids in runs:
        piece = decode(tokenizer, ids)
        at = text.find(piece, pos) if piece else pos
        if at < 0:
            return None
        if bit == 0 and piece:
            spans.append([at, at + len(piece)])
        pos = at + len(piece)
    return spans


def sample_record(step: int, traj, reward: float, answers: list[str], reward_cfg, tokenizer=None) -> dict:
    """One ``samples.jsonl`` line: what the viewer and the trackers show of a training trajectory."""
    from r1searcher.metrics import score_prediction
    from r1searcher.rewards import compute_reward

    _, info = compute_reward(traj, answers, reward_cfg)  # the same pure function the trainer scored with
    parts = {k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and k not in ("stage", "reward", "n_searches", "em", "cover_em", "f1")}
    scores = score_prediction(traj.answer, answers) if traj.answer is not None else {"em": 0.0, "cover_em": 0.0, "f1": 0.0}
    rec = {"step": step, "reward": reward, "question": traj.question, "text": traj.text,
           "stop_reason": traj.stop_reason, "n_searches": traj.n_searches, "answers": list(answers),
           "pred": traj.answer, **scores, "reward_parts": parts, "reward_reasons": info.get("reasons", []),
           "stage": info.get("stage"), "group": traj.group, "sample": traj.sample,
           "response_tokens": len(traj.response_ids), "policy_tokens": sum(traj.loss_mask)}
    if tokenizer is not None:
        rec["untrained"] = untrained_spans(tokenizer, traj.response_ids, traj.loss_mask, traj.text)
    return rec


def doc_spans(text: str) -> list[list[int]]:
    """Document blocks (open tag through close tag and the blank line after): inserted, never trained."""
    spans, pos = [], 0
    while True:
        a = text.find(DOCS_OPEN, pos)
        if a < 0:
            return spans
        b = text.find(DOCS_CLOSE, a)
        b = len(text) if b < 0 else b + len(DOCS_CLOSE)
        for _ in range(2):  # the engine inserts the block with "\n\n" after its close tag
            if text.startswith("\n", b):
                b += 1
        spans.append([a, b])
        pos = b


def _num(x):
    return None if x is None else round(float(x), 4)


def train_row(d: dict, source: int, dataset: str) -> dict:
    has_gold = "answers" in d
    um = d.get("untrained")
    return {"s": source, "ds": dataset, "st": d.get("step"), "id": None, "q": d.get("question", ""),
            "gold": d.get("answers") or [], "pred": d.get("pred"), "r": _num(d.get("reward")),
            "parts": {**(d.get("reward_parts") or {}), **({"why": "; ".join(d["reward_reasons"])} if d.get("reward_reasons") else {})},
            "f1": _num(d.get("f1")), "em": _num(d.get("em")), "cem": _num(d.get("cover_em")),
            "ok": bool(d.get("cover_em")) if has_gold else None, "stop": d.get("stop_reason", "?"),
            "ns": d.get("n_searches", 0), "text": d.get("text", ""),
            "um": um if um is not None else doc_spans(d.get("text", "")), "mask": "recorded" if um is not None else "tags"}


def eval_row(d: dict, source: int, dataset: str) -> dict:
    text = d.get("gen_text_store", "")
    pred = d.get("pred_ans")
    return {"s": source, "ds": dataset, "st": None, "id": d.get("id"), "q": d.get("question", ""),
            "gold": d.get("answers") or ([d["answer"]] if d.get("answer") else []), "pred": pred if pred else None,
            "r": None, "parts": {}, "f1": _num(d.get("f1")), "em": _num(d.get("em")), "cem": _num(d.get("cover_em")),
            "ok": bool(d.get("cover_em")) if "cover_em" in d else None, "stop": d.get("stop_reason_final", "?"),
            "ns": d.get("n_searches", 0), "text": text, "um": doc_spans(text), "mask": "tags"}


def _train_dataset(run: Path) -> str:
    cfg = run / "config.yaml"
    if cfg.exists():
        import yaml

        path = ((yaml.safe_load(cfg.read_text()) or {}).get("data") or {}).get("path")
        if path:
            return Path(str(path)).stem
    return "train"


def find_sources(paths: list[str | Path]) -> list[tuple[str, str, Path]]:
    """``(kind, label, file)`` for every training run (samples.jsonl) and eval dataset (predictions.jsonl)
    in or under ``paths`` (checkpoints skipped); labels are paths relative to the folder given."""
    found = []
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        files = [root] if root.is_file() and root.name in ("samples.jsonl", "predictions.jsonl") else []
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(("checkpoint", "step_", ".")))
                files += [Path(dirpath) / f for f in sorted(filenames) if f in ("samples.jsonl", "predictions.jsonl")]
        base = root.parent if root.is_dir() else root.parent.parent
        for f in files:
            kind = "train" if f.name == "samples.jsonl" else "eval"
            folder = f.parent
            if kind == "eval" and folder != base and _is_dataset_folder(folder):
                folder = folder.parent  # EVAL_DIR/<dataset>/predictions.jsonl: the run is EVAL_DIR
            label = str(folder.relative_to(base)) if folder != base else folder.resolve().name
            found.append((kind, label, f))
    if not found:
        raise FileNotFoundError(f"no samples.jsonl (training run) or predictions.jsonl (eval run) in {', '.join(map(str, paths))}")
    return found


def _is_dataset_folder(folder: Path) -> bool:
    """True when the folder is named after its dataset (``r1searcher eval --out DIR`` writes DIR/<stem>/)."""
    m = folder / "metrics.json"
    if m.exists():
        ds = json.loads(m.read_text()).get("dataset")
        return bool(ds) and Path(ds).stem == folder.name
    return False


def _eval_meta(f: Path) -> tuple[str, str]:
    m = f.parent / "metrics.json"
    meta = json.loads(m.read_text()) if m.exists() else {}
    ds = Path(meta["dataset"]).stem if meta.get("dataset") else f.parent.name
    return ds, str(meta.get("method", ""))


def load_rows(paths: list[str | Path]) -> tuple[list[dict], list[dict]]:
    """``(runs, rows)`` over every run found under ``paths``; an eval run's datasets share its entry."""
    runs: dict[str, dict] = {}
    rows: list[dict] = []
    for kind, label, f in find_sources(paths):
        if kind == "train":
            ds, method = _train_dataset(f.parent), "train"
        else:
            ds, method = _eval_meta(f)
        run = runs.setdefault(label, {"label": label, "kind": kind, "method": method, "datasets": [], "n": 0})
        index = list(runs).index(label)
        new = [(train_row if kind == "train" else eval_row)(d, index, ds) for d in _read_jsonl(f)]
        run["datasets"].append(ds)
        run["n"] += len(new)
        rows += new
    return list(runs.values()), rows
