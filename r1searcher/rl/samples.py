"""One ``samples.jsonl`` line per training trajectory: the record the trainer writes and the viewer
and the trackers read (scored by the same pure reward and metric functions the trainer used)."""

from __future__ import annotations

from r1searcher.eval.metrics import score_prediction
from r1searcher.rl.rewards import compute_reward
from r1searcher.rollout.stops import decode


def untrained_spans(tokenizer, response_ids: list[int], loss_mask: list[int], text: str) -> list[list[int]] | None:
    """Character spans ``[start, end)`` of ``text`` whose tokens have loss-mask 0, from the recorded mask.

    Each run of equal mask bits is decoded on its own and found in ``text`` in order; None when a run
    cannot be placed (the viewer then falls back to the document tags).
    """
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
