"""Steering: force chosen tokens through the real rollout loop (tests, benchmarks, demos).

A steer is asked, before each token is drawn, whether to force a token for a row. A forced token
goes through exactly the same path as a drawn one: the model still computes the step, the sampler
still draws (and is overridden), the recorded log-prob is the model's ``log_softmax(logits/T)`` of
the forced token, the mask bit is 1, stops are detected on it. This drives queries to chosen places
(property tests of the mask over random segmentations) and makes a benchmark's token counts
deterministic, without replacing any part of the engine. Training never uses a steer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from r1searcher.rollout.row import RowState
from r1searcher.rollout.tags import ANSWER_CLOSE, ANSWER_OPEN, QUERY_CLOSE, QUERY_OPEN, THINK_CLOSE


class Steer(Protocol):
    def __call__(self, row: RowState) -> int | None:
        """The token to force as ``row``'s next policy token, or None to let the sampler draw."""


class ScriptedSteer:
    """Force each row's policy tokens from a script: the k-th policy token of a row is
    ``script[k]``; past the script's end the sampler draws freely.

    ``scripts``: one script per group (a list indexed by ``row.group``), a mapping
    ``(group, sample) -> script``, or a function of the row.
    """

    def __init__(
        self,
        scripts: Sequence[Sequence[int]] | Mapping[tuple[int, int], Sequence[int]] | Callable[[RowState], Sequence[int]],
    ):
        self.scripts = scripts

    def script(self, row: RowState) -> Sequence[int]:
        if callable(self.scripts):
            return self.scripts(row)
        if isinstance(self.scripts, Mapping):
            return self.scripts.get((row.group, row.sample), ())
        return self.scripts[row.group] if row.group < len(self.scripts) else ()

    def __call__(self, row: RowState) -> int | None:
        script = self.script(row)
        k = row.n_policy_tokens
        return int(script[k]) if k < len(script) else None


def script_tokens(tokenizer, segments: Sequence[str]) -> list[int]:
    """Policy segments (the text between inserted blocks), each tokenised on its own, concatenated:
    the engine stops at the end of each segment that ends with ``<|end_of_query|>``."""
    out: list[int] = []
    for seg in segments:
        out.extend(tokenizer.encode(seg, add_special_tokens=False))
    return out


def search_script(query_words: Sequence[str], answer: str, thought: str, n_searches: int) -> list[str]:
    """Segments of a well-formed trajectory with ``n_searches`` searches (benchmarks, demos)::

        {thought} <|begin_of_query|> q <|end_of_query|>   × n_searches   (documents inserted after each)
        {thought} </think>\\n\\n<answer> {answer} </answer>
    """
    q = " ".join(query_words)
    segs = [f" {thought} {QUERY_OPEN} {q} {QUERY_CLOSE}" for _ in range(n_searches)]
    segs.append(f"{thought} {THINK_CLOSE}\n\n{ANSWER_OPEN} {answer} {ANSWER_CLOSE}")
    return segs
