"""Per-sequence bookkeeping of a rollout: what was produced, by whom, and why it stopped.

Every token is appended together with its mask bit and log-prob at the moment it is produced
(1 + sampler log-prob for a policy token, 0 + 0.0 for an inserted one); nothing is rebuilt later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r1searcher.retrieval.base import Passage
from r1searcher.rollout.stops import decode
from r1searcher.rollout.trajectory import Trajectory
from r1searcher.rollout.tags import ANSWER_CLOSE, ANSWER_OPEN, extract_answer


@dataclass
class RowState:
    """One sequence being generated. Read-only for steering hooks."""

    group: int  # question index in the rollout call
    sample: int  # sample index within the group
    question: str
    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)  # decoded policy turns and inserted blocks, in order
    turn_start: int = 0  # index in response_ids where the current policy turn began
    n_turns: int = 1
    queries: list[str] = field(default_factory=list)
    passages: list[list[Passage]] = field(default_factory=list)
    stop_reason: str | None = None
    pending_query: str | None = None  # query awaiting this round's retrieval
    trailing: str = ""  # text after the stop string inside the turn's last token
    n_inserted: int = 0  # inserted (mask-0) tokens so far
    n_forced: int = 0  # policy tokens a steer forced (exploration)

    @property
    def turn(self) -> list[int]:
        return self.response_ids[self.turn_start :]

    @property
    def n_policy_tokens(self) -> int:
        return len(self.response_ids) - self.n_inserted

    def add_policy_token(self, token: int, logprob: float) -> None:
        self.response_ids.append(token)
        self.loss_mask.append(1)
        self.logprobs.append(logprob)

    def close_turn(self, tokenizer) -> None:
        """Record the decoded text of the policy turn that just ended."""
        self.pieces.append(decode(tokenizer, self.turn))

    def add_block(self, ids: list[int], text: str) -> None:
        """Append a system-inserted block (mask 0) and start a new policy turn after it."""
        self.response_ids.extend(ids)
        self.loss_mask.extend([0] * len(ids))
        self.logprobs.extend([0.0] * len(ids))
        self.n_inserted += len(ids)
        self.pieces.append(text)
        self.turn_start = len(self.response_ids)
        self.n_turns += 1

    def finish(self, reason: str, tokenizer) -> None:
        self.close_turn(tokenizer)
        self.stop_reason = reason

    def to_trajectory(self) -> Trajectory:
        text = "".join(self.pieces)
        answer = extract_answer(text) if ANSWER_OPEN in text and ANSWER_CLOSE in text else None
        return Trajectory(
            prompt_ids=list(self.prompt_ids),
            response_ids=list(self.response_ids),
            loss_mask=list(self.loss_mask),
            logprobs=list(self.logprobs),
            text=text,
            queries=list(self.queries),
            passages=[list(p) for p in self.passages],
            n_searches=len(self.passages),
            stop_reason=self.stop_reason or "length",
            question=self.question,
            answer=answer,
            group=self.group,
            n_turns=self.n_turns,
            sample=self.sample,
            n_forced=self.n_forced,
        )
