"""Outcome rewards of R1-Searcher as plain functions of a completion and its gold answers.

Each returns ``(reward, breakdown)``; the breakdown is for logs (components, the extracted answer,
and the reason of any penalty). A completion is the text after the prompt's ``<think>``, with the
system-inserted document blocks in place (``Trajectory.text``).

Stage 1 (learn to search; paper §2.2)::

    retrieval  cfg.retrieval_reward (0.5)  when ≥1 well-formed search: every query got exactly one
                                           numbered, system-inserted block (FormatCounts.docs_ok) and ≥1 block
    format     cfg.format_reward (0.5)     when zero <think>, one </think>, one <answer>, one </answer>
    answer     ±1 cover-EM (only with cfg.answer_bonus; the released Llama code's term, not the paper's;
               −1 also when the answer tags are missing)

Stage 2 (learn to answer)::

    F1 of the extracted answer against the gold aliases (max; 0 when the answer tags are missing)
    − cfg.format_penalty (2; the released Llama code used 1) on any format violation of
      ``tags.parse``: query/document counts differ, bad think/answer counts, a query or document tag
      inside the answer, an answer over cfg.max_answer_words words (0 = no limit), CJK outside documents.
    + cfg.found_bonus (0 by default: the paper's reward) when a gold answer appears, as whole words,
      in the documents the searches brought back (``answer_found``)

Why the bonus (an option beyond the paper, in the spirit of turn-level information gain, IGPO
arXiv 2510.14967, without its extra forward passes): on a multi-hop question the answer is only in
the last hop's passage, so a policy that searches once and guesses and one that searches twice
and misreads both score F1 0, and GRPO sees no difference. The bonus pays the search that found
the answer, so groups of a hard question differ before the policy can read the answer right.
It is gold-aware like F1 (outcome data, no learned process reward), and one search that finds the
answer earns it as much as several.
"""

from __future__ import annotations

from r1searcher.config import RewardConfig
from r1searcher.eval.metrics import answer_in_text, score_prediction
from r1searcher.rollout.trajectory import Trajectory
from r1searcher.rollout.tags import FormatCounts, documents, parse


def _text(completion: Trajectory | str) -> str:
    return completion.text if isinstance(completion, Trajectory) else completion


def stage1_reward(completion: Trajectory | str, answers: list[str], cfg: RewardConfig) -> tuple[float, dict]:
    """Retrieval reward + format reward (+ the optional ±1 cover-EM term)."""
    text = _text(completion)
    c = FormatCounts.of(text)
    searched = c.docs_ok and c.docs_open_nl >= 1
    retrieval = cfg.retrieval_reward if searched else 0.0
    fmt = cfg.format_reward if c.think_answer_ok else 0.0
    info: dict = {"stage": 1, "retrieval": retrieval, "format": fmt, "n_searches": c.n_searches}
    reasons = []
    if not c.docs_ok:
        reasons.append("query/document tag counts differ")
    elif not searched:
        reasons.append("no search")
    if not c.think_answer_ok:
        reasons.append("think/answer tags malformed")
    total = retrieval + fmt
    if cfg.answer_bonus:
        if c.answer_open == 0 or c.answer_close == 0:
            answer_term, pred = -1.0, None
            reasons.append("no answer tags")
        else:
            pred = parse(text, None).answer or ""
            scores = score_prediction(pred, answers)
            answer_term = 1.0 if scores["cover_em"] else -1.0
            info.update(scores)
        info["answer_term"] = answer_term
        info["answer"] = pred
        total += answer_term
    info["reasons"] = reasons
    info["reward"] = total
    return total, info


def stage2_reward(completion: Trajectory | str, answers: list[str], cfg: RewardConfig) -> tuple[float, dict]:
    """F1 of the answer minus the format penalty."""
    text = _text(completion)
    parsed = parse(text, max_answer_words=cfg.max_answer_words if cfg.max_answer_words > 0 else None)
    info: dict = {"stage": 2, "answer": parsed.answer}
    if parsed.answer is None:
        info.update({"em": 0.0, "cover_em": 0.0, "f1": 0.0})
        score = 0.0
    else:
        scores = score_prediction(parsed.answer, answers)
        info.update(scores)
        score = scores["f1"]
    penalty = cfg.format_penalty if parsed.problems else 0.0
    info["format_penalty"] = penalty
    info["reasons"] = list(parsed.problems)
    bonus = 0.0
    if cfg.found_bonus:
        found = answer_found(text, answers)
        info["found"] = float(found)
        bonus = cfg.found_bonus if found else 0.0
    info["reward"] = score - penalty + bonus
    return score - penalty + bonus, info


def answer_found(completion: Trajectory | str, answers: list[str]) -> bool:
    """Whether a gold alias appears, normalised and as whole words, in the completion's document
    blocks (what the policy read, after ``retrieval.max_doc_words``; ``metrics.answer_in_text``)."""
    return answer_in_text(" ".join(documents(_text(completion))), answers)


def compute_reward(traj: Trajectory, answers: list[str], cfg: RewardConfig) -> tuple[float, dict]:
    """The reward of ``traj`` for its stage (``cfg.stage``), with a breakdown for logs."""
    # reward.stage is 1 or 2: RewardConfig checks it when made (r1searcher.settings)
    reward, info = (stage1_reward if cfg.stage == 1 else stage2_reward)(traj, answers, cfg)
    if isinstance(traj, Trajectory):
        info["stop_reason"] = traj.stop_reason
    return reward, info
