"""The paper's training-data selection (§2.1): difficulty by how many sampled rollouts it takes to
answer correctly.

For each question we sample ``n`` rollouts (in the order drawn) and record ``first_correct``, the
1-based index of the first rollout whose answer is cover-EM correct, and ``n_correct``. The paper's
labels: easy when fewer than 10 rollouts were needed, medium for 10–20, difficult for more than 20
(``first_correct`` is None, never correct within ``n``, counts as difficult when ``n`` > 20 and as
``unsolved`` otherwise, so a small ``n`` never invents a difficulty it did not observe).
"""

from __future__ import annotations

import json
from pathlib import Path

from r1searcher.data.qa import QARecord
from r1searcher.eval.metrics import max_cover_exact_match


def label(first_correct: int | None, n: int, easy_below: int = 10, medium_upto: int = 20) -> str:
    if first_correct is None:
        return "difficult" if n > medium_upto else "unsolved"
    if first_correct < easy_below:
        return "easy"
    if first_correct <= medium_upto:
        return "medium"
    return "difficult"


def score_rollouts(records: list[QARecord], trajectories: list, n: int) -> list[dict]:
    """``trajectories`` holds each record's ``n`` samples contiguously (the engine's order)."""
    out = []
    for i, rec in enumerate(records):
        group = trajectories[i * n:(i + 1) * n]
        correct = [t.answer is not None and max_cover_exact_match(t.answer, rec.answers) for t in group]
        first = next((j + 1 for j, c in enumerate(correct) if c), None)
        out.append({"first_correct": first, "n_correct": sum(correct), "n_rollouts": n,
                    "difficulty": label(first, n)})
    return out


def select(engine, records: list[QARecord], out_path: str | Path, n: int = 32, batch_questions: int = 4,
           seed: int = 0, progress: bool = True) -> dict[str, int]:
    """Label every record and write ``{id, question, answer, answers, difficulty, …}`` lines."""
    from tqdm import tqdm

    counts: dict[str, int] = {}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w") as f:
        for start in tqdm(range(0, len(records), batch_questions), desc="select", unit="batch", disable=not progress):
            batch = records[start:start + batch_questions]
            trajs = engine.rollout([r.question for r in batch], n=n, greedy=False, seed=seed + start)
            for rec, s in zip(batch, score_rollouts(batch, trajs, n)):
                row = {"id": rec.id, "question": rec.question, "answer": rec.answers[0], "answers": rec.answers, **s}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts[s["difficulty"]] = counts.get(s["difficulty"], 0) + 1
    return counts
