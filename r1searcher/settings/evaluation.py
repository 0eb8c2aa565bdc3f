"""The ``eval`` section: the user-facing knobs of ``r1searcher eval`` (the paper's evaluation setup)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from r1searcher.settings.fields import Section, knob

#: The methods ``r1searcher.eval.baselines.METHODS`` defines (a test keeps the two equal).
METHODS = ("rl", "iterative", "naive", "rag", "oracle")


@dataclass(frozen=True)
class EvalConfig(Section):
    """How a method is evaluated: which one, on how many questions, in batches of how many."""

    SECTION: ClassVar[str] = "eval"
    method: str = knob("rl", "rl (a trained policy) or a baseline (r1searcher.eval.baselines)", choices=METHODS)
    limit: int = knob(0, "the first N questions of each dataset (0 = all)", ge=0)
    batch_size: int = knob(16, "questions rolled out together", ge=1)
    top_k: int = knob(5, "passages per search when neither --config nor an override sets retrieval.top_k (paper: 5)",
                      ge=1)
    max_searches: int = knob(9, "rollout.max_searches for evaluation (paper: 9)", ge=0)
